// Package shard replicates the node's shards: each shard (a partition of
// the placement ring) is a Raft group (go.etcd.io/raft/v3) over its
// replicas, and a Host drives every group this node is a replica of from
// one loop, so one round of work for all shards costs one fsync and one
// batch of messages per peer.
package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

var (
	// ErrNotLeader fails a proposal made on a replica that does not lead its
	// shard (or stopped leading it before the proposal was applied). The
	// proposal may still commit under the new leader; callers resend it
	// there with the same client ids, and the room dedupes.
	ErrNotLeader = errors.New("shard: not the leader")
	// ErrStopped fails proposals once the host is shutting down.
	ErrStopped = errors.New("shard: stopped")
	// ErrConflict fails a proposal whose guards did not hold when it was
	// applied: its proposer's view of the object was stale. Nothing of it
	// was written.
	ErrConflict = errors.New("shard: conditional write refused")
)

// Config configures a Host.
type Config struct {
	NodeID   string
	Store    *storage.Store
	Members  *cluster.Membership
	Replicas int // R: replicas per shard, fewer only while the cluster has fewer nodes
	// Tick is Raft's clock. Elections take ElectionTicks to ElectionTicks*2
	// ticks; the leader sends heartbeats every HeartbeatTicks.
	Tick           time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// SnapshotEvery applied entries a shard takes a snapshot and truncates
	// its log, keeping KeepEntries behind it for slow followers.
	SnapshotEvery uint64
	KeepEntries   uint64
	Logger        *slog.Logger
	// OnLeadership is called from the Raft loop whenever this node starts or
	// stops serving a shard. It must not block.
	OnLeadership func(shard int, serving bool, leader string)
	// Drop, when set, discards Raft messages between this node and a peer
	// (both directions) while it returns true: fault injection for tests
	// that cut a node off from its peers.
	Drop func(peer string) bool
}

// DefaultConfig fills in what cfg leaves zero.
func (cfg *Config) setDefaults() {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.ElectionTicks <= 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.HeartbeatTicks <= 0 {
		cfg.HeartbeatTicks = 1
	}
	// A follower more than KeepEntries behind needs a whole-shard snapshot,
	// which the loop builds synchronously: keep enough entries that a
	// follower briefly slowed by load catches up from the log instead.
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 5000
	}
	if cfg.KeepEntries == 0 {
		cfg.KeepEntries = 2000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnLeadership == nil {
		cfg.OnLeadership = func(int, bool, string) {}
	}
}

// RaftID is the Raft id of a node: a hash of its stable node id.
func RaftID(nodeID string) uint64 {
	return xxhash.Sum64String(nodeID) | 1 // 0 means "none" to Raft
}

// proposal is a batch waiting to be proposed.
type proposal struct {
	shard  int
	object string
	ops    []storage.Op
	guards storage.Guards
	done   func(error)
}

// leadership is what other goroutines may read about a shard.
type leadership struct {
	serving bool   // this node leads and has applied everything before its term
	leader  string // node id of the leader, "" when unknown
}

// Host runs the Raft groups of every shard this node is a replica of.
type Host struct {
	cfg    Config
	raftID uint64
	log    *slog.Logger
	tr     *transport

	props       chan *proposal
	inbox       chan *pb.RaftBatch
	unreachable chan string
	peerDown    chan string
	snapDone    chan snapReport
	stop        chan struct{}
	done        chan struct{}
	stopOnce    sync.Once

	status []atomic.Pointer[leadership] // by shard

	// Owned by the loop.
	groups   map[int]*group
	ids      map[uint64]string // raft id -> node id
	nextProp uint64
}

// group is one shard's Raft replica on this node.
type group struct {
	shard     int
	rn        *raft.RawNode
	ms        *raft.MemoryStorage
	replicas  []string // node ids, preferred leader first
	confState *raftpb.ConfState
	applied   uint64
	snapIndex uint64
	term      uint64
	lead      uint64
	leader    bool
	serving   bool
	// recampaign counts down ticks to a second campaign after a leader
	// died: the first can lose to a follower that has not yet forgotten it.
	recampaign int
	pending    map[uint64]func(error) // proposal id -> done
}

type snapReport struct {
	shard int
	to    uint64
	ok    bool
}

