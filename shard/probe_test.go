package shard

import (
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A leader tells a prober it was removed only when its applied state
// proves it: a removal it cannot prove deletes a log the group may still
// count.
func TestRemovedForCertain(t *testing.T) {
	confChange := &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Index: proto.Uint64(6), Term: proto.Uint64(2)}
	normal := &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(6), Term: proto.Uint64(2)}
	const founder = maxCounterID + 77 // a node-incarnation id
	for _, tc := range []struct {
		name      string
		id        uint64
		removed   []uint64
		unapplied *raftpb.Entry
		want      bool
	}{
		{"a counter id given out, no longer a member", 3, nil, nil, true},
		{"a removed id the group remembers", founder + 1, []uint64{founder + 1}, nil, true},
		{"an unapplied entry that is no configuration change", 3, nil, normal, true},
		{"a voter", 1, nil, nil, false},
		{"a learner", 4, nil, nil, false},
		{"the counter's next id", 5, nil, nil, false},
		{"an id past the counter", 9, nil, nil, false},
		{"a node-incarnation id the group does not remember", founder + 1, nil, nil, false},
		{"no id", 0, nil, nil, false},
		{"an unapplied configuration change", 3, nil, confChange, false},
		{"a remembered id, with a configuration change unapplied", founder + 1, []uint64{founder + 1}, confChange, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := raft.NewMemoryStorage()
			if err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(5), Term: proto.Uint64(2)}}); err != nil {
				t.Fatal(err)
			}
			if tc.unapplied != nil {
				if err := ms.Append([]*raftpb.Entry{tc.unapplied}); err != nil {
					t.Fatal(err)
				}
			}
			g := &group{ms: ms, applied: 5, nextID: 5, removedIDs: tc.removed,
				confState: &raftpb.ConfState{Voters: []uint64{1, 2, founder}, Learners: []uint64{4}}}
			if got := g.removedForCertain(tc.id); got != tc.want {
				t.Fatalf("removedForCertain(%d) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}
