package test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tc "hellochat/internal/testcluster"
	"hellochat/storage"
)

// writer sends messages into a room from one v2 client and records acks.
type writer struct {
	cl    *tc.Client
	name  string
	mu    sync.Mutex
	acked map[string]uint64 // id -> seq
	sent  int
}

func newWriter(t *testing.T, c *tc.Cluster, room, name string) *writer {
	w := &writer{cl: tc.Dial(t, c.URL(), room, name, true), name: name, acked: map[string]uint64{}}
	w.cl.Expect(wait, "history", tc.IsType("history"))
	return w
}

// post sends one message; acks are collected by collect.
func (w *writer) post() {
	w.sent++
	id := fmt.Sprintf("%s-%d", w.name, w.sent)
	w.cl.Post(id, "text of "+id)
}

// collect reads frames until every sent message is acked (or timeout),
// checking the seqs of the chat messages it was shown (in order) and
// appending their ids to seen.
func (w *writer) collect(t *testing.T, timeout time.Duration, seen *[]string) {
	t.Helper()
	if err := w.await(timeout, seen); err != nil {
		t.Fatal(err)
	}
}

// await is collect returning what went wrong, for goroutines other than
// the test's.
func (w *writer) await(timeout time.Duration, seen *[]string) error {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		done := len(w.acked) == w.sent
		w.mu.Unlock()
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d messages acked after %v", w.name, len(w.acked), w.sent, timeout)
		}
		select {
		case f := <-w.cl.Frames:
			switch f.Type {
			case "ack":
				w.mu.Lock()
				w.acked[f.ID] = f.Seq
				w.mu.Unlock()
			case "message":
				if seen != nil {
					if want := uint64(len(*seen) + 1); f.Seq != want {
						return fmt.Errorf("%s: got seq %d, want %d", w.name, f.Seq, want)
					}
					*seen = append(*seen, f.ID)
				}
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// checkRoom verifies every ack against the room's history (each acked id
// present once, at its acked seq) and returns the history.
func checkRoom(t *testing.T, c *tc.Cluster, room string, writers ...*writer) []string {
	t.Helper()
	hist := history(t, c, room)
	at := map[string]int{}
	for i, h := range hist {
		id, _, _ := bytes.Cut([]byte(h), []byte("|"))
		if _, dup := at[string(id)]; dup {
			t.Fatalf("message %s stored twice", id)
		}
		at[string(id)] = i + 1
	}
	for _, w := range writers {
		for id, seq := range w.acked {
			if at[id] != int(seq) {
				t.Fatalf("%s acked as seq %d, history has it at %d", id, seq, at[id])
			}
		}
	}
	return hist
}

// checkReplicas stops the cluster and compares every node's stored room.
func checkReplicas(t *testing.T, c *tc.Cluster, rooms ...string) {
	t.Helper()
	c.Close()
	reps, err := c.Replicas(rooms)
	if err != nil {
		t.Fatal(err)
	}
	for room, perNode := range reps {
		for i := 1; i < len(perNode); i++ {
			if !sameKVs(perNode[0], perNode[i]) {
				t.Fatalf("room %s: node1 holds %d messages, node%d holds %d or different ones", room, len(perNode[0]), i+1, len(perNode[i]))
			}
		}
	}
}

func sameKVs(a, b []storage.KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// TestLeaderKilledUnderLoad kills the leader abruptly while clients send:
// every acknowledged message is there exactly once, every client saw the
// same order, history equals it, and the replicas agree after the heal.
func TestLeaderKilledUnderLoad(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000})
	room := "killed-under-load"
	leader := c.Leader(room)
	var ws []*writer
	for i := 0; i < 4; i++ {
		ws = append(ws, newWriter(t, c, room, fmt.Sprintf("w%d", i)))
	}
	seen := make([][]string, len(ws))
	for round := 0; round < 6; round++ {
		if round == 3 {
			c.Kill(leader)
		}
		for _, w := range ws {
			for j := 0; j < 25; j++ {
				w.post()
			}
		}
		for i, w := range ws {
			w.collect(t, 20*time.Second, &seen[i])
		}
	}
	for i, w := range ws {
		// Drain the messages of the others still on their way.
		for len(seen[i]) < 600 {
			f := w.cl.Expect(wait, "message", tc.IsMessage)
			if want := uint64(len(seen[i]) + 1); f.Seq != want {
				t.Fatalf("%s: got seq %d, want %d", w.name, f.Seq, want)
			}
			seen[i] = append(seen[i], f.ID)
		}
		if fmt.Sprint(seen[i]) != fmt.Sprint(seen[0]) {
			t.Fatalf("%s saw a different order than %s", w.name, ws[0].name)
		}
	}
	if hist := checkRoom(t, c, room, ws...); len(hist) != 600 {
		t.Fatalf("history holds %d messages, want 600", len(hist))
	}
	c.Start(leader)
	c.WaitConverged(wait)
	c.WaitLeaders(wait)
	checkReplicas(t, c, room)
}

// cuttable restarts node i so that its Raft traffic can be cut off (both
// directions; gossip and routers still reach it) while the result is set.
func cuttable(c *tc.Cluster, i int) *atomic.Bool { return cuttableWith(c, i, 0) }

// cuttableWith is cuttable with node i's election timeout set to
// electionTicks (0: the cluster's).
func cuttableWith(c *tc.Cluster, i, electionTicks int) *atomic.Bool {
	var cut atomic.Bool
	c.SetRaftDrop(i, func(string) bool { return cut.Load() })
	if electionTicks > 0 {
		c.SetElectionTicks(i, electionTicks)
	}
	c.Stop(i)
	c.Start(i)
	c.WaitConverged(wait)
	c.WaitLeaders(wait)
	return &cut
}

// TestCutOffLeaderStopsServing cuts the leader off from its peers (its Raft
// transport drops everything, gossip still works): it cannot commit and
// stops serving, the majority elects a leader and carries on, and after the
// heal the old leader catches up and agrees.
func TestCutOffLeaderStopsServing(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000})
	room := "cut-off"
	leader := c.Leader(room)
	cut := cuttable(c, leader)
	if c.Leader(room) != leader {
		t.Fatalf("leadership did not return to node%d after its restart", leader+1)
	}

	w := newWriter(t, c, room, "w")
	for i := 0; i < 20; i++ {
		w.post()
	}
	w.collect(t, wait, nil)

	cut.Store(true)
	cutAt := time.Now()
	tc.Eventually(t, wait, func() error {
		if c.Nodes[leader].Serves(c.Room(room).Object) {
			return fmt.Errorf("the cut-off leader still serves %s", room)
		}
		return nil
	})
	t.Logf("cut-off leader stopped serving after %v", time.Since(cutAt).Round(time.Millisecond))
	newLeader := c.Leader(room)
	if newLeader == leader {
		t.Fatal("the cut-off node leads again")
	}
	for i := 0; i < 20; i++ {
		w.post()
	}
	w.collect(t, 20*time.Second, nil)
	if w.cl.Closed() {
		t.Fatal("browser disconnected")
	}

	cut.Store(false)
	c.WaitLeaders(20 * time.Second)
	for i := 0; i < 20; i++ {
		w.post()
	}
	w.collect(t, 20*time.Second, nil)
	if hist := checkRoom(t, c, room, w); len(hist) != 60 {
		t.Fatalf("history holds %d messages, want 60", len(hist))
	}
	checkReplicas(t, c, room)
}

