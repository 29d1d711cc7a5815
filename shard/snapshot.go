package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// Snapshot streaming. When Raft wants to send a replica a snapshot (it is
// new, or behind the truncated log), the loop pins the shard's data in a
// Pebble snapshot, which costs no copying, and hands it to a sender
// goroutine. The sender streams the keys in chunks of at most
// SnapshotChunkBytes at no more than SnapshotRate, on its own gRPC stream,
// so the Raft loop and the other 63 groups never wait on it. The receiver
// writes chunks into an sstable file; once the file is complete the loop
// steps the snapshot message, and Raft's install ingests the file.

const (
	// SnapshotChunkBytes bounds one chunk of a streamed snapshot.
	SnapshotChunkBytes = 1 << 20
	// MaxSnapshotSends bounds the snapshots one node streams at once.
	MaxSnapshotSends = 2
	// snapshotTimeout bounds one snapshot's whole stream; a stuck one is
	// abandoned and Raft tries again.
	snapshotTimeout = 10 * time.Minute
)

type snapReport struct {
	shard int
	to    uint64
	ok    bool
}

type snapshotSender struct {
	h        *Host
	sem      chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	inflight map[snapReport]bool // shard and replica
}

func newSnapshotSender(h *Host) *snapshotSender {
	ctx, cancel := context.WithCancel(context.Background())
	return &snapshotSender{h: h, sem: make(chan struct{}, MaxSnapshotSends), ctx: ctx, cancel: cancel,
		inflight: map[snapReport]bool{}}
}

func (s *snapshotSender) close() {
	s.cancel()
	s.wg.Wait()
}

// start begins streaming g's shard to m.To. It runs on the loop: the data
// pinned now is exactly what g has applied.
func (s *snapshotSender) start(g *group, m *raftpb.Message) {
	h := s.h
	key := snapReport{shard: g.shard, to: m.GetTo()}
	to, inc, ok := h.route(g, m.GetTo())
	s.mu.Lock()
	busy := s.inflight[key]
	s.mu.Unlock()
	if busy {
		return // Raft waits for the report of the one in flight
	}
	fail := func(err error) {
		h.log.Warn("cannot send snapshot", "shard", g.shard, "to", h.name(g, m.GetTo()), "err", err)
		g.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
	}
	if !ok {
		fail(errors.New("replica's node is unknown"))
		return
	}
	reader, err := h.cfg.Store.ReadShard(g.shard)
	if err != nil {
		fail(err)
		return
	}
	if reader.Applied() != g.applied {
		reader.Close()
		fail(fmt.Errorf("store holds applied index %d, group %d", reader.Applied(), g.applied))
		return
	}
	term, err := g.ms.Term(g.applied)
	if err != nil {
		reader.Close()
		fail(fmt.Errorf("term of applied index %d: %w", g.applied, err))
		return
	}
	// Raft chose its own (older) snapshot point; the data is newer, so the
	// metadata moves up to match and the replica continues from there.
	msg := proto.Clone(m).(*raftpb.Message)
	msg.Snapshot = &raftpb.Snapshot{Data: g.encodeReplicaSet(), Metadata: &raftpb.SnapshotMetadata{
		Index: new(g.applied), Term: new(term), ConfState: proto.Clone(g.confState).(*raftpb.ConfState)}}
	header, err := proto.Marshal(msg)
	if err != nil {
		reader.Close()
		fail(err)
		return
	}
	s.mu.Lock()
	s.inflight[key] = true
	s.mu.Unlock()
	index := g.applied
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer reader.Close()
		start := time.Now()
		bytes, err := s.stream(to, inc, g.shard, header, reader)
		s.mu.Lock()
		delete(s.inflight, key)
		s.mu.Unlock()
		if err != nil {
			h.log.Warn("snapshot stream failed", "shard", key.shard, "to", to, "err", err)
		} else {
			h.cfg.Metrics.SnapshotsSent.Inc()
			h.cfg.Metrics.SnapshotSent.Add(float64(bytes))
			h.log.Info("sent snapshot", "shard", key.shard, "to", to, "index", index,
				"bytes", bytes, "took", time.Since(start).Round(time.Millisecond))
		}
		key.ok = err == nil
		h.reportSnaps([]snapReport{key}, key.ok)
	}()
}

