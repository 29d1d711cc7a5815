package shard

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// A world placeStep runs in: nodes with a current incarnation (and the
// older ones their wiped disks had), some down; a ring over some of them;
// a group whose members sit on any incarnation of any node, or on none
// known.

type simWorld struct {
	nodes map[string]nodeView
	ring  []replicaDesc
	in    placeInput // the group, as its leader sees it
	rng   *rand.Rand
}

func newSimWorld(rng *rand.Rand, ringAlive bool) *simWorld {
	w := &simWorld{nodes: map[string]nodeView{}, rng: rng}
	k := 1 + rng.IntN(7)
	var names []string
	for i := range k {
		n := fmt.Sprintf("n%d", i)
		names = append(names, n)
		w.nodes[n] = nodeView{incarnation: fmt.Sprintf("%s-i%d", n, rng.IntN(3)), alive: rng.IntN(4) != 0}
	}
	r := min(k, 1+rng.IntN(3))
	for _, i := range rng.Perm(k)[:r] {
		n := names[i]
		if ringAlive {
			w.nodes[n] = nodeView{incarnation: w.nodes[n].incarnation, alive: true}
		}
		w.ring = append(w.ring, replicaDesc{node: n, incarnation: w.nodes[n].incarnation})
	}
	// Members: ids 1.. on random nodes, current or older incarnations, and
	// now and then one no table names.
	in := placeInput{reps: map[uint64]replicaDesc{}, caughtUp: map[uint64]bool{}, nodes: w.nodes}
	members := 1 + rng.IntN(6)
	for id := uint64(1); id <= uint64(members); id++ {
		n := names[rng.IntN(k)]
		inc := w.nodes[n].incarnation
		if rng.IntN(4) == 0 {
			inc = fmt.Sprintf("%s-old%d", n, rng.IntN(2))
		}
		if rng.IntN(10) != 0 {
			in.reps[id] = replicaDesc{node: n, incarnation: inc}
		}
		if id == 1 || rng.IntN(3) != 0 {
			in.voters = append(in.voters, id)
		} else {
			in.learners = append(in.learners, id)
		}
		in.caughtUp[id] = rng.IntN(2) == 0
	}
	// The leader: a voter on a node that is up, as its current incarnation.
	in.self = in.voters[rng.IntN(len(in.voters))]
	d, ok := in.reps[in.self]
	if !ok {
		d.node = names[rng.IntN(k)]
	}
	w.nodes[d.node] = nodeView{incarnation: w.nodes[d.node].incarnation, alive: true}
	in.reps[in.self] = replicaDesc{node: d.node, incarnation: w.nodes[d.node].incarnation}
	in.ring = w.ring
	in.newID = uint64(members) + 1
	in.mayAdd = rng.IntN(4) != 0
	w.in = in
	return w
}

// checkStep fails t when step is not a change placeStep may make from in.
func checkStep(t *testing.T, seed uint64, in placeInput, step confStep) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: %s\ninput: %+v\nstep: %+v", seed, fmt.Sprintf(format, args...), in, step)
	}
	if step.none() {
		return
	}
	isVoter, isLearner := slices.Contains(in.voters, step.id), slices.Contains(in.learners, step.id)
	voters := slices.Clone(in.voters)
	switch step.change {
	case raftpb.ConfChangeAddLearnerNode:
		if !in.mayAdd || step.id != in.newID || isVoter || isLearner {
			fail("adds a learner it may not (mayAdd %v, new id %d)", in.mayAdd, in.newID)
		}
		if !slices.Contains(in.ring, step.to) || !in.nodes[step.to.node].alive || in.holder(step.to) != 0 {
			fail("adds a replica on %v, not a live ring replica without a member", step.to)
		}
		return
	case raftpb.ConfChangeAddNode:
		if !isLearner || !in.caughtUp[step.id] || !slices.Contains(in.wanted(), step.id) {
			fail("promotes %d, not a caught-up learner the ring wants", step.id)
		}
		voters = append(voters, step.id)
	case raftpb.ConfChangeRemoveNode:
		switch {
		case step.id == in.self:
			fail("removes the leader's own replica")
		case !isVoter && !isLearner:
			fail("removes %d, no member", step.id)
		case slices.Contains(in.wanted(), step.id):
			fail("removes %d, a replica the ring wants", step.id)
		}
		voters = slices.DeleteFunc(voters, func(v uint64) bool { return v == step.id })
	default:
		fail("unexpected change type")
	}
	if !slices.Equal(voters, in.voters) && !in.liveQuorum(voters) {
		fail("leaves voters %v without a live quorum", voters)
	}
}

