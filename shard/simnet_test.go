package shard

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/cockroachdb/pebble/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

// The simulated network. Every batch and snapshot a simulated Host sends
// lands in simNet.pending; the simulation decides when (and whether, and
// how often) each arrives, and hands it to the receiving Host on its own
// goroutine. Nothing here runs concurrently with the simulation.

// simMsg is one batch or one whole snapshot in flight.
type simMsg struct {
	from, to string
	batch    *pb.RaftBatch
	snap     *simSnapshot
}

// simSnapshot is a shard snapshot as its stream would carry it: the
// header (the MsgSnap) and every key of the shard, read when the sender
// started it (as the sender's pinned Pebble snapshot would be).
type simSnapshot struct {
	shard         int
	to            uint64 // the replica it is for, for the sender's report
	toIncarnation string
	header        []byte
	pairs         [][2][]byte
	// sender is the Host that started it: its report goes to that Host
	// only, not to a later incarnation of the process.
	sender *Host
}

func (m *simMsg) String() string {
	if m.snap != nil {
		return fmt.Sprintf("snapshot %s->%s shard %d (%d keys)", m.from, m.to, m.snap.shard, len(m.snap.pairs))
	}
	return fmt.Sprintf("batch %s->%s (%d msgs, %d removals)", m.from, m.to, len(m.batch.Messages), len(m.batch.Removals))
}

// maxPending bounds the messages in flight; past it the oldest are lost,
// as a peer's full queue drops them.
const maxPending = 4000

type simNet struct {
	pending []*simMsg
	// fresh is where this round's messages start in pending: they are put
	// in a canonical order once the round is over (see settle).
	fresh int
}

// settle orders the messages sent since the last settle by destination,
// keeping each destination's own order: a Host builds them from maps, and
// a replay must see them in the same order.
func (n *simNet) settle() {
	slices.SortStableFunc(n.pending[n.fresh:], func(a, b *simMsg) int { return cmp.Compare(a.to, b.to) })
	if over := len(n.pending) - maxPending; over > 0 {
		n.pending = slices.Delete(n.pending, 0, over)
	}
	n.fresh = len(n.pending)
}

// take removes and returns pending message i.
func (n *simNet) take(i int) *simMsg {
	m := n.pending[i]
	n.pending = slices.Delete(n.pending, i, i+1)
	n.fresh = len(n.pending)
	return m
}

// simWire is one Host's outbound: it queues batches on the network.
type simWire struct {
	net  *simNet
	from string
	// dead reports whether the process already died (mid-round): then
	// nothing it sends leaves it.
	dead func() bool
}

func (w *simWire) send(to string, envs []*pb.RaftEnvelope, removals []*pb.Removal) {
	if w.dead() {
		return
	}
	// A round batches its groups in map order; each group's own
	// messages keep their order.
	envs = slices.Clone(envs)
	slices.SortStableFunc(envs, func(a, b *pb.RaftEnvelope) int { return cmp.Compare(a.Shard, b.Shard) })
	w.net.pending = append(w.net.pending, &simMsg{from: w.from, to: to,
		batch: &pb.RaftBatch{FromNode: w.from, Messages: envs, Removals: slices.Clone(removals)}})
}

func (w *simWire) client(string) (pb.ReplicationClient, error) {
	return nil, errors.New("simulated network: snapshots travel through simSnaps")
}

func (w *simWire) close() {}

// simSnaps is one Host's snapshotStarter: it reads the shard as the
// production sender does when it starts, and queues the whole snapshot.
type simSnaps struct {
	net  *simNet
	h    *Host
	dead func() bool
}

func (s *simSnaps) close() {}

