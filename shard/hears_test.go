package shard

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// A silent replica's own traffic reaches only some nodes: its votes go to
// the voters it knows, and a learner probes every member. Any other node,
// a learner of a voter's configuration included, must be probed: a
// nemesis run (seed 22) saw a voter removed while it was down keep its
// replica for good, as the only node still in its configuration was the
// shard's new leader, which it knew as a learner and never asked.
func TestSilentReplicaProbesWhoHearsNothingFromIt(t *testing.T) {
	h := &Host{}
	heard := map[uint64]string{1: "self", 2: "n2", 3: "n3"}
	voter := &group{id: 1, heard: heard, confState: &raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}}}
	learner := &group{id: 1, heard: heard, confState: &raftpb.ConfState{Voters: []uint64{2}, Learners: []uint64{1, 3}}}
	for _, tc := range []struct {
		name string
		g    *group
		node string
		want bool
	}{
		{"a voter, by a voter it knows", voter, "n2", true},
		{"a voter, by a learner it knows", voter, "n3", false},
		{"a voter, by a stranger", voter, "n4", false},
		{"a learner, by a voter", learner, "n2", true},
		{"a learner, by another learner", learner, "n3", true},
		{"a learner, by a stranger", learner, "n4", false},
	} {
		if got := h.hearsFrom(tc.g, tc.node); got != tc.want {
			t.Errorf("%s: hearsFrom %v, want %v", tc.name, got, tc.want)
		}
	}
}
