package shard

import (
	"fmt"
	"math"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

// group is one shard's Raft replica on this node.
// pendingProposal is a proposal of this node's, waiting to commit.
type pendingProposal struct {
	done func(error)
	at   time.Time // proposed
}

type group struct {
	shard int
	// id is this node's replica id in the group (see replicas.go).
	id        uint64
	rn        *raft.RawNode
	ms        *raft.MemoryStorage
	confState *raftpb.ConfState // as of applied
	applied   uint64
	snapIndex uint64
	term      uint64 // durable, as is vote
	vote      uint64
	lead      uint64
	leader    bool
	serving   bool
	// transferee is the replica this node last handed leadership to, until
	// a leader is known again.
	transferee uint64
	// recampaign counts down ticks to a second campaign after a leader
	// died: the first can lose to a follower that has not yet forgotten it.
	recampaign int
	pending    map[uint64]pendingProposal // by proposal id
	knownLead  uint64                     // the last leader known (lead may be 0 meanwhile), for metrics
	// confBusy counts down the ticks a proposed configuration change may
	// take to apply; the placement pass proposes no other change meanwhile.
	confBusy int
	// silent counts ticks since a leader last wrote to this replica, so a
	// replica nobody leads any more (it was removed) can be dropped.
	silent int
	// removed is set when the group applied this replica's own removal; the
	// round that applied it then deletes the replica.
	removed bool
	// removedIDs are replicas this group removed (by applied, so committed,
	// changes): one that still writes to this replica is told so.
	removedIDs []uint64
	// snapFiles are received snapshots on disk, by index, until Raft
	// installs or refuses them.
	snapFiles map[uint64]string
	// versions caches objects' recorded versions as applied, so checking a
	// versioned write reads nothing from disk (see guardsHold).
	versions versionCache
	// reps is the group's replica table as of applied, and nextID the id
	// its next added replica gets (replicated state, see replicas.go).
	reps   map[uint64]replicaDesc
	nextID uint64
	// heard maps replicas the table lacks to the authenticated node that
	// spoke for them, so this replica can answer a leader it does not know
	// yet (a new replica, before its snapshot).
	heard map[uint64]string
	// confMark is when this replica last applied a change to the group's
	// configuration (or installed one with a snapshot): a leader hands over
	// only once the transferee has surely applied it too (handOverReady).
	confMark confMark
	// reads are reads waiting for Raft to confirm this replica leads
	// (readindex.go), by request id.
	reads map[uint64]*pendingRead
}

// member reports whether id is a voter or learner of the applied config.
func (g *group) member(id uint64) bool {
	return slices.Contains(g.confState.GetVoters(), id) || slices.Contains(g.confState.GetLearners(), id)
}

// openGroup loads a shard replica from the store. When it has none, it
// bootstraps one with voters as the initial configuration (every replica of
// a new shard starts from the same state: index 1, term 1, so no replica
// needs to propose the membership); with no voters it returns nil, unless
// empty is set: then it starts an empty replica, which a leader that added
// this node fills with a snapshot.
func (h *Host) openGroup(shard int, voters []cluster.Meta) (*group, error) {
	self, set, err := h.cfg.Store.ReplicaIdentity(shard)
	if err != nil {
		return nil, err
	}
	if self != 0 && h.tombstoned(shard, self) {
		// A crash came between the tombstone and the deletion.
		h.log.Info("deleting a replica this node gave up", "shard", shard)
		return nil, h.cfg.Store.DeleteShard(shard)
	}
	if self == 0 {
		self = h.raftID // from before replica ids, or bootstrapped here
	}
	return h.loadGroup(shard, self, set, voters, false)
}

func (h *Host) loadGroup(shard int, self uint64, set []byte, founders []cluster.Meta, empty bool) (*group, error) {
	st, found, err := h.cfg.Store.LoadRaft(shard)
	if err != nil {
		return nil, err
	}
	if !found && len(founders) == 0 && !empty {
		return nil, nil
	}
	voters := make([]uint64, len(founders))
	for i, m := range founders {
		voters[i] = m.RaftID()
	}
	ms := raft.NewMemoryStorage()
	if !found && len(voters) > 0 {
		st.Snap = &raftpb.SnapshotMetadata{Index: new(uint64(1)), Term: new(uint64(1)),
			ConfState: &raftpb.ConfState{Voters: voters}}
		st.Hard = &raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(1))}
		st.Applied = 1
		st.Conf = st.Snap.ConfState
		b := h.cfg.Store.NewBatch()
		if err := b.Compact(shard, st.Snap, 0); err != nil {
			return nil, err
		}
		if err := b.SetHardState(shard, st.Hard); err != nil {
			return nil, err
		}
		if err := b.SetConfState(shard, st.Conf); err != nil {
			return nil, err
		}
		if err := b.SetApplied(shard, 1); err != nil {
			return nil, err
		}
		founding := &group{id: self, reps: map[uint64]replicaDesc{}, nextID: 1}
		for _, m := range founders {
			founding.reps[m.RaftID()] = replicaDesc{node: m.ID, incarnation: m.Replica}
		}
		set = founding.encodeReplicaSet()
		if err := b.SetReplicaSet(shard, set); err != nil {
			return nil, err
		}
		if err := b.SetReplicaID(shard, self); err != nil {
			return nil, err
		}
		if err := b.Commit(true); err != nil {
			return nil, err
		}
	}
	g := &group{shard: shard, id: self, ms: ms, pending: map[uint64]pendingProposal{}, snapFiles: map[uint64]string{},
		confState: &raftpb.ConfState{}}
	if g.reps, g.nextID, err = decodeReplicaSet(set); err != nil {
		return nil, fmt.Errorf("shard %d: %w", shard, err)
	}
	if st.Snap != nil {
		meta := st.Snap
		// Raft restores its configuration from the storage's snapshot. The
		// configuration changes applied after that snapshot are not
		// replayed (they are at or below the applied index), so the
		// snapshot handed to Raft carries the configuration as of applied.
		if st.Conf != nil {
			meta = &raftpb.SnapshotMetadata{Index: st.Snap.Index, Term: st.Snap.Term, ConfState: st.Conf}
		}
		if err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: meta}); err != nil {
			return nil, fmt.Errorf("shard %d: load snapshot: %w", shard, err)
		}
		g.snapIndex = meta.GetIndex()
		g.confState = meta.GetConfState()
	}
	if err := ms.SetHardState(st.Hard); err != nil {
		return nil, err
	}
	if err := ms.Append(st.Entries); err != nil {
		return nil, fmt.Errorf("shard %d: load log: %w", shard, err)
	}
	g.applied = max(st.Applied, g.snapIndex)
	g.removedIDs = st.Removed
	h.fillLegacy(g)
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              self,
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
	g.term, g.vote = st.Hard.GetTerm(), st.Hard.GetVote()
	return g, nil
}

