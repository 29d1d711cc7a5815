package shard

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

// A removal notice from a node that is not a member of the shard's group
// must not delete a replica that leads it: the acknowledged write and the
// Raft state stay, and the node keeps serving the shard.
func TestRemovalNoticeFromNonMemberDeletesNothing(t *testing.T) {
	h, served, _ := startSolo(t, "127.0.0.1:1")
	object := objectIn(served)
	if err := roundTrip(t, h, served, object, "k", "acknowledged"); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(&pb.RaftBatch{FromNode: "n2", Removals: []*pb.Removal{
		{Shard: uint32(served), Replica: h.raftID, Term: 1 << 40}}}); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(t, h, served, object, "k2", "after"); err != nil {
		t.Fatalf("shard %d stopped serving after a stranger's removal notice: %v (%+v)", served, err, h.Status(served))
	}
	v, found, err := h.cfg.Store.Get(object, []byte("k"))
	if err != nil || !found || string(v) != "acknowledged" {
		t.Fatalf("acknowledged key after the notice: %q found=%v err=%v", v, found, err)
	}
}

// A snapshot whose sender is not one of the authenticated node's own
// replicas is refused, like any other Raft message, and installs nothing.
func TestSnapshotFromForeignReplicaRefused(t *testing.T) {
	h, served, peer := startSolo(t, "127.0.0.1:1")
	object := objectIn(served)
	if err := roundTrip(t, h, served, object, "k", "acknowledged"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		from uint64
		conf []uint64
		term uint64
	}{
		{"from a replica not of n2", 12345, []uint64{h.raftID}, 1 << 40},
		{"conf without the receiver", peer, []uint64{peer}, 1 << 40},
		{"snapshot term past the message's", peer, []uint64{h.raftID}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := proto.Uint64
			m := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: u(h.raftID), From: u(tc.from), Term: u(tc.term),
				Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: u(1 << 30), Term: u(1 << 40),
					ConfState: &raftpb.ConfState{Voters: tc.conf}}}}
			if err := stepSnapshot(t, h, served, m); err == nil {
				t.Errorf("the snapshot was taken")
			}
			if err := roundTrip(t, h, served, object, "k2", "after"); err != nil {
				t.Fatalf("shard %d stopped serving after the snapshot: %v (%+v)", served, err, h.Status(served))
			}
			v, found, err := h.cfg.Store.Get(object, []byte("k"))
			if err != nil || !found || string(v) != "acknowledged" {
				t.Fatalf("acknowledged key after the snapshot: %q found=%v err=%v", v, found, err)
			}
		})
	}
}

// batchSink is a peer's replication endpoint that records what it is sent.
type batchSink struct {
	pb.UnimplementedReplicationServer
	mu   sync.Mutex
	msgs []*raftpb.Message
}

func (s *batchSink) Raft(stream pb.Replication_RaftServer) error {
	for {
		b, err := stream.Recv()
		if err != nil {
			return nil
		}
		for _, env := range b.Messages {
			m := &raftpb.Message{}
			if proto.Unmarshal(env.Message, m) == nil {
				s.mu.Lock()
				s.msgs = append(s.msgs, m)
				s.mu.Unlock()
			}
		}
	}
}

func (s *batchSink) find(match func(*raftpb.Message) bool) *raftpb.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		if match(m) {
			return m
		}
	}
	return nil
}

func listenSink(t *testing.T) (*batchSink, string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sink := &batchSink{}
	pb.RegisterReplicationServer(srv, sink)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return sink, lis.Addr().String()
}

