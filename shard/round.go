package shard

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	pb "hellochat/proto/roompb"
)

// step hands a peer's batch of messages to the groups they are for.
func (h *Host) step(b *pb.RaftBatch) {
	if h.dropped(b.FromNode) {
		return
	}
	for _, rm := range b.Removals {
		g := h.groups[int(rm.Shard)]
		if g == nil {
			continue
		}
		if why := h.removalRefused(g, rm, b.FromNode); why != "" {
			h.refusedMsgs.Add(1)
			h.log.Warn("ignoring a removal notice", "shard", rm.Shard, "from", b.FromNode, "why", why)
			continue
		}
		if err := h.destroyGroup(g, b.FromNode+" says its group removed it"); err != nil {
			h.log.Error("delete removed replica", "shard", rm.Shard, "err", err)
		}
	}
	for _, env := range b.Messages {
		m := &raftpb.Message{}
		if err := proto.Unmarshal(env.Message, m); err != nil {
			h.log.Warn("dropping undecodable raft message", "from", b.FromNode, "err", err)
			continue
		}
		h.stepOne(int(env.Shard), env, m, b.FromNode)
	}
}

func (h *Host) stepOne(shard int, env *pb.RaftEnvelope, m *raftpb.Message, from string) {
	if shard < 0 || shard >= len(h.status) {
		return
	}
	// A message for another incarnation of this node (its disk was wiped
	// since) is not ours: the new replica must not answer for the old.
	if env.ToIncarnation != "" && env.ToIncarnation != h.cfg.Replica {
		return
	}
	// Shard data only arrives through the snapshot stream, fully on disk.
	if m.GetType() == raftpb.MsgSnap {
		return
	}
	fromLeader := m.GetType() == raftpb.MsgApp || m.GetType() == raftpb.MsgHeartbeat
	g := h.groups[shard]
	if g == nil {
		if !fromLeader {
			return
		}
		if why := h.mayCreate(shard, m.GetTo(), env.ToIncarnation); why != "" {
			h.log.Debug("not starting a replica a leader writes to", "shard", shard, "from", from,
				"replica", fmt.Sprintf("%x", m.GetTo()), "why", why)
			return
		}
		var err error
		if g, err = h.addGroup(shard, m.GetTo()); err != nil {
			h.log.Error("start new replica", "shard", shard, "err", err)
			return
		}
	}
	if m.GetTo() == 0 && m.GetType() == raftpb.MsgHeartbeatResp {
		h.answerProbe(g, m.GetFrom(), from)
		return
	}
	if m.GetTo() != g.id {
		// A leader writing to a newer replica of this incarnation than
		// the one held here added this node again: its configuration no
		// longer has the replica held here (a leader adds one only to a
		// node with none), so that one was removed without learning it,
		// and it must give way or the new one never starts. A message for
		// an older id is for a replica that no longer exists.
		if !fromLeader || !newerReplica(m.GetTo(), g.id) || h.mayCreate(shard, m.GetTo(), env.ToIncarnation) != "" {
			return
		}
		if err := h.destroyGroup(g, fmt.Sprintf("a leader added this node again, as replica %x", m.GetTo())); err != nil {
			h.log.Error("replace a removed replica", "shard", shard, "err", err)
			return
		}
		var err error
		if g, err = h.addGroup(shard, m.GetTo()); err != nil {
			h.log.Error("start new replica", "shard", shard, "err", err)
			return
		}
	}
	// The stream's sender is authenticated (see Server); a message must
	// come from one of that node's own replicas.
	if err := h.heardFrom(g, m.GetFrom(), from); err != nil {
		h.refusedMsgs.Add(1)
		h.log.Debug("dropping raft message from a replica not of its sender", "shard", shard, "from", from, "err", err)
		return
	}
	// A replica that holds no state yet (a leader added it and has not
	// sent its snapshot) votes for no one: with an empty log it would count
	// any candidate up to date, and help a stale one win.
	if g.applied == 0 && (m.GetType() == raftpb.MsgVote || m.GetType() == raftpb.MsgPreVote) {
		return
	}
	// A leader that believes this replica holds more than it does (a log
	// lost, or a replica it has not caught up yet) commits past our last
	// index. Raft would panic on that; dropping it would leave the leader
	// unanswered and the catch-up wedged. Committing only what we have and
	// answering makes the leader probe, and our rejection of the probe
	// sends it back to where we are, or to a snapshot.
	if m.GetType() == raftpb.MsgHeartbeat {
		if last, err := g.ms.LastIndex(); err == nil && m.GetCommit() > last {
			m.Commit = &last
		}
	}
	if err := plausible(g, m); err != nil {
		h.refusedMsgs.Add(1)
		h.log.Warn("dropping an implausible raft message", "shard", shard, "from", from, "err", err)
		return
	}
	if fromLeader {
		g.silent = 0
	}
	// A replica that hears from one its group removed (by a committed
	// change) tells it so: a removed replica rarely learns it from Raft
	// itself, as the leader stops writing to it.
	if slices.Contains(g.removedIDs, m.GetFrom()) && !g.member(m.GetFrom()) {
		h.notices[from] = append(h.notices[from], &pb.Removal{Shard: uint32(shard), Replica: m.GetFrom(), Term: g.term})
	}
	if err := g.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		h.log.Debug("raft step", "shard", shard, "err", err)
	}
}

