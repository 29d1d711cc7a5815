package shard

import (
	"testing"

	"hellochat/storage"
)

// TestAppliedTracksTheStore: Host.Applied is what a replica has applied to
// its store. After a write that a crashed replica missed, the survivors
// report the write's index and the crashed one, restarted, reports less
// until it catches up; then every replica reports the leader's index, and
// the data are equal (the check routers use to name replicas behind, and
// tools to know a clean stop leaves identical replicas).
func TestAppliedTracksTheStore(t *testing.T) {
	runSim(t, 1, 0, simOptions{test: "TestAppliedTracksTheStore", after: func(s *sim) {
		sh := s.shards[0]
		leader := s.leaderOf(sh)
		var victim *simNode
		for _, node := range s.nodes {
			if node != leader && node.h.groups[sh] != nil {
				victim = node
				break
			}
		}
		for _, node := range s.nodes {
			if g := node.h.groups[sh]; g != nil && node.h.Applied(sh) != g.applied {
				t.Fatalf("%s reports %d applied of shard %d, its group %d", node.id, node.h.Applied(sh), sh, g.applied)
			}
		}
		before := victim.h.Applied(sh)
		s.crash(victim)
		res := errNoAnswer
		leader.h.propose(&proposal{shard: sh, object: objectIn(sh),
			ops:  []storage.Op{{Key: []byte("missed"), Value: []byte("written while a replica is down")}},
			done: func(err error) { res = err }})
		for i := 0; i < simHealRounds && res == errNoAnswer; i++ {
			s.reliableRound()
		}
		if res != nil {
			t.Fatalf("write to shard %d with one replica down: %v", sh, res)
		}
		want := leader.h.Applied(sh)
		if want <= before {
			t.Fatalf("the leader reports %d applied after a write, %d before", want, before)
		}
		s.restart(victim)
		if got := victim.h.Applied(sh); got >= want {
			t.Fatalf("the restarted %s reports %d applied before catching up, the leader %d", victim.id, got, want)
		}
		s.settle("settle after the restart")
		for _, node := range s.nodes {
			if node.h.groups[sh] != nil && node.h.Applied(sh) != leader.h.Applied(sh) {
				t.Fatalf("after settling, %s reports %d applied of shard %d, the leader %d", node.id, node.h.Applied(sh), sh, leader.h.Applied(sh))
			}
		}
		if a, b := s.shardData(leader, sh), s.shardData(victim, sh); fnvOf(a) != fnvOf(b) {
			t.Fatalf("shard %d: %s holds %d keys, the leader %d, and they differ", sh, victim.id, len(b), len(a))
		}
		for _, node := range s.nodes {
			for sh := 0; sh < len(node.h.applied); sh++ {
				if node.h.groups[sh] == nil && node.h.Applied(sh) != 0 {
					t.Fatalf("%s reports %d applied of shard %d, which it does not hold", node.id, node.h.Applied(sh), sh)
				}
			}
		}
	}})
}
