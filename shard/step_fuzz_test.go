package shard

import (
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// soloHost is a real Host on a real store and membership: node n1 alone
// leads the shards the ring gives it, and knows of n2 (never started), in
// whose name the fuzz speaks.
func soloHost(f *testing.F) (h *Host, served int, peer uint64) {
	return startSolo(f, "127.0.0.1:1")
}

func message(f *testing.F, m *raftpb.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzStep hands the Raft loop arbitrary messages from an authenticated
// peer (n2) for a shard n1 leads or any other: the loop must neither panic
// nor stop, and keep answering proposals.
func FuzzStep(f *testing.F) {
	h, served, peer := soloHost(f)
	object := ""
	for i := 0; object == ""; i++ {
		if o := fmt.Sprintf("fuzz-%d", i); cluster.Shard(o) == served {
			object = o
		}
	}
	u := proto.Uint64
	typ := func(t raftpb.MessageType) *raftpb.MessageType { return t.Enum() }
	ent := func(i, t uint64) *raftpb.Entry { return &raftpb.Entry{Index: u(i), Term: u(t)} }
	for _, m := range []*raftpb.Message{
		{Type: typ(raftpb.MsgHeartbeat), Term: u(1 << 40), Commit: u(1 << 40)}, // the crash from issue 10
		{Type: typ(raftpb.MsgApp), Term: u(99), Index: u(0), LogTerm: u(0), Entries: []*raftpb.Entry{ent(5, 1), ent(2, 1)}},
		{Type: typ(raftpb.MsgApp), Term: u(99), Index: u(1), LogTerm: u(1), Commit: u(1 << 30), Entries: []*raftpb.Entry{ent(2, 99)}},
		{Type: typ(raftpb.MsgAppResp), Term: u(1), Index: u(1 << 40)},
		{Type: typ(raftpb.MsgAppResp), Term: u(1), Index: u(1), Reject: proto.Bool(true), RejectHint: u(1 << 40)},
		{Type: typ(raftpb.MsgHup)},
		{Type: typ(raftpb.MsgVote), Term: u(1 << 20), Index: u(1 << 40), LogTerm: u(1 << 20)},
		{Type: typ(raftpb.MsgTimeoutNow), Term: u(3)},
		{Type: typ(raftpb.MsgHeartbeat), Term: u(2), Commit: u(0)},
	} {
		f.Add(uint8(served), message(f, m))
		f.Add(uint8(served+1), message(f, m))
	}
	f.Fuzz(func(t *testing.T, shard uint8, data []byte) {
		m := &raftpb.Message{}
		if proto.Unmarshal(data, m) != nil {
			return
		}
		// Past authentication: addressed to us, from the peer's replica.
		m.To, m.From = proto.Uint64(h.raftID), proto.Uint64(peer)
		b, err := proto.Marshal(m)
		if err != nil {
			return
		}
		if err := h.Handle(&pb.RaftBatch{FromNode: "n2", Messages: []*pb.RaftEnvelope{{Shard: uint32(shard) % cluster.Partitions, Message: b}}}); err != nil {
			t.Fatalf("the loop stopped: %v", err)
		}
		// A proposal goes through the same loop: its answer (applied or
		// not leader) says the loop took the message and carries on.
		done := make(chan error, 1)
		h.Propose(served, object, []storage.Op{{Key: []byte("k"), Value: []byte("v")}}, storage.Guards{}, func(err error) { done <- err })
		select {
		case <-done:
		case <-h.Done():
			t.Fatal("the Raft loop stopped")
		case <-time.After(3 * time.Second):
			t.Fatalf("the Raft loop did not answer a proposal within 3 s; shard %d: %+v", served, h.Status(served))
		}
	})
}