// stream sends one snapshot, throttled to SnapshotRate.
func (s *snapshotSender) stream(to, toIncarnation string, shard int, header []byte, reader *storage.ShardReader) (int64, error) {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-s.ctx.Done():
		return 0, s.ctx.Err()
	}
	client, err := s.h.tr.client(to)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, snapshotTimeout)
	defer cancel()
	stream, err := client.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("open snapshot stream: %w", err)
	}
	chunk := &pb.SnapshotChunk{FromNode: s.h.cfg.NodeID, Shard: uint32(shard), Message: header, ToIncarnation: toIncarnation}
	size := 0
	var sent int64
	start := time.Now()
	flush := func(last bool) error {
		chunk.Last = last
		if err := stream.Send(chunk); err != nil {
			if errors.Is(err, io.EOF) {
				_, err = stream.CloseAndRecv()
			}
			return fmt.Errorf("send snapshot chunk: %w", err)
		}
		sent += int64(size)
		chunk = &pb.SnapshotChunk{}
		size = 0
		// Throttle: wait until the bytes sent fit the rate.
		if ahead := time.Duration(float64(sent)/float64(s.h.cfg.SnapshotRate)*float64(time.Second)) - time.Since(start); ahead > 0 && !last {
			t := time.NewTimer(ahead)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	err = reader.Scan(func(key, value []byte) error {
		chunk.Pairs = append(chunk.Pairs, &pb.KVOp{Key: append([]byte(nil), key...), Value: append([]byte(nil), value...)})
		size += len(key) + len(value) + 8
		if size >= SnapshotChunkBytes {
			return flush(false)
		}
		return nil
	})
	if err != nil {
		return sent, err
	}
	if err := flush(true); err != nil {
		return sent, err
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return sent, fmt.Errorf("snapshot not taken: %w", err)
	}
	return sent, nil
}

// receiveSnapshot writes an incoming snapshot stream to disk and hands it
// to the loop; it answers once the loop has stepped it.
func (h *Host) receiveSnapshot(stream pb.Replication_SnapshotServer, check Verifier) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := check(stream.Context(), first.FromNode); err != nil {
		return err
	}
	shard := int(first.Shard)
	if shard < 0 || shard >= len(h.status) || len(first.Message) == 0 {
		return fmt.Errorf("snapshot: bad header (shard %d)", shard)
	}
	if h.dropped(first.FromNode) {
		return fmt.Errorf("snapshot: cut off from %s", first.FromNode)
	}
	f, err := h.cfg.Store.NewSnapshotFile(shard)
	if err != nil {
		return err
	}
	chunk := first
	for {
		for _, kv := range chunk.Pairs {
			if err := f.Add(kv.Key, kv.Value); err != nil {
				f.Abort()
				return err
			}
			h.cfg.Metrics.SnapshotRecv.Add(float64(len(kv.Key) + len(kv.Value)))
		}
		if chunk.Last {
			break
		}
		if chunk, err = stream.Recv(); err != nil {
			f.Abort()
			return fmt.Errorf("snapshot of shard %d from %s: %w", shard, first.FromNode, err)
		}
	}
	file, err := f.Finish()
	if err != nil {
		return err
	}
	in := &incomingSnapshot{shard: shard, msg: first.Message, file: file, from: first.FromNode,
		toIncarnation: first.ToIncarnation, done: make(chan error, 1)}
	select {
	case h.snapIn <- in:
	case <-h.done:
		h.cfg.Store.RemoveSnapshotFile(file)
		return ErrStopped
	}
	select {
	case err := <-in.done:
		if err != nil {
			return err
		}
	case <-h.done:
		return ErrStopped
	}
	return stream.SendAndClose(&pb.SnapshotAck{})
}