// start prepares the snapshot as snapshotSender.start does (the data as
// applied now, the metadata moved up to it, the group's replica table).
func (s *simSnaps) start(g *group, m *raftpb.Message) {
	h := s.h
	if s.dead() {
		return
	}
	fail := func() { g.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFailure) }
	to, inc, ok := h.route(g, m.GetTo())
	if !ok {
		fail()
		return
	}
	reader, err := h.cfg.Store.ReadShard(g.shard)
	if err != nil {
		fail()
		return
	}
	defer reader.Close()
	term, err := g.ms.Term(g.applied)
	if reader.Applied() != g.applied || err != nil {
		fail()
		return
	}
	msg := proto.Clone(m).(*raftpb.Message)
	msg.Snapshot = &raftpb.Snapshot{Data: g.encodeReplicaSet(), Metadata: &raftpb.SnapshotMetadata{
		Index: new(g.applied), Term: new(term), ConfState: proto.Clone(g.confState).(*raftpb.ConfState)}}
	header, err := proto.Marshal(msg)
	if err != nil {
		fail()
		return
	}
	snap := &simSnapshot{shard: g.shard, to: m.GetTo(), toIncarnation: inc, header: header, sender: h}
	err = reader.Scan(func(k, v []byte) error {
		snap.pairs = append(snap.pairs, [2][]byte{slices.Clone(k), slices.Clone(v)})
		return nil
	})
	if err != nil {
		fail()
		return
	}
	s.net.pending = append(s.net.pending, &simMsg{from: h.cfg.NodeID, to: to, snap: snap})
}

// receive writes a snapshot into h's store and steps it, as
// receiveSnapshot and the loop do; the error is what the stream's sender
// would be told.
func receiveSimSnapshot(h *Host, from string, s *simSnapshot) error {
	f, err := h.cfg.Store.NewSnapshotFile(s.shard)
	if err != nil {
		return fmt.Errorf("open snapshot file: %w", err)
	}
	for _, kv := range s.pairs {
		if err := f.Add(kv[0], kv[1]); err != nil {
			f.Abort()
			return fmt.Errorf("write snapshot file: %w", err)
		}
	}
	file, err := f.Finish()
	if err != nil {
		return fmt.Errorf("finish snapshot file: %w", err)
	}
	in := &incomingSnapshot{shard: s.shard, msg: s.header, file: file, from: from,
		toIncarnation: s.toIncarnation, done: make(chan error, 1)}
	h.stepSnapshot(in)
	return <-in.done
}

// simMembers is a fixed placement: the simulated cluster's membership
// never changes.
type simMembers struct{ p *cluster.Placement }

func (m simMembers) Placement() *cluster.Placement { return m.p }
func (m simMembers) Changed() <-chan struct{}      { return nil }

// syncWatchFS counts the syncs of a node's files, whichever of Sync,
// SyncData and SyncTo Pebble uses: a crash in the middle of a round
// happens at one of its syncs, and nothing from that sync on lasts or
// leaves the dead process (sends, answers). Used by pointer: Pebble
// compares file systems.
type syncWatchFS struct {
	vfs.FS
	syncs *atomic.Int64
	// before is called with the count of syncs, this one included, before
	// each sync is done.
	before func(n int64)
}

type syncWatchFile struct {
	vfs.File
	fs *syncWatchFS
}

func (f *syncWatchFile) Sync() error     { f.fs.before(f.fs.syncs.Add(1)); return f.File.Sync() }
func (f *syncWatchFile) SyncData() error { f.fs.before(f.fs.syncs.Add(1)); return f.File.SyncData() }
func (f *syncWatchFile) SyncTo(n int64) (bool, error) {
	f.fs.before(f.fs.syncs.Add(1))
	return f.File.SyncTo(n)
}

func (fs *syncWatchFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &syncWatchFile{File: f, fs: fs}, nil
}

func (fs *syncWatchFS) Create(name string) (vfs.File, error)  { return fs.wrap(fs.FS.Create(name)) }
func (fs *syncWatchFS) OpenDir(name string) (vfs.File, error) { return fs.wrap(fs.FS.OpenDir(name)) }
func (fs *syncWatchFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.Open(name, opts...))
}
func (fs *syncWatchFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, opts...))
}
func (fs *syncWatchFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname))
}
