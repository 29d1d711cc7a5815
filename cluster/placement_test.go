package cluster

import (
	"fmt"
	"testing"
)

func nodes(n int) map[string]Meta {
	m := map[string]Meta{}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("node%d", i)
		m[id] = Meta{ID: id, Role: RoleNode, GRPC: fmt.Sprintf("127.0.0.1:%d", 9100+i)}
	}
	return m
}

// consistent v0.10.0 panics when members x load cannot hold every
// partition; our partition count, load and replication factor must fit
// every cluster size.
func TestPlacementNeverPanics(t *testing.T) {
	for n := 1; n <= 64; n++ {
		p := newPlacement(1, nodes(n), nil, nil)
		owned := map[string]int{}
		for s := 0; s < Partitions; s++ {
			o, ok := p.ShardOwner(s)
			if !ok {
				t.Fatalf("%d nodes: shard %d has no owner", n, s)
			}
			owned[o.ID]++
		}
		limit := int(float64(Partitions)/float64(n)*ringLoad) + 1
		for id, c := range owned {
			if c > limit {
				t.Errorf("%d nodes: %s owns %d shards, bounded load allows %d", n, id, c, limit)
			}
		}
		if r, err := p.Replicas(0, 3); err != nil || len(r) != min(3, n) {
			t.Fatalf("%d nodes: replicas %v, %v", n, r, err)
		}
	}
}

// Liveness must not move rooms: a crashed node keeps its place.
func TestPlacementIgnoresLiveness(t *testing.T) {
	known := nodes(3)
	all := newPlacement(1, known, map[string]bool{"node1": true, "node2": true, "node3": true}, nil)
	oneDown := newPlacement(2, known, map[string]bool{"node1": true, "node3": true}, nil)
	for i := 0; i < 1000; i++ {
		room := fmt.Sprintf("room-%d", i)
		a, _ := all.Owner(room)
		b, _ := oneDown.Owner(room)
		if a.ID != b.ID {
			t.Fatalf("room %s moved from %s to %s when node2 went down", room, a.ID, b.ID)
		}
	}
	if oneDown.LiveNodes() != 2 || len(oneDown.Nodes()) != 3 {
		t.Fatalf("live %d known %d", oneDown.LiveNodes(), len(oneDown.Nodes()))
	}
}

// Two processes with the same known set agree on every owner.
func TestPlacementDeterministic(t *testing.T) {
	a := newPlacement(1, nodes(5), nil, nil)
	b := newPlacement(7, nodes(5), map[string]bool{"node3": true}, nil)
	for s := 0; s < Partitions; s++ {
		x, _ := a.ShardOwner(s)
		y, _ := b.ShardOwner(s)
		ra, _ := a.Replicas(s, 3)
		rb, _ := b.Replicas(s, 3)
		if x.ID != y.ID || fmt.Sprint(ra) != fmt.Sprint(rb) || ra[0].ID != x.ID {
			t.Fatalf("shard %d: owners %s/%s replicas %v/%v", s, x.ID, y.ID, ra, rb)
		}
	}
}

// consistent names a member's ring points id+"0" .. id+"39", so node1's
// points 10-19 are node11's 0-9 (and likewise node12, node13): the last
// member added takes them. Building the ring from a map in whatever order
// Go iterates it made every placement of one known set a coin toss: shard
// 13 of {node1 node7 node8 node10 node11} went to [node11 node7 node1] or
// [node1 node8 node10], so node1 and node11, each rebuilding its view on
// every gossip event, handed its leadership back and forth (a nemesis run
// saw 75 hand-overs) and added and removed its replicas without end.
func TestPlacementDoesNotDependOnMapOrder(t *testing.T) {
	sets := [][]string{
		{"node1", "node7", "node8", "node10", "node11"},
		{"node1", "node2", "node3", "node11", "node12", "node13"},
	}
	for _, ids := range sets {
		known := map[string]Meta{}
		for _, id := range ids {
			known[id] = Meta{ID: id, Role: RoleNode}
		}
		first := newPlacement(1, known, nil, nil)
		// Map order varies from build to build: one build in 2^63 of
		// these would miss a dependence on it.
		for build := range 64 {
			p := newPlacement(uint64(build+2), known, nil, nil)
			for s := 0; s < Partitions; s++ {
				a, err := first.Replicas(s, 3)
				if err != nil {
					t.Fatalf("nodes %v: %v", ids, err)
				}
				b, err := p.Replicas(s, 3)
				if err != nil {
					t.Fatalf("nodes %v: %v", ids, err)
				}
				if fmt.Sprint(a) != fmt.Sprint(b) {
					t.Fatalf("nodes %v, build %d: shard %d placed on %v, then on %v", ids, build, s, replicaIDs(a), replicaIDs(b))
				}
			}
		}
	}
}

func replicaIDs(ms []Meta) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func BenchmarkOwner(b *testing.B) {
	p := newPlacement(1, nodes(3), nil, nil)
	rooms := make([]string, 1024)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room-%d", i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Owner(rooms[i%len(rooms)])
	}
}

func metas(n int) []Meta {
	var out []Meta
	for i := 1; i <= n; i++ {
		out = append(out, Meta{ID: fmt.Sprintf("node%d", i), Role: RoleNode})
	}
	return out
}

// Consistent hashing keeps movement small: a fourth node takes about a
// quarter of the 192 replicas, not a reshuffle; and a leaving node keeps
// its entry (address) but loses its place in the ring.
func TestPlacementMovesLittleAndDropsLeaving(t *testing.T) {
	three, four := NewPlacement(metas(3)), NewPlacement(metas(4))
	moved := three.Moved(four, 3)
	if moved < 30 || moved > 70 {
		t.Fatalf("adding a fourth node moves %d of 192 replicas, want about 48", moved)
	}
	t.Logf("3 -> 4 nodes moves %d of 192 replicas", moved)
	if back := four.Moved(three, 3); back != moved {
		t.Fatalf("removing it again moves %d, adding moved %d", back, moved)
	}
	leaving := metas(4)
	leaving[3].Leaving = true
	p := NewPlacement(leaving)
	if p.RingSize() != 3 {
		t.Fatalf("ring size %d with one of four leaving", p.RingSize())
	}
	if _, ok := p.Node("node4"); !ok {
		t.Fatal("the leaving node's entry is gone")
	}
	for s := 0; s < Partitions; s++ {
		reps, err := p.Replicas(s, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reps {
			if r.ID == "node4" {
				t.Fatalf("shard %d still placed on the leaving node4", s)
			}
		}
	}
	if three.Moved(p, 3) != 0 {
		t.Fatal("a ring with a leaving node differs from the ring without it")
	}
}

// Health counts leave out a node that left (leaving and down), but count
// one that is leaving and still moving its replicas, and one that is only
// down.
func TestNodeCountsLeaveOutLeftNodes(t *testing.T) {
	known := nodes(4)
	left := known["node3"]
	left.Leaving = true
	known["node3"] = left
	leaving := known["node4"]
	leaving.Leaving = true
	known["node4"] = leaving
	p := newPlacement(1, known, map[string]bool{"node1": true, "node4": true}, nil)
	if alive, total := p.NodeCounts(); alive != 2 || total != 3 {
		t.Fatalf("NodeCounts = %d of %d, want 2 of 3 (node2 down, node3 left, node4 leaving)", alive, total)
	}
}