// stepSnapshot steps a received snapshot into its group; Raft installs it
// in the next round, or ignores it if it is stale (its file is then
// removed once the group has applied past it).
func (h *Host) stepSnapshot(in *incomingSnapshot) {
	m := &raftpb.Message{}
	if err := proto.Unmarshal(in.msg, m); err != nil || m.GetType() != raftpb.MsgSnap || m.GetSnapshot() == nil {
		h.cfg.Store.RemoveSnapshotFile(in.file)
		in.done <- fmt.Errorf("snapshot: bad message (%v)", err)
		return
	}
	g := h.groups[in.shard]
	if err := h.snapshotPlausible(g, in, m); err != nil {
		h.refusedMsgs.Add(1)
		h.cfg.Store.RemoveSnapshotFile(in.file)
		h.log.Warn("refusing a snapshot", "shard", in.shard, "from", in.from, "err", err)
		in.done <- fmt.Errorf("snapshot of shard %d refused: %w", in.shard, err)
		return
	}
	if g == nil {
		var err error
		if g, err = h.addGroup(in.shard, m.GetTo()); err != nil {
			h.cfg.Store.RemoveSnapshotFile(in.file)
			in.done <- err
			return
		}
	}
	g.silent = 0
	index := m.GetSnapshot().GetMetadata().GetIndex()
	if old, ok := g.snapFiles[index]; ok {
		h.cfg.Store.RemoveSnapshotFile(old)
	}
	g.snapFiles[index] = in.file
	if err := g.rn.Step(m); err != nil {
		h.log.Debug("raft step snapshot", "shard", in.shard, "err", err)
	}
	in.done <- nil
}

// snapshotPlausible checks a snapshot message as stepOne checks every other
// Raft message: it is for a replica this incarnation holds (g, nil when
// none yet) or may start, from one of the authenticated sender's own
// replicas, and describes a state a correct leader could send: a
// configuration this replica is part of, at a term no later than the
// sender's, with a replica table that names this node for it.
func (h *Host) snapshotPlausible(g *group, in *incomingSnapshot, m *raftpb.Message) error {
	to := m.GetTo()
	if in.toIncarnation != "" && in.toIncarnation != h.cfg.Replica {
		return fmt.Errorf("for incarnation %q of this node, this is %q", in.toIncarnation, h.cfg.Replica)
	}
	if g != nil && to != g.id {
		return fmt.Errorf("for replica %x, this node holds %x", to, g.id)
	}
	if g == nil {
		if why := h.mayCreate(in.shard, to, in.toIncarnation); why != "" {
			return fmt.Errorf("replica %x: %s", to, why)
		}
	}
	meta := m.GetSnapshot().GetMetadata()
	if meta.GetIndex() == 0 || meta.GetTerm() == 0 || meta.GetTerm() > m.GetTerm() {
		return fmt.Errorf("snapshot at index %d of term %d sent in term %d", meta.GetIndex(), meta.GetTerm(), m.GetTerm())
	}
	cs := meta.GetConfState()
	if !slices.Contains(cs.GetVoters(), to) && !slices.Contains(cs.GetLearners(), to) {
		return errors.New("its configuration does not include this replica")
	}
	reps, _, err := decodeReplicaSet(m.GetSnapshot().GetData())
	if err != nil {
		return err
	}
	if d, ok := reps[to]; ok && (d.node != h.cfg.NodeID || d.incarnation != h.cfg.Replica) {
		return fmt.Errorf("its replica table gives replica %x to %s/%s", to, d.node, d.incarnation)
	}
	// The sender must be a replica this node knows as the sender's, or
	// one the snapshot's own table gives to the sender (a leader added
	// after this replica's configuration, which it lagged behind).
	from := m.GetFrom()
	known := h.names[from]
	if g != nil {
		known = h.nodeOf(g, from)
	}
	if d, ok := reps[from]; ok && (d.node != in.from || (known != "" && known != in.from)) {
		return fmt.Errorf("replica %x is %s's, not %s's", from, d.node, in.from)
	} else if !ok && known != in.from {
		return fmt.Errorf("replica %x is not one of %s's", from, in.from)
	}
	return nil
}
