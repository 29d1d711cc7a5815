package shard

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"hellochat/cluster"
)

// TestSimLive is TestSim with every node up in the placement, as gossip
// sees a healthy cluster: leaders then hand their shards to the ring's
// preferred replica (preferLeaders), which TestSim's placement, where no
// node is up, never does. The placement is taken once from real gossip on
// loopback and never changes: it depends only on the node ids, so a seed
// still replays exactly (SIMSEED=n go test -race -run 'TestSimLive$').
func TestSimLive(t *testing.T) {
	live := map[int]*cluster.Placement{}
	for _, n := range []int{3, 5} {
		live[n] = livePlacement(t, n)
	}
	runSeeds(t, []int64{5, 6}, simOptions{live: live, test: "TestSimLive"})
}

// livePlacement gossips nodes n1..nn, as the simulation names them, on
// loopback until each sees every one up, and returns a placement (an
// immutable view) of one of them.
func livePlacement(t *testing.T, n int) *cluster.Placement {
	t.Helper()
	var members []*cluster.Membership
	var seeds []string
	for i := 1; i <= n; i++ {
		m, err := cluster.Start(cluster.Config{
			Meta:  cluster.Meta{ID: fmt.Sprintf("n%d", i), Role: cluster.RoleNode, Replica: fmt.Sprintf("r%d", i)},
			Bind:  "127.0.0.1:0",
			Seeds: seeds,
			Timings: cluster.Timings{ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond, SuspicionMult: 2,
				GossipInterval: 50 * time.Millisecond, PushPullInterval: 200 * time.Millisecond, RejoinInterval: time.Hour},
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			LogOutput: io.Discard,
		})
		if err != nil {
			t.Fatalf("start gossip of n%d: %v", i, err)
		}
		t.Cleanup(func() { m.Shutdown() })
		members = append(members, m)
		seeds = append(seeds, m.GossipAddr())
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("gossip to see all %d nodes up", n), func() bool {
		for _, m := range members {
			if m.Placement().LiveNodes() != n {
				return false
			}
		}
		return true
	})
	return members[0].Placement()
}
