package shard

import (
	"testing"

	"go.etcd.io/raft/v3"
)

// TestGossipSuspicionKeepsAHeardLeader: gossip calling a node down is a
// suspicion. Followers that heard their leader within suspectSilence ticks
// keep it: no election, no term change. Once a leader has been silent that
// long, the same news makes its followers campaign at once, without
// waiting out the election timeout. Under -race on a loaded 2-core machine
// test gossip marked live nodes down every few seconds, and each time every
// follower of their shards forgot its leader and elected another.
func TestGossipSuspicionKeepsAHeardLeader(t *testing.T) {
	runSim(t, 1, 0, simOptions{test: "TestGossipSuspicionKeepsAHeardLeader", after: func(s *sim) {
		// s.placement has every node known and none up: the worst gossip
		// can say.
		type led struct {
			node *simNode
			term uint64
		}
		before := map[int]led{}
		for _, sh := range s.shards {
			l := s.leaderOf(sh)
			before[sh] = led{l, l.h.groups[sh].term}
		}
		for _, node := range s.nodes {
			node.h.membersChanged(s.placement)
			for _, sh := range s.shards {
				g := node.h.groups[sh]
				if g == nil || node == before[sh].node {
					continue
				}
				if st := g.rn.BasicStatus(); st.RaftState != raft.StateFollower || st.Lead != before[sh].node.h.groups[sh].id {
					t.Fatalf("shard %d on %s: %v following %x after gossip suspected its leader %s, which it had just heard",
						sh, node.id, st.RaftState, st.Lead, before[sh].node.id)
				}
			}
		}
		for range 2 * simElectionTicks {
			s.reliableRound()
		}
		for _, sh := range s.shards {
			l := s.leaderOf(sh)
			if l != before[sh].node || l.h.groups[sh].term != before[sh].term {
				t.Fatalf("shard %d: led by %s in term %d before the suspicion, then by %v in term %d",
					sh, before[sh].node.id, before[sh].term, l, l.h.groups[sh].term)
			}
		}

		// A leader cut off: once its followers have not heard it for
		// suspectSilence ticks, gossip's news starts an election at once.
		sh := s.shards[0]
		leader := s.leaderOf(sh)
		for _, node := range s.nodes {
			if node != leader {
				s.cut[[2]string{leader.id, node.id}] = true
				s.cut[[2]string{node.id, leader.id}] = true
			}
		}
		for range leader.h.suspectSilence() + 1 {
			s.reliableRound()
		}
		campaigning := 0
		for _, node := range s.nodes {
			g := node.h.groups[sh]
			if node == leader || g == nil {
				continue
			}
			node.h.membersChanged(s.placement)
			if st := g.rn.BasicStatus(); st.RaftState != raft.StateFollower {
				campaigning++
			}
		}
		if campaigning == 0 {
			t.Fatalf("shard %d: no follower campaigned %d ticks after its leader went silent and gossip said it was down",
				sh, leader.h.suspectSilence()+1)
		}
	}})
}