// addGroup starts an empty replica of shard, with id, because a leader
// wrote to it: the leader added it to the group. Its id is durable before
// it answers anyone, so a restart does not take it for another replica.
func (h *Host) addGroup(shard int, id uint64) (*group, error) {
	b := h.cfg.Store.NewBatch()
	if err := b.SetReplicaID(shard, id); err != nil {
		return nil, err
	}
	if err := b.Commit(true); err != nil {
		return nil, err
	}
	g, err := h.loadGroup(shard, id, nil, nil, true)
	if err != nil {
		return nil, err
	}
	h.groups[shard] = g
	h.showLog(g)
	h.replicasChanged()
	h.log.Info("new replica: a leader added this node to the shard", "shard", shard, "replica", fmt.Sprintf("%x", id))
	return g, nil
}

// destroyGroup deletes a replica its group removed: its data, log and Raft
// state. The node keeps serving every other shard.
func (h *Host) destroyGroup(g *group, why string) error {
	h.failPending(g, ErrNotLeader)
	h.failReads(g, ErrNotLeader)
	if err := h.cfg.Store.AddTombstone(g.shard, g.id); err != nil {
		return err
	}
	for _, f := range g.snapFiles {
		h.cfg.Store.RemoveSnapshotFile(f)
	}
	if err := h.cfg.Store.DeleteShard(g.shard); err != nil {
		return err
	}
	delete(h.groups, g.shard)
	h.applied[g.shard].Store(0) // no replica here: nothing applied, no log
	h.compacted[g.shard].Store(0)
	h.replicasChanged()
	g.leader, g.serving, g.lead = false, false, 0
	g.confState = &raftpb.ConfState{}
	h.publish(g)
	h.log.Info("replica removed from its shard and deleted", "shard", g.shard, "why", why)
	return nil
}

func (h *Host) replicasChanged() {
	h.replicas.Store(int32(len(h.groups)))
	h.cfg.OnReplicas(len(h.groups))
}

// maxRemembered bounds the removed replicas a group remembers.
const maxRemembered = 16

// noteConfChange keeps removedIDs in step with an applied change; it
// reports whether they changed.
func (g *group) noteConfChange(t raftpb.ConfChangeType, id uint64) bool {
	i := slices.Index(g.removedIDs, id)
	switch {
	case t == raftpb.ConfChangeRemoveNode && i < 0:
		g.removedIDs = append(g.removedIDs, id)
		if len(g.removedIDs) > maxRemembered {
			g.removedIDs = g.removedIDs[1:]
		}
		return true
	case t != raftpb.ConfChangeRemoveNode && i >= 0:
		g.removedIDs = slices.Delete(g.removedIDs, i, i+1)
		return true
	}
	return false
}

// orphanTicks is how long a replica may go without hearing a leader before
// it does something about it. One that is no member of its own applied
// configuration (a leader added it and lost its term before the change
// committed, or it applied its removal's predecessor but never the
// removal's notice) is dropped: ids are never reused, so no group can
// count it again. A learner is not: its group may have promoted it
// without it (a promotion commits on the old voters' quorum), while it
// was cut off. A netlab nemesis run (seed 8) saw exactly that: a learner
// deaf for a few seconds dropped itself, the group counted it as a voter
// for good, and one more lost disk left the shard without a quorum.
// A silent learner asks instead: it probes the members it knows, and one
// that removed it answers with a removal notice (removalRefused checks
// it), while a leader that still counts it writes to it again.
const orphanTicks = 100