// Start creates (or reloads) the groups of every shard this node holds a
// replica of and starts the Raft loop. Call it once the cluster's node set
// is known (the node's --expect), since replica sets come from the ring.
func Start(cfg Config) (*Host, error) {
	cfg.setDefaults()
	h := &Host{
		cfg:         cfg,
		raftID:      RaftID(cfg.NodeID),
		log:         cfg.Logger,
		props:       make(chan *proposal, 4096),
		inbox:       make(chan *pb.RaftBatch, 1024),
		unreachable: make(chan string, 64),
		peerDown:    make(chan string, 64),
		snapDone:    make(chan snapReport, 1024),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		status:      make([]atomic.Pointer[leadership], cluster.Partitions),
		groups:      map[int]*group{},
		ids:         map[uint64]string{},
	}
	for i := range h.status {
		h.status[i].Store(&leadership{})
	}
	p := cfg.Members.Placement()
	for _, n := range p.Nodes() {
		h.ids[RaftID(n.ID)] = n.ID
	}
	for s := 0; s < cluster.Partitions; s++ {
		reps, err := p.Replicas(s, cfg.Replicas)
		if err != nil {
			return nil, err
		}
		ids := make([]string, len(reps))
		for i, r := range reps {
			ids[i] = r.ID
		}
		if !slices.Contains(ids, cfg.NodeID) {
			continue
		}
		g, err := h.openGroup(s, ids)
		if err != nil {
			return nil, err
		}
		h.groups[s] = g
	}
	h.tr = newTransport(h)
	go h.loop()
	h.log.Info("raft groups started", "groups", len(h.groups), "replicas", cfg.Replicas)
	return h, nil
}

// openGroup loads a shard replica from the store, or bootstraps it: every
// replica of a new shard starts from the same initial state (index 1, term
// 1, the ring's replicas as voters), so no replica needs to propose the
// membership.
func (h *Host) openGroup(shard int, replicas []string) (*group, error) {
	st, found, err := h.cfg.Store.LoadRaft(shard)
	if err != nil {
		return nil, err
	}
	ms := raft.NewMemoryStorage()
	if !found {
		voters := make([]uint64, len(replicas))
		for i, id := range replicas {
			voters[i] = RaftID(id)
		}
		st.Snap = &raftpb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1)),
			ConfState: &raftpb.ConfState{Voters: voters}}
		st.Hard = &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(1))}
		st.Applied = 1
		b := h.cfg.Store.NewBatch()
		if err := b.Compact(shard, st.Snap, 0); err != nil {
			return nil, err
		}
		if err := b.SetHardState(shard, st.Hard); err != nil {
			return nil, err
		}
		if err := b.SetApplied(shard, 1); err != nil {
			return nil, err
		}
		if err := b.Commit(true); err != nil {
			return nil, err
		}
	}
	g := &group{shard: shard, ms: ms, replicas: replicas, pending: map[uint64]func(error){}}
	if st.Snap != nil {
		if err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: st.Snap}); err != nil {
			return nil, fmt.Errorf("shard %d: load snapshot: %w", shard, err)
		}
		g.snapIndex = st.Snap.GetIndex()
		g.confState = st.Snap.GetConfState()
	}
	if err := ms.SetHardState(st.Hard); err != nil {
		return nil, err
	}
	if err := ms.Append(st.Entries); err != nil {
		return nil, fmt.Errorf("shard %d: load log: %w", shard, err)
	}
	g.applied = max(st.Applied, g.snapIndex)
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              h.raftID,
		ElectionTick:    h.cfg.ElectionTicks,
		HeartbeatTick:   h.cfg.HeartbeatTicks,
		Storage:         ms,
		Applied:         g.applied,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		CheckQuorum:     true,
		PreVote:         true,
		// A proposal is only ever made by the serving leader's room. A
		// follower forwarding one would let a just-deposed leader's stale
		// room commit through the new leader (make failover caught that).
		DisableProposalForwarding: true,
		Logger:                    raftLogger{h.log.With("shard", shard)},
	})
	if err != nil {
		return nil, fmt.Errorf("shard %d: start raft: %w", shard, err)
	}
	g.rn = rn
	g.term = st.Hard.GetTerm()
	return g, nil
}

// Propose replicates an object's batch through its shard's group and calls
// done once it is applied here (or failed). It never blocks for long.
func (h *Host) Propose(shard int, object string, ops []storage.Op, guards storage.Guards, done func(error)) {
	select {
	case h.props <- &proposal{shard: shard, object: object, ops: ops, guards: guards, done: done}:
	case <-h.done:
		done(ErrStopped)
	}
}

