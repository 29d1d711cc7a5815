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
// one step toward the ring's replicas (placeStep decides which):
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
// and their snapshots share SnapshotRate. No change to the voters may
// leave them without a live quorum.

// confTicks bounds how long a proposed change may take to apply before the
// pass proposes again (Raft drops a change proposed while one is pending).
const confTicks = 50

// catchUpLag is how close to the leader's last index a learner must be to
// be promoted: promoting a replica far behind would make the group wait
// for it.
const catchUpLag = 64

// nodeView is what membership says of one node: its current incarnation
// and whether gossip has it up.
type nodeView struct {
	incarnation string
	alive       bool
}

// placeInput is everything one placement step decides from: a snapshot of
// the group (as of applied), the ring and membership, taken by the leader.
type placeInput struct {
	self     uint64        // this replica's id; it leads the group
	ring     []replicaDesc // the ring's replicas of the shard, preferred first
	voters   []uint64
	learners []uint64
	// reps names the node incarnation of each member; a member it lacks is
	// held by no node anyone knows, so it counts as dead.
	reps map[uint64]replicaDesc
	// caughtUp marks replicas the leader is replicating to and that are
	// within catchUpLag of its last index.
	caughtUp map[uint64]bool
	nodes    map[string]nodeView
	// mayAdd is false when this leader already moves MaxMoves replicas.
	mayAdd bool
	newID  uint64 // the id a replica added now gets
}

// confStep is one configuration change; the zero value is none.
type confStep struct {
	change raftpb.ConfChangeType
	id     uint64
	to     replicaDesc // for an addition: the node incarnation it is for
}

func (s confStep) none() bool { return s.id == 0 }

// live reports whether member id is held by its node's current
// incarnation and gossip says that node is up (this replica is, as it
// runs this).
func (in *placeInput) live(id uint64) bool {
	if id == in.self {
		return true
	}
	d, ok := in.reps[id]
	if !ok {
		return false
	}
	n, ok := in.nodes[d.node]
	return ok && n.alive && n.incarnation == d.incarnation
}

// holder is the member held by node incarnation d, or 0.
func (in *placeInput) holder(d replicaDesc) uint64 {
	for _, id := range slices.Concat(in.voters, in.learners) {
		if r, ok := in.reps[id]; ok && r == d {
			return id
		}
	}
	return 0
}

// wanted are the members on the ring's replicas, in ring order.
func (in *placeInput) wanted() []uint64 {
	var ids []uint64
	for _, d := range in.ring {
		if id := in.holder(d); id != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// liveQuorum reports whether voters would keep a majority of live members.
func (in *placeInput) liveQuorum(voters []uint64) bool {
	live := 0
	for _, v := range voters {
		if in.live(v) {
			live++
		}
	}
	return len(voters) > 0 && live >= len(voters)/2+1
}

// placeStep is the next configuration change toward the ring's replicas
// (steps 1-4 above), or none. It never proposes a change to the voters
// that leaves them without a live quorum, and never removes in.self: that
// replica goes last, once leadership has moved to a replica the ring
// wants (preferLeaders).
func placeStep(in placeInput) confStep {
	// 1. A ring replica on a live node that holds no member yet.
	if in.mayAdd {
		for _, d := range in.ring {
			if n := in.nodes[d.node]; n.alive && in.holder(d) == 0 {
				return confStep{change: raftpb.ConfChangeAddLearnerNode, id: in.newID, to: d}
			}
		}
	}
	want := in.wanted()
	// 2. A caught-up learner the ring wants, if the voters it joins keep a
	// live quorum (promoting a replica that is down would leave fewer live
	// voters than the larger quorum needs).
	for _, id := range in.learners {
		if slices.Contains(want, id) && in.caughtUp[id] && in.liveQuorum(append(slices.Clone(in.voters), id)) {
			return confStep{change: raftpb.ConfChangeAddNode, id: id}
		}
	}
	// 3. A learner the ring does not want.
	if id := firstNotIn(in.learners, want); id != 0 {
		return confStep{change: raftpb.ConfChangeRemoveNode, id: id}
	}
	// 4. A voter the ring does not want, once a member votes on every ring
	// replica. Others first: this node goes last, once preferLeaders has
	// handed leadership to a wanted voter.
	if len(want) < len(in.ring) || firstNotIn(want, in.voters) != 0 {
		return confStep{}
	}
	// Dead ones first, as they weaken the quorum; and the next one when
	// removing one would leave too few live voters: with voters {self,
	// live X, dead Y} removing X leaves one live of two, removing Y two of
	// two, and X can go after Y.
	var unwanted []uint64
	for _, dead := range []bool{true, false} {
		for _, id := range in.voters {
			if id != in.self && !slices.Contains(want, id) && in.live(id) != dead {
				unwanted = append(unwanted, id)
			}
		}
	}
	for _, id := range unwanted {
		if in.liveQuorum(slices.DeleteFunc(slices.Clone(in.voters), func(v uint64) bool { return v == id })) {
			return confStep{change: raftpb.ConfChangeRemoveNode, id: id}
		}
	}
	return confStep{}
}

// placeInputOf takes the snapshot placeStep decides g's next change from.
func (h *Host) placeInputOf(g *group, progress map[uint64]tracker.Progress, mayAdd bool) placeInput {
	p := h.cfg.Members.Placement()
	in := placeInput{self: g.id, voters: g.confState.GetVoters(), learners: g.confState.GetLearners(),
		reps: make(map[uint64]replicaDesc, len(g.reps)), caughtUp: map[uint64]bool{},
		nodes: map[string]nodeView{}, mayAdd: mayAdd}
	for _, m := range h.ringMetas(g.shard) {
		in.ring = append(in.ring, replicaDesc{node: m.ID, incarnation: m.Replica})
	}
	for _, n := range p.Nodes() {
		in.nodes[n.ID] = nodeView{incarnation: n.Replica, alive: p.Alive(n.ID)}
	}
	last, _ := g.ms.LastIndex()
	for _, id := range slices.Concat(in.voters, in.learners) {
		if d, ok := g.reps[id]; ok {
			in.reps[id] = d
		} else if n := h.nodeOf(g, id); n != "" && h.current(g, id) {
			// Known from an authenticated sender or a node-incarnation id:
			// as current as membership says.
			in.reps[id] = replicaDesc{node: n, incarnation: in.nodes[n].incarnation}
		}
		if pr, ok := progress[id]; ok && pr.State == tracker.StateReplicate && pr.Match+catchUpLag >= last {
			in.caughtUp[id] = true
		}
	}
	if mayAdd {
		in.newID = g.newReplicaID()
	}
	return in
}

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
		if len(h.ringMetas(g.shard)) == 0 {
			continue
		}
		st := g.rn.Status()
		if st.LeadTransferee != 0 {
			continue // Raft drops proposals while leadership moves
		}
		step := placeStep(h.placeInputOf(g, st.Progress, moving < h.cfg.MaxMoves))
		if step.none() {
			continue
		}
		var context []byte
		if step.change == raftpb.ConfChangeAddLearnerNode {
			moving++
			context = replicaContext(step.id, cluster.Meta{ID: step.to.node, Replica: step.to.incarnation})
		}
		h.changeConf(g, step.change, step.id, context)
	}
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
