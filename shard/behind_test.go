package shard

import (
	"fmt"
	"slices"
	"testing"

	"hellochat/storage"
)

// TestStatusNamesReplicasBehind: a leader's Status names a replica that
// misses committed entries (here one crashed while the shard took writes),
// and none once every replica has caught up. A leader that has just taken
// over counts a follower behind until it answers, rather than none until
// its next placement pass. launch.Settled waits on this before a test stops
// a cluster and compares replicas: without it TestKill9Failover read a
// restarted node's disk before it had caught up.
func TestStatusNamesReplicasBehind(t *testing.T) {
	runSim(t, 1, 0, simOptions{test: "TestStatusNamesReplicasBehind", after: func(s *sim) {
		quiet := func(what string) {
			for range placeTicks + 1 {
				s.reliableRound()
			}
			for _, sh := range s.shards {
				if b := s.leaderOf(sh).h.Status(sh).Behind; len(b) > 0 {
					t.Fatalf("%s: shard %d's leader names %v behind; every replica has applied its commit", what, sh, b)
				}
			}
		}
		quiet("healed")

		sh := s.shards[0]
		leader := s.leaderOf(sh)
		var victim *simNode
		for _, node := range s.nodes {
			if node != leader && node.h.groups[sh] != nil {
				victim = node
				break
			}
		}
		s.crash(victim)
		res := errNoAnswer
		leader.h.propose(&proposal{shard: sh, object: objectIn(sh),
			ops:  []storage.Op{{Key: []byte("behind"), Value: []byte("written while a replica is down")}},
			done: func(err error) { res = err }})
		for i := 0; i < simHealRounds && res == errNoAnswer; i++ {
			s.reliableRound()
		}
		if res != nil {
			t.Fatalf("write to shard %d with one replica down: %v", sh, res)
		}
		for range placeTicks + 1 {
			s.reliableRound()
		}
		if b := leader.h.Status(sh).Behind; !slices.Equal(b, []string{victim.id}) {
			t.Fatalf("shard %d's leader names %v behind while %s is down and missed a write; want [%s]", sh, b, victim.id, victim.id)
		}

		s.restart(victim)
		s.settle("settle after the restart")
		quiet(fmt.Sprintf("%s caught up", victim.id))

		// The leader dies: its successor names it behind from the moment
		// it serves, before any placement pass.
		s.crash(leader)
		var next *simNode
		for i := 0; i < simHealRounds && next == nil; i++ {
			s.reliableRound()
			next = s.leaderOf(sh)
		}
		if next == nil {
			t.Fatalf("shard %d: no new leader after %s crashed", sh, leader.id)
		}
		if b := next.h.Status(sh).Behind; !slices.Contains(b, leader.id) {
			t.Fatalf("shard %d's new leader %s names %v behind as it starts serving; want the crashed %s among them", sh, next.id, b, leader.id)
		}
	}})
}