// Serving reports whether this node leads the shard and may serve its
// objects, and otherwise which node leads it ("" when unknown).
func (h *Host) Serving(shard int) (serving bool, leader string) {
	l := h.status[shard].Load()
	return l.serving, l.leader
}

// Leads returns a bitmask of the shards this node serves, for gossip.
func (h *Host) Leads() uint64 {
	var m uint64
	for s := range h.status {
		if h.status[s].Load().serving {
			m |= 1 << uint(s)
		}
	}
	return m
}

// Handle takes a batch of Raft messages from a peer (transport server).
func (h *Host) Handle(b *pb.RaftBatch) error {
	select {
	case h.inbox <- b:
		return nil
	case <-h.done:
		return ErrStopped
	}
}

// Stop ends the loop and fails every pending proposal.
func (h *Host) Stop() {
	h.stopOnce.Do(func() {
		close(h.stop)
		<-h.done
		h.tr.close()
	})
}

func (h *Host) loop() {
	defer close(h.done)
	ticker := time.NewTicker(h.cfg.Tick)
	defer ticker.Stop()
	ticks := 0
	changed := h.cfg.Members.Changed()
	for {
		select {
		case <-ticker.C:
			for _, g := range h.groups {
				g.rn.Tick()
				if g.recampaign > 0 {
					if g.recampaign--; g.recampaign == 0 && g.rn.BasicStatus().Lead == raft.None {
						g.rn.Campaign()
					}
				}
			}
			if ticks++; ticks%10 == 0 {
				h.preferLeaders()
			}
		case b := <-h.inbox:
			h.step(b)
		case p := <-h.props:
			h.propose(p)
		case id := <-h.unreachable:
			for _, g := range h.groups {
				g.rn.ReportUnreachable(RaftID(id))
			}
		case id := <-h.peerDown:
			h.leaderDown(id)
		case r := <-h.snapDone:
			if g := h.groups[r.shard]; g != nil {
				status := raft.SnapshotFinish
				if !r.ok {
					status = raft.SnapshotFailure
				}
				g.rn.ReportSnapshot(r.to, status)
			}
		case <-changed:
			changed = h.cfg.Members.Changed()
			p := h.cfg.Members.Placement()
			for _, n := range p.Nodes() {
				h.ids[RaftID(n.ID)] = n.ID
				if !p.Alive(n.ID) {
					h.leaderDown(n.ID)
				}
			}
		case <-h.stop:
			for _, g := range h.groups {
				h.failPending(g, ErrStopped)
			}
			h.drainProposals()
			return
		}
		// Take whatever else is already queued before the (fsyncing) round.
		for more := true; more; {
			select {
			case b := <-h.inbox:
				h.step(b)
			case p := <-h.props:
				h.propose(p)
			default:
				more = false
			}
		}
		if err := h.round(); err != nil {
			// The log could not be made durable: stop rather than ack or
			// vote on state we may not have. Peers elect another leader.
			h.log.Error("raft round failed; stopping replication", "err", err)
			for _, g := range h.groups {
				h.failPending(g, err)
			}
			h.drainProposals()
			return
		}
	}
}

func (h *Host) drainProposals() {
	for {
		select {
		case p := <-h.props:
			p.done(ErrStopped)
		default:
			return
		}
	}
}

func (h *Host) step(b *pb.RaftBatch) {
	if h.cfg.Drop != nil && h.cfg.Drop(b.FromNode) {
		return
	}
	for _, env := range b.Messages {
		g := h.groups[int(env.Shard)]
		if g == nil {
			continue
		}
		m := &raftpb.Message{}
		if err := proto.Unmarshal(env.Message, m); err != nil {
			h.log.Warn("dropping undecodable raft message", "from", b.FromNode, "err", err)
			continue
		}
		if err := g.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
			h.log.Debug("raft step", "shard", env.Shard, "err", err)
		}
	}
}