// TestRestartWithStaleLog stops a node, writes on, and restarts it: it
// catches up from the leaders' logs.
func TestRestartWithStaleLog(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000})
	room := "stale-log"
	follower := (c.Leader(room) + 1) % 3
	w := newWriter(t, c, room, "w")
	for i := 0; i < 50; i++ {
		w.post()
	}
	w.collect(t, wait, nil)
	c.Kill(follower)
	for i := 0; i < 300; i++ {
		w.post()
	}
	w.collect(t, 20*time.Second, nil)
	c.Start(follower)
	c.WaitConverged(wait)
	c.WaitLeaders(20 * time.Second)
	checkRoom(t, c, room, w)
	checkReplicas(t, c, room)
}

// TestRestartAfterPeersTruncated stops a node while the others write far
// enough to snapshot and truncate their logs: the restarted node can only
// catch up from a snapshot, and then agrees with them.
func TestRestartAfterPeersTruncated(t *testing.T) {
	const snapshotEvery = 40
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000, SnapshotEvery: snapshotEvery, KeepEntries: 10})
	room := "truncated"
	follower := (c.Leader(room) + 1) % 3
	w := newWriter(t, c, room, "w")
	w.post()
	w.collect(t, wait, nil)
	c.Kill(follower)
	// One message at a time: each is its own log entry, so the log grows
	// past SnapshotEvery+KeepEntries and gets truncated.
	for i := 0; i < 150; i++ {
		w.post()
		w.collect(t, wait, nil)
	}
	c.Start(follower)
	c.WaitConverged(wait)
	c.WaitLeaders(20 * time.Second)
	checkRoom(t, c, room, w)
	shard := c.Shard(room)
	// The snapshot streams in the background: wait until the restarted
	// replica has applied past what its peers truncated, which only a
	// snapshot can bring it.
	tc.Eventually(t, 20*time.Second, func() error {
		st, ok := c.Nodes[follower].ShardStatus(shard)
		if !ok || st.Applied < snapshotEvery {
			return fmt.Errorf("restarted replica of shard %d has applied %d", shard, st.Applied)
		}
		return nil
	})
	c.Close()
	st, err := storage.OpenStore(c.Config(follower).DataDir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	rs, _, err := st.LoadRaft(shard)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if rs.Snap.GetIndex() <= 1 {
		t.Fatalf("the restarted node's shard %d never got a snapshot (snapshot index %d)", shard, rs.Snap.GetIndex())
	}
	checkReplicas(t, c, room)
}