// collectOrphans drops replicas that are no member of their group, and
// has silent learners ask their group whether they still belong to it.
func (h *Host) collectOrphans() {
	for _, g := range h.groups {
		if g.silent < orphanTicks || g.leader {
			continue
		}
		if !g.member(g.id) {
			if err := h.destroyGroup(g, "not a member and no leader wrote to it for a while"); err != nil {
				h.log.Error("drop orphaned replica", "shard", g.shard, "err", err)
			}
			continue
		}
		if slices.Contains(g.confState.GetLearners(), g.id) {
			h.probeMembers(g)
		}
		h.probeLeader(g)
	}
}

// probeLeader probes the nodes gossip says lead g's shard, addressed to no
// replica (answerProbe): a replica its group removed while it was cut off,
// whose configuration's other members have all left since, hears of its
// removal from no one else, and stays for good (a voter of it campaigns
// forever; the nemesis saw a decommissioned node stay "leaving" so).
func (h *Host) probeLeader(g *group) {
	for _, m := range h.cfg.Members.Placement().Leaders(g.shard) {
		if m.ID == h.cfg.NodeID || h.hearsFrom(g, m.ID) || h.dropped(m.ID) {
			continue // it hears from g anyway (hearsFrom)
		}
		msg := &raftpb.Message{Type: raftpb.MsgHeartbeatResp.Enum(), From: &g.id, To: proto.Uint64(0), Term: proto.Uint64(g.term)}
		b, err := proto.Marshal(msg)
		if err != nil {
			continue
		}
		h.tr.send(m.ID, []*pb.RaftEnvelope{{Shard: uint32(g.shard), Message: b, ToIncarnation: m.Replica}}, nil)
	}
}

// hearsFrom reports whether node hears from g, silent, without
// probeLeader's probe: g's votes reach the voters of its configuration,
// and a learner's probeMembers every member. A learner of a voter's
// configuration hears nothing from it.
func (h *Host) hearsFrom(g *group, node string) bool {
	if slices.Contains(g.confState.GetLearners(), g.id) {
		return h.memberNode(g, node)
	}
	for _, id := range g.confState.GetVoters() {
		if id != g.id && h.nodeOf(g, id) == node {
			return true
		}
	}
	return false
}

// removedForCertain reports whether g's group removed replica id for
// good, as far as g's applied state proves it: the group's counter gave
// the id out (or the group remembers removing it), it is in no
// configuration g applied, and no configuration change waits unapplied in
// g's log (it could be the one adding it). Ids are never reused and a
// committed removal is never undone, so on a leader this holds for every
// change committed before its term; a change committed in a later term
// would have given the prober a later term, and a replica refuses a
// notice older than its term (removalRefused).
func (g *group) removedForCertain(id uint64) bool {
	switch {
	case id == 0 || g.member(id):
		return false
	case !slices.Contains(g.removedIDs, id) && (id >= maxCounterID || id >= g.nextID):
		return false
	}
	return !g.confUnapplied()
}

// confUnapplied reports whether g's log holds a configuration change past
// what it has applied (or cannot tell).
func (g *group) confUnapplied() bool {
	last, err := g.ms.LastIndex()
	if err != nil {
		return true
	}
	if last <= g.applied {
		return false
	}
	ents, err := g.ms.Entries(g.applied+1, last+1, math.MaxUint64)
	if err != nil {
		return true
	}
	return slices.ContainsFunc(ents, func(e *raftpb.Entry) bool {
		return e.GetType() == raftpb.EntryConfChange || e.GetType() == raftpb.EntryConfChangeV2
	})
}

// probeMembers sends each other member of g's configuration a heartbeat
// response from g: a member whose group removed g answers with a removal
// notice (see stepOne); a leader that counts g catches it up; anyone else
// ignores it. It carries g's term, never above the group's, so it cannot
// depose anyone.
func (h *Host) probeMembers(g *group) {
	for _, id := range slices.Concat(g.confState.GetVoters(), g.confState.GetLearners()) {
		if id == g.id {
			continue
		}
		node, inc, ok := h.route(g, id)
		if !ok || h.dropped(node) {
			continue
		}
		m := &raftpb.Message{Type: raftpb.MsgHeartbeatResp.Enum(), From: &g.id, To: proto.Uint64(id), Term: proto.Uint64(g.term)}
		b, err := proto.Marshal(m)
		if err != nil {
			continue
		}
		h.tr.send(node, []*pb.RaftEnvelope{{Shard: uint32(g.shard), Message: b, ToIncarnation: inc}}, nil)
	}
}

// founders is the ring's replica set of a shard when it includes this
// node (nil otherwise): the voters a new cluster's shard starts with.
func (h *Host) founders(p *cluster.Placement, shard int) []cluster.Meta {
	reps, err := p.Replicas(shard, h.cfg.Replicas)
	if err != nil {
		return nil
	}
	for _, r := range reps {
		if r.ID == h.cfg.NodeID {
			return reps
		}
	}
	return nil
}