func (h *Host) propose(p *proposal) {
	g := h.groups[p.shard]
	// g.serving is refreshed at the end of a round; Raft may have stepped
	// down since, while handling a message earlier in this one.
	if g == nil || !g.serving || g.rn.BasicStatus().RaftState != raft.StateLeader {
		p.done(ErrNotLeader)
		return
	}
	h.nextProp++
	id := h.nextProp
	cmd := &pb.Command{Proposal: id, Object: p.object, Ops: make([]*pb.KVOp, len(p.ops)),
		Absent: p.guards.Absent, Present: p.guards.Present}
	for i, op := range p.ops {
		cmd.Ops[i] = &pb.KVOp{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		p.done(fmt.Errorf("shard: encode proposal: %w", err))
		return
	}
	if err := g.rn.Propose(data); err != nil {
		p.done(ErrNotLeader) // dropped: leader transfer in progress, or leadership lost
		return
	}
	g.pending[id] = p.done
}

// round handles every group's Ready: persist entries and hard states of all
// shards in one synced batch, send all messages (batched per peer), apply
// committed entries in one batch, then tell proposers and advance.
func (h *Host) round() error {
	type ready struct {
		g  *group
		rd raft.Ready
	}
	var rds []ready
	for _, g := range h.groups {
		if g.rn.HasReady() {
			rds = append(rds, ready{g, g.rn.Ready()})
		}
	}
	if len(rds) == 0 {
		return nil
	}

	wb := h.cfg.Store.NewBatch()
	sync := false
	for _, r := range rds {
		if snap := r.rd.Snapshot; !raft.IsEmptySnap(snap) {
			var data pb.ShardSnapshot
			if err := proto.Unmarshal(snap.GetData(), &data); err != nil {
				return fmt.Errorf("shard %d: decode snapshot: %w", r.g.shard, err)
			}
			pairs := make([]storage.KV, len(data.Pairs))
			for i, kv := range data.Pairs {
				pairs[i] = storage.KV{Key: kv.Key, Value: kv.Value}
			}
			if err := wb.InstallSnapshot(r.g.shard, snap.GetMetadata(), pairs); err != nil {
				return fmt.Errorf("shard %d: install snapshot: %w", r.g.shard, err)
			}
			sync = true
		}
		last, _ := r.g.ms.LastIndex()
		if err := wb.Append(r.g.shard, r.rd.Entries, last); err != nil {
			return err
		}
		if !raft.IsEmptyHardState(r.rd.HardState) {
			if err := wb.SetHardState(r.g.shard, r.rd.HardState); err != nil {
				return err
			}
		}
		sync = sync || r.rd.MustSync
	}
	if !wb.Empty() {
		if err := wb.Commit(sync); err != nil {
			return err
		}
	}
	for _, r := range rds {
		g := r.g
		if snap := r.rd.Snapshot; !raft.IsEmptySnap(snap) {
			meta := snap.GetMetadata()
			if err := g.ms.ApplySnapshot(&raftpb.Snapshot{Metadata: meta}); err != nil {
				return fmt.Errorf("shard %d: apply snapshot: %w", g.shard, err)
			}
			g.applied, g.snapIndex, g.confState = meta.GetIndex(), meta.GetIndex(), meta.GetConfState()
			h.log.Info("installed snapshot", "shard", g.shard, "index", meta.GetIndex())
		}
		if err := g.ms.Append(r.rd.Entries); err != nil {
			return fmt.Errorf("shard %d: append: %w", g.shard, err)
		}
		if !raft.IsEmptyHardState(r.rd.HardState) {
			g.ms.SetHardState(r.rd.HardState)
			g.term = r.rd.HardState.GetTerm()
		}
	}

	out := map[uint64][]*pb.RaftEnvelope{}
	var snaps []snapReport
	for _, r := range rds {
		for _, m := range r.rd.Messages {
			if m.GetType() == raftpb.MsgSnap {
				if err := h.fillSnapshot(r.g, m); err != nil {
					h.log.Error("build snapshot", "shard", r.g.shard, "err", err)
					r.g.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
					continue
				}
				snaps = append(snaps, snapReport{shard: r.g.shard, to: m.GetTo()})
			}
			b, err := proto.Marshal(m)
			if err != nil {
				return fmt.Errorf("encode raft message: %w", err)
			}
			out[m.GetTo()] = append(out[m.GetTo()], &pb.RaftEnvelope{Shard: uint32(r.g.shard), Message: b})
		}
	}
	for to, envs := range out {
		id, ok := h.ids[to]
		if !ok || h.cfg.Drop != nil && h.cfg.Drop(id) {
			continue
		}
		h.tr.send(id, envs, snaps)
	}

	ab := h.cfg.Store.NewApplyBatch()
	type doneCall struct {
		f   func(error)
		err error
	}
	var dones []doneCall
	var started []*group
	for _, r := range rds {
		g := r.g
		for _, e := range r.rd.CommittedEntries {
			if e.GetIndex() <= g.applied {
				continue
			}
			switch e.GetType() {
			case raftpb.EntryNormal:
				if len(e.GetData()) > 0 {
					cmd, ops, err := DecodeCommand(g.shard, e.GetData())
					if err != nil {
						return fmt.Errorf("shard %d: entry %d: %w", g.shard, e.GetIndex(), err)
					}
					ok, err := guardsHold(ab, cmd)
					if err != nil {
						return fmt.Errorf("shard %d: entry %d: %w", g.shard, e.GetIndex(), err)
					}
					result := error(nil)
					if ok {
						if err := ab.ApplyOps(cmd.Object, ops); err != nil {
							return fmt.Errorf("shard %d: entry %d: %w", g.shard, e.GetIndex(), err)
						}
					} else {
						result = ErrConflict
						h.log.Warn("refused a stale write", "shard", g.shard, "object", cmd.Object, "index", e.GetIndex())
					}
					// Proposal ids are this node's own counter; an entry
					// of another node's term cannot be ours.
					if f, ok := g.pending[cmd.Proposal]; ok && g.leader && e.GetTerm() == g.term {
						delete(g.pending, cmd.Proposal)
						dones = append(dones, doneCall{f, result})
					}
				}
			case raftpb.EntryConfChange:
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					return fmt.Errorf("shard %d: conf change %d: %w", g.shard, e.GetIndex(), err)
				}
				g.confState = g.rn.ApplyConfChange(&cc)
			}
			g.applied = e.GetIndex()
			// The first entry of a leader's own term is applied: everything
			// committed before it is in the store, so its objects may load.
			if g.leader && !g.serving && e.GetTerm() == g.term {
				g.serving = true
				started = append(started, g)
			}
		}
		if len(r.rd.CommittedEntries) > 0 {
			if err := ab.SetApplied(g.shard, g.applied); err != nil {
				return err
			}
		}
	}
	if !ab.Empty() {
		// No sync: the log is synced, and a crash re-applies from the
		// persisted applied index (writes are idempotent puts).
		if err := ab.Commit(false); err != nil {
			return err
		}
	}
	for _, d := range dones {
		d.f(d.err)
	}
	for _, g := range started {
		h.publish(g)
	}

	for _, r := range rds {
		g := r.g
		if ss := r.rd.SoftState; ss != nil {
			g.lead = ss.Lead
			wasLeader := g.leader
			g.leader = ss.RaftState == raft.StateLeader
			if wasLeader && !g.leader {
				h.failPending(g, ErrNotLeader)
			}
			if !g.leader && g.serving {
				g.serving = false
			}
			h.publish(g)
		}
		g.rn.Advance(r.rd)
		if err := h.maybeCompact(g); err != nil {
			return err
		}
	}
	return nil
}

