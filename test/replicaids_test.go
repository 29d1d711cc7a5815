package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"hellochat/cluster"
	tc "hellochat/internal/testcluster"
)

// TestShardReturnsToNodeWhileReplicaLags drives the sequence that made a
// shard returning to a node reuse its old Raft id: voters {A,B,X}; B goes
// down; a fourth node D joins and X's replica moves to D; messages are
// acknowledged by A and D; D is decommissioned, so the shard returns to
// X, whose new replica stays empty (snapshots are throttled to a trickle);
// B restarts with its stale configuration {A,B,X}, and {B,X} are cut off
// from {A,D}; then A dies. B must not win
// an election with the empty replica's vote and serve its stale log: at
// most one node serves the shard at any time, and every acknowledged
// message is in the history of whoever serves it next.
func TestShardReturnsToNodeWhileReplicaLags(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 100000, SendBurst: 100000, MaxMoves: 64, SnapshotRate: 1024})
	names := []string{"node1", "node2", "node3", "node4"}
	metas := func(ids ...string) []cluster.Meta {
		var ms []cluster.Meta
		for _, id := range ids {
			ms = append(ms, cluster.Meta{ID: id, Role: cluster.RoleNode})
		}
		return ms
	}
	three, four := cluster.NewPlacement(metas(names[:3]...)), cluster.NewPlacement(metas(names...))
	// A room whose shard moves from X to D when D joins, and whose
	// preferred leader stays up throughout (A): B is the third replica.
	var room, a, b, x string
	for i := 0; room == ""; i++ {
		name := fmt.Sprintf("lag-%d", i)
		s := c.Shard(name)
		r3, _ := three.Replicas(s, 3)
		r4, _ := four.Replicas(s, 3)
		ids4 := []string{r4[0].ID, r4[1].ID, r4[2].ID}
		if !slices.Contains(ids4, "node4") {
			continue
		}
		for _, r := range r3 {
			if !slices.Contains(ids4, r.ID) {
				x = r.ID
			}
		}
		var rest []string
		for _, r := range r3 {
			if r.ID != x {
				rest = append(rest, r.ID)
			}
		}
		room, a, b = name, rest[0], rest[1]
	}
	shard := c.Shard(room)
	ai, bi, xi := c.NodeIndex(a), c.NodeIndex(b), c.NodeIndex(x)
	t.Logf("room %s (shard %d): A=%s B=%s X=%s", room, shard, a, b, x)

	w := newWriter(t, c, room, "w")
	send := func(n int, text string) {
		for j := 0; j < n; j++ {
			w.sent++
			w.cl.Post(fmt.Sprintf("w-%d", w.sent), text)
		}
		w.collect(t, 60*time.Second, nil)
	}
	send(20, "before")

	c.Kill(bi)
	di := c.AddNode()
	tc.Eventually(t, 60*time.Second, func() error {
		st, _ := c.Nodes[ai].ShardStatus(shard)
		if !st.Serving || !slices.Contains(st.Voters, "node4") || slices.Contains(st.Voters, x) || len(st.Learners) > 0 {
			return fmt.Errorf("shard %d as %s sees it: %+v", shard, a, st)
		}
		return nil
	})
	// Acknowledged by A and D while B is down: more than a snapshot chunk,
	// so X's next snapshot cannot arrive in one piece.
	big := strings.Repeat("y", 1900)
	for round := 0; round < 8; round++ {
		send(100, big)
	}

	before := c.Nodes[xi].Replicas()
	c.Nodes[di].Decommission()
	tc.Eventually(t, 60*time.Second, func() error {
		if c.Nodes[xi].Replicas() <= before {
			return fmt.Errorf("%s holds %d replicas, none new for shard %d yet", x, c.Nodes[xi].Replicas(), shard)
		}
		return nil
	})

	// B comes back, and {B,X} are cut off from {A,D}: B still has its
	// configuration {A,B,X}, and X its empty replica.
	cut := func(peer string) bool { return peer == a || peer == "node4" }
	c.Kill(xi)
	c.SetRaftDrop(xi, cut)
	c.Start(xi)
	c.SetRaftDrop(bi, cut)
	c.Start(bi)
	// At most one node may serve the shard at any time.
	watch := func(window time.Duration) (serving []string) {
		deadline := time.Now().Add(window)
		for {
			serving = nil
			for i, n := range c.Nodes {
				if n != nil {
					if st, ok := n.ShardStatus(shard); ok && st.Serving {
						serving = append(serving, c.Config(i).ID)
					}
				}
			}
			if len(serving) > 1 {
				t.Fatalf("shard %d served by %v at once", shard, serving)
			}
			if time.Now().After(deadline) {
				return serving
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Several election timeouts: time for B to campaign.
	watch(5 * time.Second)
	// A dies: B and X must still not take over with B's stale log (and
	// D, cut off from B, has no quorum either).
	c.Kill(ai)
	watch(5 * time.Second)
	// Everything heals: the shard is served again, whole.
	for _, i := range []int{bi, xi} {
		c.Kill(i)
		c.SetRaftDrop(i, nil)
		c.Start(i)
	}
	c.Start(ai)
	tc.Eventually(t, 60*time.Second, func() error {
		if len(watch(0)) == 0 {
			return fmt.Errorf("nobody serves shard %d", shard)
		}
		return nil
	})
	if hist := checkRoom(t, c, room, w); len(hist) != w.sent {
		t.Fatalf("history holds %d messages, %d were acknowledged", len(hist), w.sent)
	}
}
