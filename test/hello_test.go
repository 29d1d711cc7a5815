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

// helloClient is a browser in a room of apps/hello.
type helloClient struct {
	t    *testing.T
	name string
	conn *websocket.Conn
	in   chan hello.Frame // closed when the connection ends
}

func joinHello(t *testing.T, base, room, name string) *helloClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+base[len("http"):]+"/hello/ws?room="+room+"&name="+name, nil)
	if err != nil {
		t.Fatalf("%s joins %s: %v", name, room, err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	c := &helloClient{t: t, name: name, conn: conn, in: make(chan hello.Frame, 10000)}
	go func() {
		defer close(c.in)
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f hello.Frame
			json.Unmarshal(b, &f)
			c.in <- f
		}
	}()
	return c
}

func (c *helloClient) next() hello.Frame {
	c.t.Helper()
	select {
	case f, ok := <-c.in:
		if !ok {
			c.t.Fatalf("%s was disconnected", c.name)
		}
		return f
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s: nothing within 30s", c.name)
	}
	return hello.Frame{}
}

func (c *helloClient) say(text string) {
	c.t.Helper()
	b, _ := json.Marshal(hello.Frame{Message: text})
	if err := c.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatalf("%s says %s: %v", c.name, text, err)
	}
}

// expectFrom reads until it has seen from's messages m1..mN, checking
// that each is first shown in the order sent (a message the router sent
// again after a failure may be shown twice) and that c is never shown
// anything from anyone else.
func (c *helloClient) expectFrom(from string, n int) {
	c.t.Helper()
	seen := map[string]bool{}
	for len(seen) < n {
		f := c.next()
		if f.Name != from {
			c.t.Fatalf("%s was shown %+v", c.name, f)
		}
		if want := fmt.Sprintf("m%d", len(seen)+1); !seen[f.Message] && f.Message != want {
			c.t.Fatalf("%s was shown %s first, before %s", c.name, f.Message, want)
		}
		seen[f.Message] = true
	}
}

// The Hello Chat class on the object API, through the router, as the
// original app behaves: history on join, joined and Disconnected notices,
// messages to the others. Then its leader is killed mid-chat: every
// message a browser sent reaches the other browser, the first time each
// in the order sent (a message whose outcome the router could not learn
// is sent again, and may be shown twice), and neither browser is
// disconnected.
func TestHelloChatThroughALeaderKill(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	ann := joinHello(t, c.URL(), "kitchen", "ann")
	ann.say("first")
	bob := joinHello(t, c.URL(), "kitchen", "bob")
	if f := bob.next(); f.Name != "ann" || f.Message != "first" || f.Timestamp == 0 {
		t.Fatalf("bob's history: %+v", f)
	}
	if f := ann.next(); f.Name != "bob" || f.Message != "joined the chat" {
		t.Fatalf("ann was shown %+v", f)
	}

	const n = 40
	leader := c.ObjectLeader(hello.Namespace.IDFromName("kitchen").StorageObject())
	for i := 1; i <= n; i++ {
		if i == n/2 {
			c.Kill(leader)
		}
		ann.say(fmt.Sprintf("m%d", i))
	}
	bob.expectFrom("ann", n)
	bob.conn.Close(websocket.StatusNormalClosure, "bye")
	for {
		f := ann.next()
		if f.Name != "bob" {
			t.Fatalf("ann was shown %+v", f)
		}
		if f.Message == "Disconnected" {
			break
		}
	}
}

// A room of apps/hello through a membership change while a browser
// talks: a fourth node joins (shards move to it), then the node leading
// the room's shard is decommissioned. Every message reaches the other
// browser, first in the order sent, nobody is disconnected, and a browser
// joining afterwards is shown the newest in its history.
func TestHelloChatThroughMembershipChange(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	ann := joinHello(t, c.URL(), "porch", "ann")
	bob := joinHello(t, c.URL(), "porch", "bob")
	if f := ann.next(); f.Message != "joined the chat" {
		t.Fatalf("ann was shown %+v", f)
	}
	sent := make(chan int, 1)
	stop := make(chan struct{})
	go func() {
		i := 0
		defer func() { sent <- i }()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ; i < 20000; i++ { // bounded: the change takes seconds
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			b, _ := json.Marshal(hello.Frame{Message: fmt.Sprintf("m%d", i+1)})
			if ann.conn.Write(context.Background(), websocket.MessageText, b) != nil {
				return
			}
		}
	}()
	victim := c.ObjectLeader(hello.Namespace.IDFromName("porch").StorageObject())
	added := c.AddNode()
	c.WaitPlaced(90 * time.Second)
	t.Logf("node%d joined; decommissioning node%d, leader of the room's shard", added+1, victim+1)
	c.Decommission(victim, 90*time.Second)
	c.WaitPlaced(90 * time.Second)
	close(stop)
	n := <-sent
	if n < 10 {
		t.Fatalf("only %d messages sent during the change", n)
	}
	bob.expectFrom("ann", n)
	cyd := joinHello(t, c.URL(), "porch", "cyd")
	for i := 0; ; i++ {
		f := cyd.next()
		if f.Message == fmt.Sprintf("m%d", n) {
			break
		}
		if i == hello.HistoryLimit {
			t.Fatalf("cyd's history of %d did not hold m%d", hello.HistoryLimit, n)
		}
	}
}