// DecodeCommand decodes and checks a log entry's command for a shard. A
// command that does not decode, names an invalid object, belongs to another
// shard or holds an op without a key is an error: applying it would corrupt
// the shard, so the replica stops instead.
func DecodeCommand(shard int, data []byte) (*pb.Command, []storage.Op, error) {
	cmd := &pb.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, nil, fmt.Errorf("decode command: %w", err)
	}
	if name, err := limits.Room(cmd.Object); err != nil || name != cmd.Object {
		return nil, nil, fmt.Errorf("command for invalid object %q", cmd.Object)
	}
	if cluster.Shard(cmd.Object) != shard {
		return nil, nil, fmt.Errorf("object %q does not belong to shard %d", cmd.Object, shard)
	}
	ops := make([]storage.Op, len(cmd.Ops))
	for i, op := range cmd.Ops {
		if len(op.Key) == 0 {
			return nil, nil, fmt.Errorf("command for %q: op %d has no key", cmd.Object, i)
		}
		ops[i] = storage.Op{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return cmd, ops, nil
}

// guardsHold checks a command's conditions against the store as applied
// so far, including earlier entries of this batch.
func guardsHold(ab *storage.Batch, cmd *pb.Command) (bool, error) {
	for _, k := range cmd.Absent {
		has, err := ab.Has(cmd.Object, k)
		if err != nil || has {
			return false, err
		}
	}
	for _, k := range cmd.Present {
		has, err := ab.Has(cmd.Object, k)
		if err != nil || !has {
			return false, err
		}
	}
	return true, nil
}

// publish makes a group's leadership visible to other goroutines and tells
// the node when it starts or stops serving.
func (h *Host) publish(g *group) {
	next := &leadership{serving: g.serving, leader: h.ids[g.lead]}
	prev := h.status[g.shard].Swap(next)
	if prev.serving != next.serving || prev.leader != next.leader {
		h.cfg.OnLeadership(g.shard, next.serving, next.leader)
	}
}

func (h *Host) failPending(g *group, err error) {
	for id, f := range g.pending {
		delete(g.pending, id)
		f(err)
	}
}

// fillSnapshot puts the shard's data into an outgoing snapshot. The data is
// read at the current applied index, which may be past the index Raft chose;
// the metadata is moved up to match, and the follower continues from there.
func (h *Host) fillSnapshot(g *group, m *raftpb.Message) error {
	pairs, applied, err := h.cfg.Store.ShardData(g.shard)
	if err != nil {
		return err
	}
	term, err := g.ms.Term(applied)
	if err != nil {
		return fmt.Errorf("term of applied index %d: %w", applied, err)
	}
	data := &pb.ShardSnapshot{Pairs: make([]*pb.KVOp, len(pairs))}
	for i, kv := range pairs {
		data.Pairs[i] = &pb.KVOp{Key: kv.Key, Value: kv.Value}
	}
	b, err := proto.Marshal(data)
	if err != nil {
		return err
	}
	m.Snapshot = &raftpb.Snapshot{Data: b, Metadata: &raftpb.SnapshotMetadata{
		Index: new(applied), Term: new(term), ConfState: g.confState}}
	return nil
}

// maybeCompact snapshots a shard's applied state and truncates its log so
// the log stays bounded. The snapshot holds no data: the data is already in
// the store, and is read from there when a follower needs it.
func (h *Host) maybeCompact(g *group) error {
	if g.applied < g.snapIndex+h.cfg.SnapshotEvery+h.cfg.KeepEntries {
		return nil
	}
	at := g.applied - h.cfg.KeepEntries
	snap, err := g.ms.CreateSnapshot(at, g.confState, nil)
	if err != nil {
		return fmt.Errorf("shard %d: snapshot at %d: %w", g.shard, at, err)
	}
	if err := g.ms.Compact(at); err != nil {
		return fmt.Errorf("shard %d: compact to %d: %w", g.shard, at, err)
	}
	b := h.cfg.Store.NewBatch()
	if err := b.Compact(g.shard, snap.GetMetadata(), at+1); err != nil {
		return err
	}
	if err := b.Commit(false); err != nil {
		return err
	}
	g.snapIndex = at
	return nil
}

// leaderDown reacts to a peer that gossip or the transport says is dead:
// followers of the shards it led forget it, so they grant pre-votes at once
// instead of waiting out the election timeout, and the first live replica
// in ring order campaigns.
func (h *Host) leaderDown(nodeID string) {
	dead := RaftID(nodeID)
	p := h.cfg.Members.Placement()
	for _, g := range h.groups {
		if g.lead != dead || g.leader {
			continue
		}
		if err := g.rn.ForgetLeader(); err != nil {
			continue
		}
		for _, id := range g.replicas {
			if id == nodeID || (id != h.cfg.NodeID && !p.Alive(id)) {
				continue
			}
			if id == h.cfg.NodeID {
				g.rn.Campaign()
				g.recampaign = 2
			}
			break
		}
	}
}

// transferLag is how far behind the preferred replica may be when the
// leader starts handing leadership to it.
const transferLag = 64

// preferLeaders hands leadership to each shard's preferred replica (the
// ring's first) when it is alive and caught up, so load follows the ring.
func (h *Host) preferLeaders() {
	p := h.cfg.Members.Placement()
	for _, g := range h.groups {
		if !g.leader || len(g.replicas) == 0 || g.replicas[0] == h.cfg.NodeID {
			continue
		}
		pref := g.replicas[0]
		if !p.Alive(pref) {
			continue
		}
		st := g.rn.Status()
		if st.LeadTransferee != 0 {
			continue
		}
		// Under steady load the follower is never exactly at the last
		// index; Raft finishes catching it up before handing over.
		last, _ := g.ms.LastIndex()
		if pr, ok := st.Progress[RaftID(pref)]; ok && pr.State == tracker.StateReplicate && pr.Match+transferLag >= last {
			g.rn.TransferLeader(RaftID(pref))
		}
	}
}
