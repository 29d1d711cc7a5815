// Package apptest runs an object class on the real runtime (package
// durable) over an in-memory store, with a gateway that records what the
// object sends to its sockets: the deterministic harness for testing a
// class's events one by one, as etcd raft tests its core.
package apptest

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"hellochat/durable"
	"hellochat/storage"
)

// Committer commits to an in-memory store at once.
type Committer struct{ *durable.MemStore }

// Commit applies ops to the store and reports at once.
func (c Committer) Commit(object string, ops []storage.Op, g storage.Guards, done func(error)) {
	done(c.Apply(object, ops, g))
}

// Sockets records what an object sends to its sockets. Like a router,
// it drops a numbered frame (WebSocket.SendNumbered) whose number is not
// above the last it kept for that socket.
type Sockets struct {
	mu      sync.Mutex
	sent    map[string][]frame
	closed  map[string]int
	numbers map[string]uint64 // the last number kept, per socket
	taken   map[string]uint64 // the last number taken, per socket
	drains  map[string]bool   // a WebSocketDrained asked for, per socket
	repeats int
}

type frame struct {
	data   []byte
	number uint64
}

// Send records a frame for each socket, unless it is a numbered repeat
// there.
func (s *Sockets) Send(sockets []string, msg []byte, text bool, number uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, socket := range sockets {
		if number > 0 {
			if number <= s.numbers[socket] {
				s.repeats++
				continue
			}
			s.numbers[socket] = number
		}
		s.sent[socket] = append(s.sent[socket], frame{append([]byte(nil), msg...), number})
	}
}

// Close records a close and its code.
func (s *Sockets) Close(socket string, code int, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed[socket] = code
}

// Drain records that the object asked to hear when socket drained.
func (s *Sockets) Drain(socket string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains[socket] = true
}

// AutoResponse is not recorded.
func (s *Sockets) AutoResponse(socket, request, response string) {}

// Take returns and forgets the frames socket was sent: what its browser
// was shown.
func (s *Sockets) Take(socket string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, f := range s.sent[socket] {
		out = append(out, f.data)
		s.taken[socket] = max(s.taken[socket], f.number)
	}
	delete(s.sent, socket)
	return out
}

// Lose forgets every frame sent and not yet taken, as if the node that
// sent them died before they left it: the numbers go back to the last
// one taken.
func (s *Sockets) Lose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.sent)
	clear(s.numbers)
	maps.Copy(s.numbers, s.taken)
}

// Repeats is how many numbered frames were dropped as repeats.
func (s *Sockets) Repeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repeats
}

// Closed reports whether socket was closed, and with which code.
func (s *Sockets) Closed(socket string) (code int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	code, ok = s.closed[socket]
	return code, ok
}

// Rig is one object of a class on the runtime.
type Rig struct {
	T     testing.TB
	ID    durable.ID
	New   func() durable.Object
	Store *durable.MemStore
	Socks *Sockets
	Actor *durable.Actor

	pebble *storage.Store // NewPebbleRig's
	// committed counts the bytes of keys and values NewPebbleRig's
	// batches held: what a shard would put in its Raft log.
	committed *atomic.Int64
}

// CommittedBytes is how many bytes of keys and values the batches of a
// NewPebbleRig held so far (a NewRig does not count them: 0).
func (r *Rig) CommittedBytes() int64 {
	if r.committed == nil {
		return 0
	}
	return r.committed.Load()
}

// NewRig starts the object id of a class.
func NewRig(t testing.TB, id durable.ID, newObject func() durable.Object) *Rig {
	r := &Rig{T: t, ID: id, New: newObject, Store: durable.NewMemStore(), Socks: newSockets()}
	r.Start()
	return r
}

// NewPebbleRig starts the object id of a class on a node's Pebble store
// in a test directory, each batch committed in one synced write, as a
// shard commits it once Raft has it (no Raft, no guards: one actor
// writes). For benchmarks of a class's path to the store; Store is nil.
func NewPebbleRig(t testing.TB, id durable.ID, newObject func() durable.Object) *Rig {
	s, err := storage.OpenStore(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := &Rig{T: t, ID: id, New: newObject, Socks: newSockets(), pebble: s, committed: new(atomic.Int64)}
	r.Start()
	return r
}

func newSockets() *Sockets {
	return &Sockets{sent: map[string][]frame{}, closed: map[string]int{}, numbers: map[string]uint64{},
		taken: map[string]uint64{}, drains: map[string]bool{}}
}

// pebbleCommitter applies each batch on its own goroutine, as a shard
// answers later: the actor gathers the next batch meanwhile.
type pebbleCommitter struct {
	s     *storage.Store
	bytes *atomic.Int64
}

func (c pebbleCommitter) Commit(object string, ops []storage.Op, _ storage.Guards, done func(error)) {
	for _, op := range ops {
		c.bytes.Add(int64(len(op.Key) + len(op.Value)))
	}
	go func() { done(c.s.Apply(object, ops)) }()
}

// Start starts a fresh instance on the same store and sockets; after
// Evict, it is the object coming back for its next event.
func (r *Rig) Start() {
	cfg := durable.Config{Reader: r.Store, Committer: Committer{r.Store}, Sockets: r.Socks,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if r.pebble != nil {
		cfg.Reader, cfg.Committer = r.pebble, pebbleCommitter{r.pebble, r.committed}
	}
	a, err := durable.Start(r.ID, r.New, cfg)
	if err != nil {
		r.T.Fatal(err)
	}
	r.Actor = a
	r.T.Cleanup(func() { a.Close() })
}

// Evict closes the instance, as an idle object is evicted from memory.
func (r *Rig) Evict() { r.Actor.Close() }

// Upgrade hands the object a WebSocket upgrade for socket, with header
// set on the request as name-value pairs, and returns its answer.
func (r *Rig) Upgrade(socket, url string, header ...string) *http.Response {
	r.T.Helper()
	ctx := durable.WithUpgrade(context.Background(), socket)
	req := httptest.NewRequest("GET", url, nil).WithContext(ctx)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := r.Actor.Fetch(ctx, req)
	if err != nil {
		r.T.Fatal(err)
	}
	return resp
}

// Message hands the object message n of socket (0: unnumbered), as a
// router does; a handler's error fails the test.
func (r *Rig) Message(socket string, n uint64, msg string) {
	r.T.Helper()
	if err := r.Actor.WebSocketMessageAt(context.Background(), socket, n, []byte(msg), true); err != nil {
		r.T.Fatalf("message %d of %s: %v", n, socket, err)
	}
}

// Drained hands the object the WebSocketDrained event it asked for on
// socket, as a router does once the browser's connection took what was
// sent before; it reports whether one was asked for.
func (r *Rig) Drained(socket string) bool {
	r.T.Helper()
	r.Socks.mu.Lock()
	asked := r.Socks.drains[socket]
	delete(r.Socks.drains, socket)
	r.Socks.mu.Unlock()
	if !asked {
		return false
	}
	if err := r.Actor.WebSocketDrained(context.Background(), socket); err != nil {
		r.T.Fatalf("drained %s: %v", socket, err)
	}
	return true
}

// Gone tells the object socket's browser closed it.
func (r *Rig) Gone(socket string) {
	r.T.Helper()
	if err := r.Actor.WebSocketClose(context.Background(), socket, 1001, "tab closed", true); err != nil {
		r.T.Fatal(err)
	}
}