// TestLogsKeepOnlyWhatAReplicaLacks: with every replica up, each one
// truncates its shard's log to a short trail behind what it applied, long
// before the bound kept for lagging followers; while a follower is down
// the leader keeps what it lacks, so it catches up from the log and no
// snapshot is sent.
func TestLogsKeepOnlyWhatAReplicaLacks(t *testing.T) {
	const every, trail, keep = 10, 5, 400
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000, SnapshotEvery: every, TrailEntries: trail, KeepEntries: keep})
	room := "trail"
	shard := c.Shard(room)
	w := newWriter(t, c, room, "w")
	// One message at a time: each is its own log entry.
	write := func(n int) {
		for i := 0; i < n; i++ {
			w.post()
			w.collect(t, wait, nil)
		}
	}
	// logLen is how many applied entries node i's replica still holds.
	logLen := func(i int) (uint64, error) {
		applied, compacted, ok := c.Nodes[i].ShardLog(shard)
		if !ok || applied == 0 {
			return 0, fmt.Errorf("node %d holds no replica of shard %d", i, shard)
		}
		return applied - compacted, nil
	}
	short := func(nodes ...int) func() error {
		return func() error {
			for _, i := range nodes {
				n, err := logLen(i)
				if err != nil {
					return err
				}
				if n > trail+every {
					return fmt.Errorf("node %d's log of shard %d holds %d applied entries, want at most %d", i, shard, n, trail+every)
				}
			}
			return nil
		}
	}
	write(60)
	tc.Eventually(t, wait, short(0, 1, 2))

	leader := c.Leader(room)
	follower, other := (leader+1)%3, (leader+2)%3
	c.Kill(follower)
	write(60)
	if n, err := logLen(leader); err != nil || n < 60 {
		t.Fatalf("with a follower down the leader's log holds %d entries (%v), want the 60 it lacks", n, err)
	}
	tc.Eventually(t, wait, short(other))
	sent := scrape(t, c.Nodes[leader].AdminAddr())["hellochat_raft_snapshots_sent_total"]
	c.Start(follower)
	c.WaitConverged(wait)
	tc.Eventually(t, 20*time.Second, func() error {
		lead, _, _ := c.Nodes[leader].ShardLog(shard)
		got, _, _ := c.Nodes[follower].ShardLog(shard)
		if got < lead {
			return fmt.Errorf("restarted replica of shard %d applied %d of %d", shard, got, lead)
		}
		return nil
	})
	if now := scrape(t, c.Nodes[leader].AdminAddr())["hellochat_raft_snapshots_sent_total"]; now != sent {
		t.Fatalf("the leader sent %v snapshots to a follower its log could catch up", now-sent)
	}
	// Caught up, the follower no longer holds the leader's log back.
	write(2 * every)
	tc.Eventually(t, wait, short(0, 1, 2))
	checkRoom(t, c, room, w)
	checkReplicas(t, c, room)
}
