package shard

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A deterministic Raft network in memory: real etcd raft replicas, whose
// messages and rounds the test runs in the order it chooses, so it can put
// a replica exactly where a loaded node is: holding a commit it has not
// applied yet.

type memReplica struct {
	rn    *raft.RawNode
	ms    *raft.MemoryStorage
	inbox []*raftpb.Message
}

type memNet struct {
	t    *testing.T
	reps map[uint64]*memReplica
	ids  []uint64
}

func newMemNet(t *testing.T, voters, learners []uint64) *memNet {
	n := &memNet{t: t, reps: map[uint64]*memReplica{}}
	for _, id := range append(append([]uint64(nil), voters...), learners...) {
		ms := raft.NewMemoryStorage()
		if err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(1), Term: proto.Uint64(1),
			ConfState: &raftpb.ConfState{Voters: voters, Learners: learners}}}); err != nil {
			t.Fatal(err)
		}
		rn, err := raft.NewRawNode(&raft.Config{ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, Applied: 1,
			MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, CheckQuorum: true, PreVote: true, DisableProposalForwarding: true,
			Logger: raftLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}})
		if err != nil {
			t.Fatal(err)
		}
		n.reps[id] = &memReplica{rn: rn, ms: ms}
		n.ids = append(n.ids, id)
	}
	return n
}

// round is one replica's round as the host runs it: persist, send, apply
// (configuration changes), advance.
func (n *memNet) round(id uint64) {
	r := n.reps[id]
	for r.rn.HasReady() {
		rd := r.rn.Ready()
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := r.ms.ApplySnapshot(rd.Snapshot); err != nil {
				n.t.Fatal(err)
			}
		}
		if err := r.ms.Append(rd.Entries); err != nil {
			n.t.Fatal(err)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			if err := r.ms.SetHardState(rd.HardState); err != nil {
				n.t.Fatal(err)
			}
		}
		for _, m := range rd.Messages {
			to := n.reps[m.GetTo()]
			to.inbox = append(to.inbox, m)
		}
		for _, e := range rd.CommittedEntries {
			if e.GetType() == raftpb.EntryConfChange {
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					n.t.Fatal(err)
				}
				r.rn.ApplyConfChange(&cc)
			}
		}
		r.rn.Advance(rd)
	}
}

// deliver steps everything queued for id, as the host steps every queued
// batch before its round, then runs the round.
func (n *memNet) deliver(id uint64) {
	r := n.reps[id]
	for len(r.inbox) > 0 {
		m := r.inbox[0]
		r.inbox = r.inbox[1:]
		_ = r.rn.Step(m) // a message for an old term is refused: fine
	}
	n.round(id)
}

// settle runs rounds and deliveries until nothing is left to do.
func (n *memNet) settle() {
	for range 1000 {
		busy := false
		for _, id := range n.ids {
			r := n.reps[id]
			if len(r.inbox) > 0 || r.rn.HasReady() {
				busy = true
				n.deliver(id)
			}
		}
		if !busy {
			return
		}
	}
	n.t.Fatal("the network did not settle")
}

func (n *memNet) lastIndex(id uint64) uint64 {
	last, _ := n.reps[id].ms.LastIndex()
	return last
}

// TestHandOverWaitsForTheTransfereeToApplyItsPromotion: a leader that
// promotes a learner and, once it applied the promotion itself, hands
// leadership to it must not do so before the new voter applied the
// promotion too; else the voter ignores the hand-over and every write of
// the shard is dropped until Raft gives the transfer up an election
// timeout later. handOverReady must answer no then, yes after the voter
// acknowledged a later write (or heartbeats had time to carry the commit
// when there are no writes), and the hand-over it allows must succeed at
// once with no write dropped.
func TestHandOverWaitsForTheTransfereeToApplyItsPromotion(t *testing.T) {
	for _, writes := range []bool{true, false} {
		n := newMemNet(t, []uint64{1, 2}, []uint64{3})
		leader, r := n.reps[1], n.reps[3]
		if err := leader.rn.Campaign(); err != nil {
			t.Fatal(err)
		}
		n.settle()
		for range 5 {
			if err := leader.rn.Propose([]byte("x")); err != nil {
				t.Fatal(err)
			}
			n.settle()
		}
		// Promote 3; it appends the change, the leader commits and applies
		// it, and sends 3 the commit, which 3 has not taken yet.
		if err := leader.rn.ProposeConfChange(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(3)}); err != nil {
			t.Fatal(err)
		}
		n.round(1)
		n.deliver(2)
		n.deliver(3)
		n.deliver(1) // commits and applies the promotion
		if v := leader.rn.Status().Config.Voters.IDs(); len(v) != 3 {
			t.Fatalf("the leader has not applied the promotion: voters %v", v)
		}
		tick, settleTicks := 0, 3
		mark := confMark{last: n.lastIndex(1), tick: tick}

		ready := func() bool {
			st := leader.rn.Status()
			return handOverReady(st.Progress[3], n.lastIndex(1), mark, tick, settleTicks)
		}
		if ready() {
			// What the old rule did: 3 is caught up, so hand over.
			leader.rn.TransferLeader(3)
			n.round(1)
			n.deliver(3) // the commit and the MsgTimeoutNow, before 3's round
			n.settle()
			if err := leader.rn.Propose([]byte("x")); errors.Is(err, raft.ErrProposalDropped) {
				t.Fatalf("writes %v: handed over to a voter that had not applied its promotion: it ignored the hand-over and the leader drops writes (%v) until an election timeout passes", writes, err)
			}
			t.Fatalf("writes %v: handed over before the voter applied its promotion", writes)
		}
		// Time passes: a write now and then, or only heartbeats.
		for step := 0; !ready(); step++ {
			if step > 10 {
				t.Fatalf("writes %v: never ready to hand over", writes)
			}
			if writes {
				if err := leader.rn.Propose([]byte("x")); err != nil {
					t.Fatalf("writes %v: write refused before the hand-over: %v", writes, err)
				}
			} else {
				tick++
				leader.rn.Tick()
			}
			n.settle()
		}
		leader.rn.TransferLeader(3)
		n.settle()
		if lead := r.rn.BasicStatus().Lead; lead != 3 || r.rn.BasicStatus().RaftState != raft.StateLeader {
			t.Fatalf("writes %v: the hand-over did not complete at once: 3 sees leader %d", writes, lead)
		}
		if err := r.rn.Propose([]byte("x")); err != nil {
			t.Fatalf("writes %v: the new leader refuses a write: %v", writes, err)
		}
	}
}
