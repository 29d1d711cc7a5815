package hello

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"hellochat/durable"
	"hellochat/storage"
)

// memCommitter commits to an in-memory store at once.
type memCommitter struct{ *durable.MemStore }

func (c memCommitter) Commit(object string, ops []storage.Op, g storage.Guards, done func(error)) {
	done(c.Apply(object, ops, g))
}

// sockets records what the room sends, by socket, as "name: message".
type sockets struct {
	mu   sync.Mutex
	sent map[string][]string
}

func (s *sockets) Send(socket string, msg []byte, text bool) {
	var f Frame
	json.Unmarshal(msg, &f)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent[socket] = append(s.sent[socket], f.Name+": "+f.Message)
}
func (s *sockets) Close(socket string, code int, reason string)  {}
func (s *sockets) AutoResponse(socket, request, response string) {}

// take returns and forgets what socket was sent.
func (s *sockets) take(socket string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := strings.Join(s.sent[socket], " | ")
	delete(s.sent, socket)
	return out
}

type rig struct {
	t     *testing.T
	store *durable.MemStore
	socks *sockets
	a     *durable.Actor
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, store: durable.NewMemStore(), socks: &sockets{sent: map[string][]string{}}}
	r.start()
	return r
}

func (r *rig) start() {
	a, err := durable.Start(Namespace.IDFromName("lobby"), func() durable.Object { return Room{} }, durable.Config{
		Reader: r.store, Committer: memCommitter{r.store}, Sockets: r.socks,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.a = a
	r.t.Cleanup(func() { a.Close() })
}

func (r *rig) join(socket, name string) int {
	r.t.Helper()
	ctx := durable.WithUpgrade(context.Background(), socket)
	req := httptest.NewRequest("GET", "http://router/hello/ws?room=lobby&name="+name, nil).WithContext(ctx)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	resp, err := r.a.Fetch(ctx, req)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.StatusCode
}

func (r *rig) say(socket, raw string) {
	r.t.Helper()
	if err := r.a.WebSocketMessage(context.Background(), socket, []byte(raw), true); err != nil {
		r.t.Fatalf("%s says %s: %v", socket, raw, err)
	}
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
	if got := r.socks.take("g.1"); got != "bob: joined the chat" {
		t.Fatalf("ann was shown %q", got)
	}
	if got := r.socks.take("g.2"); got != "" {
		t.Fatalf("bob, joining an empty room, was shown %q", got)
	}
	r.say("g.1", `{"message": "  hi bob  "}`)
	r.say("g.1", `{"message": "   "}`) // ignored, as the original ignores it
	if got := r.socks.take("g.2"); got != "ann: hi bob" {
		t.Fatalf("bob was shown %q", got)
	}
	if got := r.socks.take("g.1"); got != "" {
		t.Fatalf("ann was shown her own message: %q", got)
	}

	r.a.Close() // evicted; the browsers stay
	r.start()
	r.say("g.2", `{"message": "hello"}`)
	r.join("g.3", "cyd")
	if got := r.socks.take("g.3"); got != "ann: hi bob | bob: hello" {
		t.Fatalf("cyd's history: %q", got)
	}
	if err := r.a.WebSocketClose(context.Background(), "g.1", 1001, "tab closed", true); err != nil {
		t.Fatal(err)
	}
	if got := r.socks.take("g.2"); got != "cyd: joined the chat | ann: Disconnected" {
		t.Fatalf("bob was shown %q", got)
	}
}

// Bad frames are answered by "system" and store nothing.
func TestRoomRefusesBadFrames(t *testing.T) {
	r := newRig(t)
	r.join("g.1", "ann")
	r.join("g.2", "bob")
	r.socks.take("g.1")
	r.say("g.1", `not json`)
	r.say("g.1", fmt.Sprintf(`{"message": %q}`, strings.Repeat("x", 5000)))
	got := r.socks.take("g.1")
	if !strings.HasPrefix(got, "system: error: bad JSON") || !strings.Contains(got, "| system: error: message too large") {
		t.Fatalf("ann was answered %q", got)
	}
	if got := r.socks.take("g.2"); got != "" {
		t.Fatalf("bob was shown %q", got)
	}
	r.join("g.3", "cyd")
	if got := r.socks.take("g.3"); got != "" {
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
	got := strings.Split(r.socks.take("g.2"), " | ")
	if len(got) != HistoryLimit || got[0] != "ann: m6" || got[len(got)-1] != fmt.Sprintf("ann: m%d", HistoryLimit+5) {
		t.Fatalf("bob's history: %d messages, %q ... %q", len(got), got[0], got[len(got)-1])
	}
}