// answerProbe answers a silent replica's probe (probeLeader) with a
// removal notice when this replica leads and knows for certain that its
// group removed the prober.
func (h *Host) answerProbe(g *group, id uint64, from string) {
	if g.leader && g.removedForCertain(id) {
		h.notices[from] = append(h.notices[from], &pb.Removal{Shard: uint32(g.shard), Replica: id, Term: g.term})
	}
}

// removalRefused says why a peer's notice that this replica was removed
// from its group cannot be taken, or "" when it can. Deleting a replica
// throws away a log it may have acknowledged, so the notice must name this
// very replica, come from a node that is a member of the group as this
// replica knows it or that gossip says leads the shard (answerProbe), and
// be consistent with what the replica sees: it does
// not lead, and no leader has written to it for an election timeout (a
// group's leader stops writing to a replica it removed).
func (h *Host) removalRefused(g *group, rm *pb.Removal, from string) string {
	switch {
	case rm.Replica != g.id:
		return "names another replica"
	case rm.Term < g.term:
		return "from an older term"
	case g.leader:
		return "this replica leads its group"
	case g.silent < h.cfg.ElectionTicks:
		return "a leader wrote to this replica within an election timeout"
	case !h.memberNode(g, from) && !h.gossipLeads(g.shard, from):
		return "the sender is neither a member of the group nor its leader by gossip"
	}
	return ""
}

// memberNode reports whether one of node's replicas is a voter or learner
// of g's applied configuration.
func (h *Host) memberNode(g *group, node string) bool {
	for _, id := range slices.Concat(g.confState.GetVoters(), g.confState.GetLearners()) {
		if h.nodeOf(g, id) == node {
			return true
		}
	}
	return false
}

// gossipLeads reports whether gossip says node leads shard: a replica
// whose configuration's other members have all left can hear of its
// removal from no one else.
func (h *Host) gossipLeads(shard int, node string) bool {
	for _, m := range h.cfg.Members.Placement().Leaders(shard) {
		if m.ID == node {
			return true
		}
	}
	return false
}

