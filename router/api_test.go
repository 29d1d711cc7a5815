package router

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

func TestCollectGroups(t *testing.T) {
	statuses := []*pb.StatusResponse{
		{NodeId: "node1", Shards: []*pb.ShardStatus{
			{Shard: 0, Voters: []string{"node3", "node1", "node2"}, Want: []string{"node1", "node2", "node3"}, Applied: 10},
			// node1 still thinks it leads shard 1, but gossip names node2.
			{Shard: 1, Voters: []string{"node1", "node2", "node3"}, Want: []string{"node1", "node2", "node3"}, Applied: 99},
		}},
		{NodeId: "node2", Shards: []*pb.ShardStatus{
			{Shard: 1, Voters: []string{"node1", "node2", "node3(old)"}, Learners: []string{"node3"},
				Want: []string{"node2", "node1", "node3"}, Applied: 50},
			{Shard: 2, Voters: []string{"node1", "node2", "node3"}, Want: []string{"node2", "node4", "node1"}, Applied: 7},
		}},
		nil, // a node that did not answer
	}
	groups, moving, reported := collectGroups(map[int]string{0: "node1", 1: "node2", 2: "node2"}, statuses)
	if len(groups) != cluster.Partitions {
		t.Fatalf("%d groups, want %d", len(groups), cluster.Partitions)
	}
	if reported != 3 || moving != 2 {
		t.Errorf("reported %d moving %d, want 3 and 2", reported, moving)
	}
	if g := groups[0]; g.Leader != "node1" || g.Moving || strings.Join(g.Voters, ",") != "node1,node2,node3" {
		t.Errorf("shard 0: %+v", g)
	}
	if g := groups[1]; g.Leader != "node2" || !g.Moving || strings.Join(g.Learners, ",") != "node3" {
		t.Errorf("shard 1 should come from gossip's leader node2 and be moving: %+v", g)
	}
	if g := groups[2]; !g.Moving {
		t.Errorf("shard 2: voters differ from want, yet not moving: %+v", g)
	}
	if g := groups[3]; g.Leader != "" || g.Moving {
		t.Errorf("shard 3 has no answering leader: %+v", g)
	}
}

// TestCollectGroupsNamesReplicasBehind: a replica is behind while its
// node has applied less of the shard than the leader (as the leader's
// node reports it now, not as it last published), or did not answer.
func TestCollectGroupsNamesReplicasBehind(t *testing.T) {
	voters := []string{"node1", "node2", "node3"}
	statuses := []*pb.StatusResponse{
		{NodeId: "node1", Shards: []*pb.ShardStatus{
			{Shard: 0, Voters: voters, Applied: 5}, // published long ago
			{Shard: 1, Voters: voters, Applied: 7},
			{Shard: 2, Voters: voters, Applied: 9},
		}, Applied: []*pb.ReplicaApplied{{Shard: 0, Index: 20}, {Shard: 1, Index: 7}, {Shard: 2, Index: 9}}},
		{NodeId: "node2", Applied: []*pb.ReplicaApplied{{Shard: 0, Index: 20}, {Shard: 1, Index: 7}, {Shard: 2, Index: 9}}},
		{NodeId: "node3", Applied: []*pb.ReplicaApplied{{Shard: 0, Index: 12}, {Shard: 1, Index: 7}}},
	}
	groups, _, _ := collectGroups(map[int]string{0: "node1", 1: "node1", 2: "node1"}, statuses)
	for s, want := range []string{"node3", "", "node3"} {
		if got := strings.Join(groups[s].Behind, ","); got != want {
			t.Errorf("shard %d: behind %q, want %q", s, got, want)
		}
	}
	if groups[0].Applied != 20 {
		t.Errorf("shard 0's applied %d, want the leader's 20 of now", groups[0].Applied)
	}
	statuses[2] = nil // node3 does not answer
	groups, _, _ = collectGroups(map[int]string{0: "node1", 1: "node1", 2: "node1"}, statuses)
	if got := strings.Join(groups[1].Behind, ","); got != "node3" {
		t.Errorf("shard 1 with node3 silent: behind %q, want node3", got)
	}
}

func TestWriteClusterText(t *testing.T) {
	held := uint32(12)
	v := clusterView{Router: "router1", Partitions: cluster.Partitions,
		Shards: map[int]string{0: "node1"}, Leaders: map[int]string{0: "node1"},
		Members: []memberView{
			{ID: "node1", Role: cluster.RoleNode, Addr: "127.0.0.1:9101", Alive: true, Replicas: &held, RingWants: 12},
			{ID: "node2", Role: cluster.RoleNode, Addr: "127.0.0.1:9102", Leaving: true, Left: true},
			{ID: "router1", Role: cluster.RoleRouter, Addr: "127.0.0.1:8080", Alive: true},
		},
		Nodes: []nodeView{{ID: "node1", Ready: true}, {ID: "node2", Error: "left"}},
	}
	v.Groups, v.MovesInFlight, v.GroupsReported = collectGroups(v.Leaders, []*pb.StatusResponse{{NodeId: "node1",
		Shards: []*pb.ShardStatus{{Shard: 0, Voters: []string{"node1", "node2(old)"}, Learners: []string{"node2"}, Want: []string{"node1", "node2"}}}}})
	var buf bytes.Buffer
	writeClusterText(&buf, v)
	out := buf.String()
	// Compare with single spaces: tabwriter's padding is not the point.
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	squeezed := strings.Join(lines, "\n")
	for _, want := range []string{
		"REPLICAS (RING WANTS)",
		"12 (12)",
		"node2 node 127.0.0.1:9102 left 0 (0) of 64 0 (0)",
		"0 node1 node1,node2(old) node2 node1,node2 moving",
		"1 ? ? ? ? (no leader answered)",
		"SHARD LEADER VOTERS LEARNERS RING WANTS MOVE",
		"node1,node2(old)",
		"(no leader answered)",
		"moves in flight: 1 of 64 shards",
		"leaders answered for 1 of 64 shards",
		"(node2: left)",
	} {
		if !strings.Contains(squeezed, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n > 80 {
		t.Errorf("text has %d lines; one per shard plus a few is expected", n)
	}
	// The JSON form keeps the fields test/ and internal/ read.
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]json.RawMessage
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"members", "shards", "leaders", "nodes", "groups", "moves_in_flight", "groups_reported"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
}
