package hello

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"hellochat/apps/apptest"
	"hellochat/durable"
)

// rig is a room on the runtime, with what it sends shown as "name: message".
type rig struct{ *apptest.Rig }

func newRig(t *testing.T) rig {
	return rig{apptest.NewRig(t, Namespace.IDFromName("lobby"), func() durable.Object { return Room{} })}
}

func (r rig) join(socket, name string) int {
	r.T.Helper()
	return r.Upgrade(socket, "http://router/hello/ws?room=lobby&name="+name).StatusCode
}

func (r rig) say(socket, raw string) {
	r.T.Helper()
	r.Message(socket, 0, raw)
}

// take returns and forgets what socket was sent.
func (r rig) take(socket string) string {
	var out []string
	for _, b := range r.Socks.Take(socket) {
		var f Frame
		json.Unmarshal(b, &f)
		out = append(out, f.Name+": "+f.Message)
	}
	return strings.Join(out, " | ")
}

// The room as the original app: joins announced to the others, messages
// shown to everyone but the sender with the sender's name, history on
// join, and a close announced as Disconnected; all of it through an
// eviction of the object, which keeps nothing in memory.
func TestRoomAsTheOriginal(t *testing.T) {
	r := newRig(t)
	if st := r.join("g.1", "ann"); st != http.StatusSwitchingProtocols {
		t.Fatalf("join answered %d", st)
	}
	r.join("g.2", "bob")
	if got := r.take("g.1"); got != "bob: joined the chat" {
		t.Fatalf("ann was shown %q", got)
	}
	if got := r.take("g.2"); got != "" {
		t.Fatalf("bob, joining an empty room, was shown %q", got)
	}
	r.say("g.1", `{"message": "  hi bob  "}`)
	r.say("g.1", `{"message": "   "}`) // ignored, as the original ignores it
	if got := r.take("g.2"); got != "ann: hi bob" {
		t.Fatalf("bob was shown %q", got)
	}
	if got := r.take("g.1"); got != "" {
		t.Fatalf("ann was shown her own message: %q", got)
	}

	r.Evict() // evicted; the browsers stay
	r.Start()
	r.say("g.2", `{"message": "hello"}`)
	r.join("g.3", "cyd")
	if got := r.take("g.3"); got != "ann: hi bob | bob: hello" {
		t.Fatalf("cyd's history: %q", got)
	}
	if err := r.Actor.WebSocketClose(context.Background(), "g.1", 1001, "tab closed", true); err != nil {
		t.Fatal(err)
	}
	if got := r.take("g.2"); got != "cyd: joined the chat | ann: Disconnected" {
		t.Fatalf("bob was shown %q", got)
	}
}

// Bad frames are answered by "system" and store nothing.
func TestRoomRefusesBadFrames(t *testing.T) {
	r := newRig(t)
	r.join("g.1", "ann")
	r.join("g.2", "bob")
	r.take("g.1")
	r.say("g.1", `not json`)
	r.say("g.1", fmt.Sprintf(`{"message": %q}`, strings.Repeat("x", 5000)))
	got := r.take("g.1")
	if !strings.HasPrefix(got, "system: error: bad JSON") || !strings.Contains(got, "| system: error: message too large") {
		t.Fatalf("ann was answered %q", got)
	}
	if got := r.take("g.2"); got != "" {
		t.Fatalf("bob was shown %q", got)
	}
	r.join("g.3", "cyd")
	if got := r.take("g.3"); got != "" {
		t.Fatalf("a refused frame reached the history: %q", got)
	}
}

// A room shows the newest HistoryLimit messages on join, and stores at
// most Keep.
func TestRoomHistoryIsBounded(t *testing.T) {
	r := newRig(t)
	r.join("g.1", "ann")
	for i := 1; i <= HistoryLimit+5; i++ {
		r.say("g.1", fmt.Sprintf(`{"message": "m%d"}`, i))
	}
	r.join("g.2", "bob")
	got := strings.Split(r.take("g.2"), " | ")
	if len(got) != HistoryLimit || got[0] != "ann: m6" || got[len(got)-1] != fmt.Sprintf("ann: m%d", HistoryLimit+5) {
		t.Fatalf("bob's history: %d messages, %q ... %q", len(got), got[0], got[len(got)-1])
	}
}
