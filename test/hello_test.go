package test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/apps/hello"
	tc "hellochat/internal/testcluster"
)

// The Hello Chat class on the object API, through the router, as the
// original app behaves: history on join, joined and Disconnected notices,
// messages to the others. Then its leader is killed mid-chat: every
// message a browser sent reaches the other browser, the first time each
// in the order sent (a message whose outcome the router could not learn
// is sent again, and may be shown twice), and neither browser is
// disconnected.
func TestHelloChatThroughALeaderKill(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	dial := func(name string) (*websocket.Conn, chan hello.Frame) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, "ws"+c.URL()[len("http"):]+"/hello/ws?room=kitchen&name="+name, nil)
		if err != nil {
			t.Fatalf("%s joins: %v", name, err)
		}
		t.Cleanup(func() { conn.CloseNow() })
		in := make(chan hello.Frame, 1000)
		go func() {
			defer close(in)
			for {
				_, b, err := conn.Read(context.Background())
				if err != nil {
					return
				}
				var f hello.Frame
				json.Unmarshal(b, &f)
				in <- f
			}
		}()
		return conn, in
	}
	next := func(who string, in chan hello.Frame) hello.Frame {
		t.Helper()
		select {
		case f, ok := <-in:
			if !ok {
				t.Fatalf("%s was disconnected", who)
			}
			return f
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: nothing within 20s", who)
		}
		return hello.Frame{}
	}
	say := func(conn *websocket.Conn, text string) {
		t.Helper()
		b, _ := json.Marshal(hello.Frame{Message: text})
		if err := conn.Write(context.Background(), websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}

	ann, annIn := dial("ann")
	say(ann, "first")
	bob, bobIn := dial("bob")
	if f := next("bob", bobIn); f.Name != "ann" || f.Message != "first" || f.Timestamp == 0 {
		t.Fatalf("bob's history: %+v", f)
	}
	if f := next("ann", annIn); f.Name != "bob" || f.Message != "joined the chat" {
		t.Fatalf("ann was shown %+v", f)
	}

	const n = 40
	leader := c.Leader(hello.Namespace.IDFromName("kitchen").StorageObject())
	seen := map[string]bool{}
	for i := 1; i <= n; i++ {
		if i == n/2 {
			c.Kill(leader)
		}
		say(ann, fmt.Sprintf("m%d", i))
	}
	for len(seen) < n {
		f := next("bob", bobIn)
		if f.Name != "ann" {
			t.Fatalf("bob was shown %+v", f)
		}
		if want := fmt.Sprintf("m%d", len(seen)+1); !seen[f.Message] && f.Message != want {
			t.Fatalf("bob was shown %s first, before %s", f.Message, want)
		}
		seen[f.Message] = true
	}
	bob.Close(websocket.StatusNormalClosure, "bye")
	for {
		f := next("ann", annIn)
		if f.Name == "bob" && f.Message == "Disconnected" {
			break
		}
		if f.Name != "bob" {
			t.Fatalf("ann was shown %+v", f)
		}
	}
}