func (h *Host) propose(p *proposal) {
	g := h.groups[p.shard]
	h.cfg.Metrics.Proposals.Inc()
	// g.serving is refreshed at the end of a round; Raft may have stepped
	// down since, while handling a message earlier in this one.
	if g == nil || !g.serving || g.rn.BasicStatus().RaftState != raft.StateLeader {
		h.cfg.Metrics.ProposalsFailed.Inc()
		p.done(ErrNotLeader)
		return
	}
	h.nextProp++
	id := h.nextProp
	cmd := &pb.Command{Proposal: id, Object: p.object, Ops: make([]*pb.KVOp, len(p.ops)),
		Absent: p.guards.Absent, Present: p.guards.Present,
		Versioned: p.guards.Versioned, Version: p.guards.Version, NextVersion: p.guards.Next}
	for i, op := range p.ops {
		cmd.Ops[i] = &pb.KVOp{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		h.cfg.Metrics.ProposalsFailed.Inc()
		p.done(fmt.Errorf("shard: encode proposal: %w", err))
		return
	}
	if err := g.rn.Propose(data); err != nil {
		h.cfg.Metrics.ProposalsFailed.Inc()
		p.done(ErrNotLeader) // dropped: leader transfer in progress, or leadership lost
		return
	}
	g.pending[id] = pendingProposal{p.done, time.Now()}
}

type ready struct {
	g  *group
	rd raft.Ready
}

// round handles every group's Ready: persist entries and hard states of all
// shards in one synced batch, send all messages (batched per peer), apply
// committed entries in one batch, then tell proposers and advance.
func (h *Host) round() error {
	var rds []ready
	for _, g := range h.groups {
		if g.rn.HasReady() {
			rds = append(rds, ready{g, g.rn.Ready()})
		}
	}
	if len(rds) == 0 {
		h.sendNotices()
		return nil
	}
	// A leader's appends and heartbeats go out before the round's fsync,
	// so the leader writes its log while its followers write theirs (Raft
	// thesis 10.2.1): a commit waits for one fsync, not two in a row. Raft
	// counts the leader's own copy only at Advance, after persist, so no
	// entry commits on an unwritten leader log. Everything else (votes,
	// responses) acknowledges state and waits until that state is durable.
	if err := h.send(rds, true); err != nil {
		return err
	}
	if err := h.persist(rds); err != nil {
		return err
	}
	if err := h.send(rds, false); err != nil {
		return err
	}
	if err := h.apply(rds); err != nil {
		return err
	}
	for _, r := range rds {
		g := r.g
		if ss := r.rd.SoftState; ss != nil {
			// A change is a new leader after a known one: not the first
			// leader a replica learns of, nor an election the old one won.
			if ss.Lead != 0 {
				if g.knownLead != 0 && ss.Lead != g.knownLead {
					h.cfg.Metrics.LeaderChanges.Inc()
				}
				g.knownLead = ss.Lead
			}
			g.lead = ss.Lead
			if g.lead != 0 && g.lead != g.id {
				g.transferee = 0
			}
			wasLeader := g.leader
			g.leader = ss.RaftState == raft.StateLeader
			if wasLeader && !g.leader {
				h.failPending(g, ErrNotLeader)
				h.failReads(g, ErrNotLeader)
			}
			if !g.leader && g.serving {
				g.serving = false
			}
			h.publish(g)
		}
		h.takeReadStates(r)
		g.rn.Advance(r.rd)
		for index, f := range g.snapFiles {
			if index <= g.applied {
				h.cfg.Store.RemoveSnapshotFile(f) // refused as stale, or ingested
				delete(g.snapFiles, index)
			}
		}
		if g.removed {
			if err := h.destroyGroup(g, "applied its own removal"); err != nil {
				return err
			}
			continue
		}
		if err := h.maybeCompact(g); err != nil {
			return err
		}
	}
	return nil
}

// persist makes each group's snapshot, entries and hard state durable.
// Snapshots are installed first, each with its hard state; everything else
// goes in one synced batch.
func (h *Host) persist(rds []ready) error {
	wb := h.cfg.Store.NewBatch()
	sync := false
	for _, r := range rds {
		hs := r.rd.HardState
		if snap := r.rd.Snapshot; !raft.IsEmptySnap(snap) {
			meta := snap.GetMetadata()
			file, ok := r.g.snapFiles[meta.GetIndex()]
			if !ok {
				return fmt.Errorf("shard %d: snapshot at %d has no data on disk", r.g.shard, meta.GetIndex())
			}
			if raft.IsEmptyHardState(hs) {
				hs = nil
			}
			id, err := h.snapshotIdentity(r.g, snap.GetData())
			if err != nil {
				return err
			}
			if err := h.cfg.Store.InstallSnapshot(r.g.shard, meta, hs, id, file); err != nil {
				return err
			}
			delete(r.g.snapFiles, meta.GetIndex())
			hs = nil
		}
		last, _ := r.g.ms.LastIndex()
		if err := wb.Append(r.g.shard, r.rd.Entries, last); err != nil {
			return err
		}
		if hs != nil && !raft.IsEmptyHardState(hs) {
			if err := wb.SetHardState(r.g.shard, hs); err != nil {
				return err
			}
		}
		sync = sync || r.rd.MustSync
	}
	if !wb.Empty() {
		start := time.Now()
		if err := wb.Commit(sync); err != nil {
			return err
		}
		if sync {
			h.cfg.Metrics.SyncSeconds.Observe(time.Since(start).Seconds())
		}
	}
	for _, r := range rds {
		g := r.g
		if snap := r.rd.Snapshot; !raft.IsEmptySnap(snap) {
			meta := snap.GetMetadata()
			if err := g.ms.ApplySnapshot(snap); err != nil {
				return fmt.Errorf("shard %d: apply snapshot: %w", g.shard, err)
			}
			g.applied, g.snapIndex, g.confState = meta.GetIndex(), meta.GetIndex(), meta.GetConfState()
			g.versions.clear() // the shard's data was replaced
			if err := h.takeReplicaSet(g, snap.GetData()); err != nil {
				return err
			}
			h.fillLegacy(g)
			h.markConf(g)
			h.showLog(g)
			h.log.Info("installed snapshot", "shard", g.shard, "index", meta.GetIndex())
			h.publish(g) // its applied index and configuration jumped
		}
		if err := g.ms.Append(r.rd.Entries); err != nil {
			return fmt.Errorf("shard %d: append: %w", g.shard, err)
		}
		if !raft.IsEmptyHardState(r.rd.HardState) {
			g.ms.SetHardState(r.rd.HardState)
			g.term, g.vote = r.rd.HardState.GetTerm(), r.rd.HardState.GetVote()
		}
	}
	return nil
}

// send batches the round's messages per peer: with early set, only those
// that may leave before the round's writes are durable (sendsEarly), and
// otherwise the rest. Snapshots go their own way (snapshot.go).
func (h *Host) send(rds []ready, early bool) error {
	out := map[string][]*pb.RaftEnvelope{}
	for _, r := range rds {
		for _, m := range r.rd.Messages {
			if sendsEarly(r, m) != early {
				continue
			}
			if m.GetType() == raftpb.MsgSnap {
				h.snaps.start(r.g, m)
				continue
			}
			node, inc, ok := h.route(r.g, m.GetTo())
			if !ok {
				continue
			}
			b, err := proto.Marshal(m)
			if err != nil {
				return fmt.Errorf("encode raft message: %w", err)
			}
			out[node] = append(out[node], &pb.RaftEnvelope{Shard: uint32(r.g.shard), Message: b, ToIncarnation: inc})
		}
	}
	for node, envs := range out {
		if h.dropped(node) {
			continue
		}
		h.tr.send(node, envs, h.notices[node])
		delete(h.notices, node)
	}
	h.sendNotices()
	return nil
}

// route is the node to send g's message for replica id to, and the
// incarnation it is meant for ("" when unknown); ok is false when the
// replica is unknown, or gone with a wiped incarnation of its node.
func (h *Host) route(g *group, id uint64) (node, incarnation string, ok bool) {
	if d, known := g.reps[id]; known {
		if !h.current(g, id) {
			return "", "", false
		}
		return d.node, d.incarnation, true
	}
	if n, heard := g.heard[id]; heard {
		return n, "", true
	}
	if n, cur := h.ids[id]; cur {
		return n, "", true // a node-incarnation id: of the node's current one
	}
	return "", "", false
}

// sendsEarly reports whether a message may be sent before its round's
// writes are durable: a leader's append or heartbeat, in a round that
// changes neither the replica's term nor its vote (those must be on disk
// before anyone hears of them).
func sendsEarly(r ready, m *raftpb.Message) bool {
	if m.GetType() != raftpb.MsgApp && m.GetType() != raftpb.MsgHeartbeat {
		return false
	}
	hs := r.rd.HardState
	return raft.IsEmptyHardState(hs) || (hs.GetTerm() == r.g.term && hs.GetVote() == r.g.vote)
}

// sendNotices sends removal notices that no message carried this round.
func (h *Host) sendNotices() {
	for id, rms := range h.notices {
		if !h.dropped(id) {
			h.tr.send(id, nil, rms)
		}
		delete(h.notices, id)
	}
}

func (h *Host) failPending(g *group, err error) {
	h.cfg.Metrics.ProposalsFailed.Add(float64(len(g.pending)))
	for id, p := range g.pending {
		delete(g.pending, id)
		p.done(err)
	}
}

// maybeCompact snapshots a shard's applied state and truncates its log so
// the log stays bounded. The snapshot holds no data: the data is already in
// the store, and is read from there when a follower needs it.
//
// The log is truncated as soon as no replica needs it (compactPoint), not
// at a fixed length: entries deleted while still in Pebble's memtable are
// never flushed or compacted, and a node's 64 logs kept at a fixed length
// were most of what its disk rewrote.
func (h *Host) maybeCompact(g *group) error {
	// The cheapest bound first: nothing to do until even the shortest
	// trail leaves SnapshotEvery entries to drop.
	if g.applied < g.snapIndex+h.cfg.SnapshotEvery+h.trail() {
		return nil
	}
	at := h.compactPoint(g)
	if at < g.snapIndex+h.cfg.SnapshotEvery {
		return nil
	}
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
	h.showLog(g)
	return nil
}

// trail is how many applied entries a replica keeps when no follower is
// known to need more: enough for a follower's last few appends in flight.
func (h *Host) trail() uint64 { return min(h.cfg.TrailEntries, h.cfg.KeepEntries) }

// compactPoint is the index up to which a replica may truncate its log.
// A follower keeps only the trail behind what it applied: its log serves
// others only once it leads, and then a replica that kept up with the old
// leader already holds all but the trail of it. A leader also keeps what each
// follower still lacks (its match), so a follower that paused or
// restarted catches up from the log; but never more than KeepEntries
// behind what it applied, past which a follower gets a snapshot instead.
func (h *Host) compactPoint(g *group) uint64 {
	upto := g.applied
	if g.leader {
		g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id != g.id {
				upto = min(upto, pr.Match)
			}
		})
	}
	var at, floor uint64
	if upto > h.trail() {
		at = upto - h.trail()
	}
	if g.applied > h.cfg.KeepEntries {
		floor = g.applied - h.cfg.KeepEntries
	}
	return max(at, floor)
}
