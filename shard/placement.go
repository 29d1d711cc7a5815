package shard

import (
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
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
	p := h.cfg.Members.Placement()
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
		want := h.ringVotersAll(g.shard)
		if len(want) == 0 {
			continue
		}
		voters, learners := g.confState.GetVoters(), g.confState.GetLearners()
		st := g.rn.Status()
		if st.LeadTransferee != 0 {
			continue // Raft drops proposals while leadership moves
		}
		last, _ := g.ms.LastIndex()

		// 1. A ring replica that is neither voter nor learner, and alive.
		if moving < h.cfg.MaxMoves {
			if id := firstMissing(want, voters, learners, func(id uint64) bool { return p.Alive(h.ids[id]) }); id != 0 {
				h.changeConf(g, raftpb.ConfChangeAddLearnerNode, id)
				moving++
				continue
			}
		}
		// 2. A caught-up learner the ring wants.
		promoted := false
		for _, id := range learners {
			pr, ok := st.Progress[id]
			if slices.Contains(want, id) && ok && pr.State == tracker.StateReplicate && pr.Match+catchUpLag >= last {
				h.changeConf(g, raftpb.ConfChangeAddNode, id)
				promoted = true
				break
			}
		}
		if promoted {
			continue
		}
		// 3. A learner the ring does not want.
		if id := firstNotIn(learners, want); id != 0 {
			h.changeConf(g, raftpb.ConfChangeRemoveNode, id)
			continue
		}
		// 4. A voter the ring does not want, once all it wants vote.
		if firstMissing(want, voters, nil, nil) != 0 {
			continue
		}
		// Others first: this node goes last, once preferLeaders has handed
		// leadership to a wanted voter.
		id := firstNotIn(slices.DeleteFunc(slices.Clone(voters), func(v uint64) bool { return v == h.raftID }), want)
		if id == 0 {
			continue
		}
		// Never leave the group without a live quorum.
		live := 0
		for _, v := range voters {
			if v != id && (v == h.raftID || p.Alive(h.ids[v])) {
				live++
			}
		}
		if live < (len(voters)-1)/2+1 {
			continue
		}
		h.changeConf(g, raftpb.ConfChangeRemoveNode, id)
	}
}

// ringVotersAll is the ring's replica set of a shard as Raft ids, whether
// or not it includes this node.
func (h *Host) ringVotersAll(shard int) []uint64 {
	reps, err := h.cfg.Members.Placement().Replicas(shard, h.cfg.Replicas)
	if err != nil {
		return nil
	}
	ids := make([]uint64, len(reps))
	for i, r := range reps {
		ids[i] = r.RaftID()
	}
	return ids
}

func (h *Host) changeConf(g *group, t raftpb.ConfChangeType, id uint64) {
	cc := &raftpb.ConfChange{Type: t.Enum(), NodeId: proto.Uint64(id)}
	if err := g.rn.ProposeConfChange(cc); err != nil {
		// Dropped (a change or a transfer is pending): the next pass retries.
		h.log.Debug("propose configuration change", "shard", g.shard, "change", t.String(), "replica", h.name(id), "err", err)
		return
	}
	g.confBusy = confTicks
	h.log.Info("moving replica", "shard", g.shard, "change", t.String(), "replica", h.name(id))
}

// firstMissing is the first id of want in neither a nor b (and ok, if set).
func firstMissing(want, a, b []uint64, ok func(uint64) bool) uint64 {
	for _, id := range want {
		if !slices.Contains(a, id) && !slices.Contains(b, id) && (ok == nil || ok(id)) {
			return id
		}
	}
	return 0
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