// apply makes step the group's configuration, as Raft applying it would.
func (w *simWorld) apply(step confStep) {
	in := &w.in
	switch step.change {
	case raftpb.ConfChangeAddLearnerNode:
		in.learners = append(in.learners, step.id)
		in.reps[step.id] = step.to
		in.caughtUp[step.id] = false
		in.newID++
	case raftpb.ConfChangeAddNode:
		in.learners = slices.DeleteFunc(in.learners, func(v uint64) bool { return v == step.id })
		in.voters = append(in.voters, step.id)
	case raftpb.ConfChangeRemoveNode:
		in.learners = slices.DeleteFunc(in.learners, func(v uint64) bool { return v == step.id })
		in.voters = slices.DeleteFunc(in.voters, func(v uint64) bool { return v == step.id })
		delete(in.reps, step.id)
	}
}

// handOver moves leadership as preferLeaders does when the leader is on no
// ring replica: to the first live voter in ring order. It reports whether
// there was one.
func (w *simWorld) handOver() bool {
	for _, id := range w.in.wanted() {
		if slices.Contains(w.in.voters, id) && w.in.live(id) && id != w.in.self {
			w.in.self = id
			return true
		}
	}
	return false
}

// settled reports whether the voters are exactly the ring's replicas and
// there are no learners.
func (w *simWorld) settled() bool {
	if len(w.in.learners) > 0 || len(w.in.voters) != len(w.ring) {
		return false
	}
	for _, d := range w.ring {
		if id := w.in.holder(d); id == 0 || !slices.Contains(w.in.voters, id) {
			return false
		}
	}
	return true
}

// seedOf is the first seed a property test runs from: new every run, so
// runs cover new cases, or PLACE_SEED to replay the case a failure names.
func seedOf(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PLACE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("PLACE_SEED %q: %v", s, err)
		}
		seed = v
	}
	t.Logf("first seed %d (replay a case with PLACE_SEED=<its seed> -run %s)", seed, t.Name())
	return seed
}

// TestPlaceStepSafe: from any configuration, placeStep proposes one change
// it may make (or none); a change to the voters never leaves them without
// a live quorum, and the leader's own replica is never removed.
func TestPlaceStepSafe(t *testing.T) {
	base := seedOf(t)
	cases := 20000
	if testing.Short() {
		cases = 2000
	}
	for i := range cases {
		seed := base + uint64(i)
		w := newSimWorld(rand.New(rand.NewPCG(seed, 0)), false)
		checkStep(t, seed, w.in, placeStep(w.in))
	}
}

// TestPlaceStepConverges: with the ring's nodes up, taking placeStep's
// changes one at a time (learners catching up a step after they are added,
// leadership handed to a ring replica whenever the leader is on none)
// reaches exactly the ring's replicas as voters and no learners, within a
// bound, from any start whose voters have a live quorum; every change on
// the way is safe.
func TestPlaceStepConverges(t *testing.T) {
	base := seedOf(t)
	cases := 10000
	if testing.Short() {
		cases = 1000
	}
	for i := range cases {
		seed := base + uint64(i)
		rng := rand.New(rand.NewPCG(seed, 1))
		w := newSimWorld(rng, true)
		if !w.in.liveQuorum(w.in.voters) {
			continue // nothing commits: Raft itself is stuck
		}
		// Each member is added, promoted and removed at most once, and the
		// leader hands over at most once per ring replica.
		bound := 3*(len(w.in.voters)+len(w.in.learners)+len(w.ring)) + len(w.ring) + 2
		steps := 0
		for ; steps <= bound && !w.settled(); steps++ {
			if !w.in.live(w.in.self) {
				t.Fatalf("seed %d: the leader's replica is not live", seed)
			}
			w.in.mayAdd = true
			for _, id := range w.in.learners {
				w.in.caughtUp[id] = true // the snapshot and the log arrived
			}
			// Leadership may move at any point of a move, not only at its end.
			if !slices.Contains(w.in.wanted(), w.in.self) && rng.IntN(3) == 0 && w.handOver() {
				continue
			}
			step := placeStep(w.in)
			if step.none() {
				if slices.Contains(w.in.wanted(), w.in.self) || !w.handOver() {
					t.Fatalf("seed %d: stuck after %d steps: voters %v learners %v reps %v ring %v self %d",
						seed, steps, w.in.voters, w.in.learners, w.in.reps, w.ring, w.in.self)
				}
				continue
			}
			checkStep(t, seed, w.in, step)
			w.apply(step)
		}
		if !w.settled() {
			t.Fatalf("seed %d: not on the ring after %d steps: voters %v learners %v ring %v", seed, steps, w.in.voters, w.in.learners, w.ring)
		}
	}
}
