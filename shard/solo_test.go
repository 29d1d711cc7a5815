package shard

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"hellochat/cluster"
	"hellochat/storage"
)

// startSolo starts a real Host on a real store and membership: node n1
// alone leads the shards the ring gives it (one replica per shard), and
// knows of n2 at peerGRPC, which tests speak for or listen as. It returns
// a shard n1 serves and n2's Raft id.
func startSolo(tb testing.TB, peerGRPC string) (h *Host, served int, peer uint64) {
	tb.Helper()
	st, err := storage.OpenStore(tb.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	n2 := cluster.Meta{ID: "n2", Role: cluster.RoleNode, Replica: "r2", GRPC: peerGRPC}
	members, err := cluster.Start(cluster.Config{
		Meta:  cluster.Meta{ID: "n1", Role: cluster.RoleNode, Replica: "r1", GRPC: "127.0.0.1:2"},
		Bind:  "127.0.0.1:0",
		Known: []cluster.Meta{n2},
		Timings: cluster.Timings{ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond, SuspicionMult: 2,
			GossipInterval: 200 * time.Millisecond, PushPullInterval: time.Second, RejoinInterval: time.Hour},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { members.Shutdown() })
	waitFor(tb, 10*time.Second, "the membership to place n1 and n2", func() bool { return len(members.Placement().Nodes()) == 2 })
	h, err = Start(Config{NodeID: "n1", Replica: "r1", Store: st, Members: members, Bootstrap: true, Replicas: 1,
		Tick: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Stop)
	p := members.Placement()
	served = -1
	for s := 0; s < cluster.Partitions && served < 0; s++ {
		if r, err := p.Replicas(s, 1); err == nil && r[0].ID == "n1" {
			served = s
		}
	}
	waitFor(tb, 10*time.Second, "n1 to lead its shard", func() bool { ok, _ := h.Serving(served); return ok })
	return h, served, n2.RaftID()
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// roundTrip proposes a write to object on shard and waits for its answer:
// the loop handles its inputs in order of arrival rounds, so once it
// answers, every batch handed to it before has been stepped.
func roundTrip(tb testing.TB, h *Host, shard int, object string, key, value string) error {
	tb.Helper()
	done := make(chan error, 1)
	h.Propose(shard, object, []storage.Op{{Key: []byte(key), Value: []byte(value)}}, storage.Guards{}, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-h.Done():
		tb.Fatal("the Raft loop stopped")
	case <-time.After(10 * time.Second):
		tb.Fatalf("no answer to a proposal on shard %d within 10 s: %+v", shard, h.Status(shard))
	}
	return nil
}

// objectIn is an object name that the placement puts on shard.
func objectIn(shard int) string {
	for i := 0; ; i++ {
		if o := "obj-" + strconv.Itoa(i); cluster.Shard(o) == shard {
			return o
		}
	}
}