// A leader that believes this replica holds more than it does (its log
// was lost) commits past its last index in heartbeats. The replica must
// answer, so the leader probes back and sends it a snapshot, instead of
// dropping every heartbeat and wedging the catch-up.
func TestHeartbeatPastLogIsAnswered(t *testing.T) {
	sink, addr := listenSink(t)
	h, served, peer := startSolo(t, addr)
	shard := (served + 1) % 64 // n1 holds no replica of it yet
	for h.Status(shard).Serving || len(h.Status(shard).Voters) > 0 {
		shard = (shard + 1) % 64
	}
	u := proto.Uint64
	send := func(m *raftpb.Message) {
		b, _ := proto.Marshal(m)
		if err := h.Handle(&pb.RaftBatch{FromNode: "n2", Messages: []*pb.RaftEnvelope{{Shard: uint32(shard), Message: b}}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var resp *raftpb.Message
	for resp == nil && time.Now().Before(deadline) {
		send(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: u(h.raftID), From: u(peer), Term: u(5), Commit: u(5722)})
		time.Sleep(20 * time.Millisecond)
		resp = sink.find(func(m *raftpb.Message) bool { return m.GetType() == raftpb.MsgHeartbeatResp })
	}
	if resp == nil {
		t.Fatalf("no heartbeat response to a leader that commits past our log")
	}
	// The leader then probes at its idea of our match: we reject with our
	// real last index, which sends the leader to a snapshot.
	send(&raftpb.Message{Type: raftpb.MsgApp.Enum(), To: u(h.raftID), From: u(peer), Term: u(5), Index: u(5722), LogTerm: u(5), Commit: u(5722)})
	waitFor(t, 10*time.Second, "a rejection of the probe", func() bool {
		return sink.find(func(m *raftpb.Message) bool {
			return m.GetType() == raftpb.MsgAppResp && m.GetReject() && m.GetRejectHint() == 0
		}) != nil
	})
}

// A learner that stops hearing from any leader is not dropped on its own:
// its group may have promoted it while it was cut off (a promotion commits
// on the old voters), and then it counts toward the group's quorum. A
// netlab nemesis run (seed 8) saw a deaf learner drop itself that way and
// its shard lose its quorum for good later. It probes the members it
// knows instead, and goes once one of them says its group removed it.
func TestSilentLearnerAsksItsGroup(t *testing.T) {
	sink, addr := listenSink(t)
	h, served, peer := startSolo(t, addr)
	shard := (served + 1) % 64
	for len(h.Status(shard).Voters) > 0 {
		shard = (shard + 1) % 64
	}
	before := h.Replicas()
	u := proto.Uint64
	m := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: u(h.raftID), From: u(peer), Term: u(3),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: u(10), Term: u(3),
			ConfState: &raftpb.ConfState{Voters: []uint64{peer}, Learners: []uint64{h.raftID}}}}}
	if err := stepSnapshot(t, h, shard, m); err != nil {
		t.Fatalf("snapshot refused: %v", err)
	}
	waitFor(t, 10*time.Second, "the learner to install its snapshot", func() bool {
		st := h.Status(shard)
		return st.Applied == 10 && len(st.Learners) == 1
	})
	// n2 says nothing more. Past orphanTicks of silence the learner probes
	// n2, and stays.
	waitFor(t, 30*time.Second, "the silent learner to probe its group", func() bool {
		return sink.find(func(m *raftpb.Message) bool {
			return m.GetType() == raftpb.MsgHeartbeatResp && m.GetFrom() == h.raftID && m.GetTo() == peer
		}) != nil
	})
	if h.Replicas() != before+1 {
		t.Fatalf("%d replicas after the probe, want the learner kept (%d)", h.Replicas(), before+1)
	}
	// n2's group removed it: n2 says so, and the learner goes.
	if err := h.Handle(&pb.RaftBatch{FromNode: "n2", Removals: []*pb.Removal{{Shard: uint32(shard), Replica: h.raftID, Term: 3}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the learner to go once its group said it removed it", func() bool { return h.Replicas() == before })
}

// A read is confirmed on the shard a replica leads, and refused on one it
// does not.
func TestConfirmLeader(t *testing.T) {
	h, served, _ := startSolo(t, "127.0.0.1:1")
	confirm := func(shard int) error {
		done := make(chan error, 1)
		h.ConfirmLeader(shard, func(err error) { done <- err })
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer to a read of shard %d", shard)
		}
		return nil
	}
	if err := confirm(served); err != nil {
		t.Fatalf("shard %d, led by n1: %v", served, err)
	}
	other := (served + 1) % 64
	for h.Status(other).Serving {
		other = (other + 1) % 64
	}
	if err := confirm(other); err != ErrNotLeader {
		t.Fatalf("shard %d, not led by n1: %v, want ErrNotLeader", other, err)
	}
}

// stepSnapshot hands h a snapshot of shard from n2, as the snapshot stream
// would once its data (one key) is on disk, and returns the loop's answer.
func stepSnapshot(t *testing.T, h *Host, shard int, m *raftpb.Message) error {
	t.Helper()
	f, err := h.cfg.Store.NewSnapshotFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Add([]byte{'o', byte(shard >> 8), byte(shard), 'k'}, []byte("v")); err != nil {
		t.Fatal(err)
	}
	file, err := f.Finish()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(m)
	in := &incomingSnapshot{shard: shard, msg: b, file: file, from: "n2", done: make(chan error, 1)}
	h.snapIn <- in
	return <-in.done
}

// A node holding a replica its group removed without telling it, whose
// leader then adds the node again under a new id, gives the old replica
// up for the new one; a message for an older id changes nothing. Found by
// the nemesis (seed 51): the old replica blocked the new one for good.
func TestNewerReplicaReplacesRemovedOne(t *testing.T) {
	sink, addr := listenSink(t)
	h, served, peer := startSolo(t, addr)
	shard := (served + 1) % 64
	for len(h.Status(shard).Voters) > 0 {
		shard = (shard + 1) % 64
	}
	u := proto.Uint64
	beat := func(to uint64) {
		b, _ := proto.Marshal(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: u(to), From: u(peer), Term: u(5)})
		if err := h.Handle(&pb.RaftBatch{FromNode: "n2", Messages: []*pb.RaftEnvelope{{Shard: uint32(shard), Message: b, ToIncarnation: "r1"}}}); err != nil {
			t.Fatal(err)
		}
	}
	answered := func(from uint64) bool {
		return sink.find(func(m *raftpb.Message) bool {
			return m.GetType() == raftpb.MsgHeartbeatResp && m.GetFrom() == from
		}) != nil
	}
	// The old replica: a voter of its group as it knows it (so no orphan),
	// under this node's founder id.
	old := h.raftID
	snap := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: u(old), From: u(peer), Term: u(3),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: u(10), Term: u(3),
			ConfState: &raftpb.ConfState{Voters: []uint64{peer, old}}}}}
	if err := stepSnapshot(t, h, shard, snap); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "replica 7 to answer", func() bool { beat(7); return answered(7) })
	beat(old)                                                                   // older than the replica held now: ignored
	if err := roundTrip(t, h, served, objectIn(served), "k", "v"); err != nil { // the loop took it
		t.Fatal(err)
	}
	if ids, err := h.cfg.Store.Tombstones(shard); err != nil || len(ids) != 1 || ids[0] != old {
		t.Fatalf("tombstones of shard %d: %v %v, want [%x]", shard, ids, err, old)
	}
	if self, _, err := h.cfg.Store.ReplicaIdentity(shard); err != nil || self != 7 {
		t.Fatalf("replica id of shard %d: %d %v, want 7", shard, self, err)
	}
}

