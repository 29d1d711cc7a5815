package objectnode

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	pb "hellochat/proto/roompb"
	"hellochat/shard"
	"hellochat/storage"
)

// heldBatch is one batch the room handed its committer, waiting for the
// test to decide its fate.
type heldBatch struct {
	object string
	ops    []storage.Op
	guards storage.Guards
	done   func(error)
}

// heldCommitter holds every batch until the test commits or fails it, so
// a test sees the room between a proposal and its outcome.
type heldCommitter struct{ held []*heldBatch }

func (c *heldCommitter) Commit(object string, ops []storage.Op, guards storage.Guards, done func(error)) {
	c.held = append(c.held, &heldBatch{object: object, ops: ops, guards: guards, done: done})
}

// roomRig drives one room actor step by step on the test's goroutine, in
// the manner of etcd raft's deterministic tests: every request is handled
// and every commit outcome delivered when the test says, and nothing else
// runs. The store is real Pebble; the committer writes a batch to it only
// when the test commits it, checking the batch's guards as a replica would.
type roomRig struct {
	t        *testing.T
	store    *storage.Store
	node     *Node
	c        *heldCommitter
	r        *room
	clock    int64
	versions map[string]uint64 // each object's version, as replicas keep it
}

// newRoomRig starts a rig on a fresh store.
func newRoomRig(t *testing.T) *roomRig {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := storage.OpenStore(t.TempDir(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return newRoomRigOn(t, store)
}

// newRoomRigOn starts a rig whose room loads from store, as a room
// reactivated on a node (or on a new leader) does.
func newRoomRigOn(t *testing.T, store *storage.Store) *roomRig {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := &heldCommitter{}
	n := &Node{cfg: Config{ID: "rig", RoomIdle: time.Hour}, log: quiet, store: store, committer: c,
		stopping: make(chan struct{}), rooms: map[string]*room{}, reg: prometheus.NewRegistry()}
	n.registerMetrics()
	g := &roomRig{t: t, store: store, node: n, c: c, clock: 1_000_000, versions: map[string]uint64{}}
	g.r = newRoom(n, "rig-room")
	g.r.now = func() int64 { return g.clock }
	if err := g.r.load(); err != nil {
		t.Fatal(err)
	}
	if g.r.lastSeq > 0 {
		g.versions[g.r.name] = g.r.lastSeq
	}
	return g
}

// attach opens a router stream on the room and drops its Opened event.
func (g *roomRig) attach(router string) *stream {
	g.t.Helper()
	st := newStream(router, DefaultStreamQueue, DefaultStreamQueueBytes)
	a := &attachReq{st: st, result: make(chan error, 1)}
	g.r.handle(roomReq{attach: a})
	if err := <-a.result; err != nil {
		g.t.Fatal(err)
	}
	if evs := st.take(); len(evs) != 1 || evs[0].GetOpened() == nil {
		g.t.Fatalf("attach: got %v, want opened", evs)
	}
	return st
}

func (g *roomRig) request(st *stream, req *pb.AttachRequest) { g.r.handle(roomReq{from: st, req: req}) }

func (g *roomRig) join(st *stream, session uint64, name string) {
	g.request(st, &pb.AttachRequest{Kind: &pb.AttachRequest_Join{Join: &pb.Join{Session: session, Name: name, Quiet: true}}})
}

func (g *roomRig) send(st *stream, session uint64, name, id, text string) {
	g.request(st, &pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: &pb.Send{
		Session: session, Name: name, ClientId: id, Text: text}}})
}

// inFlight is how many batches wait for the test.
func (g *roomRig) inFlight() int { return len(g.c.held) }

// finish delivers the outcome of the oldest held batch: nil commits it
// (written to the store if its guards hold, else it fails with
// shard.ErrConflict, as a replica's apply would), anything else fails it.
// The room then handles the outcome, as its loop would.
func (g *roomRig) finish(err error) *heldBatch {
	g.t.Helper()
	if len(g.c.held) == 0 {
		g.t.Fatal("no batch in flight")
	}
	b := g.c.held[0]
	g.c.held = g.c.held[1:]
	if err == nil {
		err = g.apply(b)
	}
	b.done(err)
	select {
	case got := <-g.r.commitc:
		g.r.committed(got)
	default:
		g.t.Fatal("done did not reach the room")
	}
	return b
}

func (g *roomRig) apply(b *heldBatch) error {
	if b.guards.Versioned && g.versions[b.object] != b.guards.Version {
		return shard.ErrConflict
	}
	for _, k := range b.guards.Absent {
		if _, found, err := g.store.Get(b.object, k); err != nil || found {
			return errors.Join(shard.ErrConflict, err)
		}
	}
	for _, k := range b.guards.Present {
		if _, found, err := g.store.Get(b.object, k); err != nil || !found {
			return errors.Join(shard.ErrConflict, err)
		}
	}
	if err := g.store.Apply(b.object, b.ops); err != nil {
		g.t.Fatalf("apply batch: %v", err)
	}
	if b.guards.Versioned {
		g.versions[b.object] = b.guards.Next
	}
	return nil
}

// seqs are the seqs of the messages a batch writes, in order.
func (b *heldBatch) seqs() []uint64 {
	var out []uint64
	for _, op := range b.ops {
		if len(op.Key) == 9 && op.Key[0] == msgKeyPrefix {
			out = append(out, binary.BigEndian.Uint64(op.Key[1:]))
		}
	}
	return out
}

// messages are the messages a batch writes.
func (b *heldBatch) messages(t *testing.T) []*pb.ChatMessage {
	t.Helper()
	var out []*pb.ChatMessage
	for _, op := range b.ops {
		if len(op.Key) == 9 && op.Key[0] == msgKeyPrefix {
			m := &pb.ChatMessage{}
			if err := proto.Unmarshal(op.Value, m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
	}
	return out
}

// history is every message in the store, oldest first.
func (g *roomRig) history() []*pb.ChatMessage {
	g.t.Helper()
	var out []*pb.ChatMessage
	err := g.store.Scan(g.r.name, []byte{msgKeyPrefix}, []byte{msgKeyPrefix + 1}, false, func(_, v []byte) bool {
		m := &pb.ChatMessage{}
		if err := proto.Unmarshal(v, m); err != nil {
			g.t.Fatal(err)
		}
		out = append(out, m)
		return true
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}

// records counts the room's keys that begin with prefix.
func (g *roomRig) records(prefix byte) int {
	g.t.Helper()
	n := 0
	err := g.store.Scan(g.r.name, []byte{prefix}, []byte{prefix + 1}, false, func(_, _ []byte) bool {
		n++
		return true
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return n
}

// sent sorts what a stream was sent since the last look.
type sent struct {
	acks     []*pb.Ack
	rejects  []*pb.Reject
	messages []*pb.ChatMessage
	other    []*pb.AttachEvent
}

func take(st *stream) sent {
	var s sent
	for _, ev := range st.take() {
		switch k := ev.Kind.(type) {
		case *pb.AttachEvent_Ack:
			s.acks = append(s.acks, k.Ack)
		case *pb.AttachEvent_Reject:
			s.rejects = append(s.rejects, k.Reject)
		case *pb.AttachEvent_Message:
			s.messages = append(s.messages, k.Message)
		default:
			s.other = append(s.other, ev)
		}
	}
	return s
}
