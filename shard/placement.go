package shard

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
)

// Moving replicas. The ring says where each shard should live; Raft owns
// where it does. Each leader, every placeTicks, takes each shard it serves
// one step toward the ring's replicas:
//
//  1. add a missing ring replica as a learner (it is sent a snapshot and
//     then the log, without counting toward any quorum);
//  2. promote a caught-up learner to voter;
//  3. remove a learner the ring does not want;
//  4. once every ring replica votes, remove a voter the ring does not want
//     (handing leadership away first when that is this node).
//
// One configuration change per shard at a time (Raft allows no more), and
// at most MaxMoves learners per leader, so moves proceed a few at a time
// and their snapshots share SnapshotRate.

// confTicks bounds how long a proposed change may take to apply before the
// pass proposes again (Raft drops a change proposed while one is pending).
const confTicks = 50

// catchUpLag is how close to the leader's last index a learner must be to
// be promoted: promoting a replica far behind would make the group wait
// for it.
const catchUpLag = 64

func (h *Host) place() {
	moving := 0
	for _, g := range h.groups {
		if g.leader && len(g.confState.GetLearners()) > 0 {
			moving++
		}
	}
	for _, g := range h.groups {
		if !g.serving || g.confBusy > 0 || g.removed {
			continue
		}
		ring := h.ringMetas(g.shard)
		if len(ring) == 0 {
			continue
		}
		st := g.rn.Status()
		if st.LeadTransferee != 0 {
			continue // Raft drops proposals while leadership moves
		}
		if moving < h.cfg.MaxMoves && h.addMissing(g, ring) {
			moving++
			continue
		}
		if id, cc := h.nextMove(g, st.Progress); id != 0 {
			h.changeConf(g, cc, id, nil)
		}
	}
}

// addMissing adds, as a learner with a new id, a ring replica of g's shard
// that is alive and holds no member of the group; it reports whether it
// proposed that.
func (h *Host) addMissing(g *group, ring []cluster.Meta) bool {
	p := h.cfg.Members.Placement()
	for _, m := range ring {
		if g.replicaOn(m) == 0 && p.Alive(m.ID) {
			id := g.newReplicaID()
			h.changeConf(g, raftpb.ConfChangeAddLearnerNode, id, replicaContext(id, m))
			return true
		}
	}
	return false
}

// nextMove is the next change toward the ring other than an addition
// (steps 2-4 above), or id 0 when there is none to make now.
func (h *Host) nextMove(g *group, progress map[uint64]tracker.Progress) (uint64, raftpb.ConfChangeType) {
	want := h.wanted(g)
	voters, learners := g.confState.GetVoters(), g.confState.GetLearners()
	last, _ := g.ms.LastIndex()
	// 2. A caught-up learner the ring wants.
	for _, id := range learners {
		pr, ok := progress[id]
		if slices.Contains(want, id) && ok && pr.State == tracker.StateReplicate && pr.Match+catchUpLag >= last {
			return id, raftpb.ConfChangeAddNode
		}
	}
	// 3. A learner the ring does not want.
	if id := firstNotIn(learners, want); id != 0 {
		return id, raftpb.ConfChangeRemoveNode
	}
	// 4. A voter the ring does not want, once a member votes on every ring
	// replica. Others first: this node goes last, once preferLeaders has
	// handed leadership to a wanted voter.
	if len(want) < len(h.ringMetas(g.shard)) || firstNotIn(want, voters) != 0 {
		return 0, 0
	}
	id := firstNotIn(slices.DeleteFunc(slices.Clone(voters), func(v uint64) bool { return v == g.id }), want)
	if id == 0 {
		return 0, 0
	}
	// Never leave the group without a live quorum.
	live := 0
	for _, v := range voters {
		if v != id && h.live(g, v) {
			live++
		}
	}
	if live < (len(voters)-1)/2+1 {
		return 0, 0
	}
	return id, raftpb.ConfChangeRemoveNode
}

func (h *Host) changeConf(g *group, t raftpb.ConfChangeType, id uint64, context []byte) {
	cc := &raftpb.ConfChange{Type: t.Enum(), NodeId: proto.Uint64(id), Context: context}
	if err := g.rn.ProposeConfChange(cc); err != nil {
		// Dropped (a change or a transfer is pending): the next pass retries.
		h.log.Debug("propose configuration change", "shard", g.shard, "change", t.String(), "replica", h.name(g, id), "err", err)
		return
	}
	g.confBusy = confTicks
	h.log.Info("moving replica", "shard", g.shard, "change", t.String(), "replica", h.name(g, id), "id", fmt.Sprintf("%x", id))
}

// firstNotIn is the first id of have that want lacks.
func firstNotIn(have, want []uint64) uint64 {
	for _, id := range have {
		if !slices.Contains(want, id) {
			return id
		}
	}
	return 0
}