// A voter its group removed while it was cut off, whose configuration's
// other members have all left since, hears of its removal from none of
// them: its pre-votes reach nobody. It asks the node gossip says leads its
// shard, and takes that node's notice, though it is no member of the
// configuration it knows. A netlab nemesis run (seed 9) saw such a voter
// keep a decommissioned node "leaving" for good.
func TestRemovedVoterAsksTheGossipLeader(t *testing.T) {
	sink, addr := listenSink(t)
	h, served, peer := startSolo(t, "127.0.0.1:1")
	shard := (served + 1) % 64
	for len(h.Status(shard).Voters) > 0 {
		shard = (shard + 1) % 64
	}
	// n3 is up, leads the shard by gossip, and takes Raft traffic at the
	// sink.
	n3, err := cluster.Start(cluster.Config{
		Meta:  cluster.Meta{ID: "n3", Role: cluster.RoleNode, Replica: "r3", GRPC: addr},
		Bind:  "127.0.0.1:0",
		Seeds: []string{h.cfg.Members.(*cluster.Membership).GossipAddr()},
		Timings: cluster.Timings{ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond, SuspicionMult: 2,
			GossipInterval: 50 * time.Millisecond, PushPullInterval: 200 * time.Millisecond, RejoinInterval: time.Hour},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		LogOutput: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n3.Shutdown() })
	n3.SetLeads(1 << uint(shard))
	waitFor(t, 30*time.Second, "gossip to say n3 leads the shard", func() bool {
		l := h.cfg.Members.Placement().Leaders(shard)
		return len(l) == 1 && l[0].ID == "n3"
	})

	// A voter of {n2, n1}, as a snapshot from n2 left it.
	before := h.Replicas()
	u := proto.Uint64
	m := &raftpb.Message{Type: raftpb.MsgSnap.Enum(), To: u(h.raftID), From: u(peer), Term: u(3),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: u(10), Term: u(3),
			ConfState: &raftpb.ConfState{Voters: []uint64{peer, h.raftID}}}}}
	if err := stepSnapshot(t, h, shard, m); err != nil {
		t.Fatalf("snapshot refused: %v", err)
	}
	waitFor(t, 10*time.Second, "the voter to install its snapshot", func() bool { return h.Status(shard).Applied == 10 })

	waitFor(t, 30*time.Second, "the silent voter to probe the gossip leader", func() bool {
		return sink.find(func(m *raftpb.Message) bool {
			return m.GetType() == raftpb.MsgHeartbeatResp && m.GetFrom() == h.raftID && m.GetTo() == 0 && m.GetTerm() == 3
		}) != nil
	})
	// A node that neither is a member nor leads by gossip is not believed.
	if err := h.Handle(&pb.RaftBatch{FromNode: "n4", Removals: []*pb.Removal{{Shard: uint32(shard), Replica: h.raftID, Term: 3}}}); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(t, h, served, objectIn(served), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if h.Replicas() != before+1 {
		t.Fatalf("%d replicas after a stranger's notice, want the voter kept (%d)", h.Replicas(), before+1)
	}
	// The gossip leader is, once the voter has been silent long enough.
	if err := h.Handle(&pb.RaftBatch{FromNode: "n3", Removals: []*pb.Removal{{Shard: uint32(shard), Replica: h.raftID, Term: 3}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the voter to go once the gossip leader said its group removed it", func() bool { return h.Replicas() == before })
}
