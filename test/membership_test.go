package test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hellochat/cluster"
	tc "hellochat/internal/testcluster"
	"hellochat/objectnode"
	"hellochat/security"
	"hellochat/storage"
)

// load keeps v2 writers posting into rooms, in rounds (a few messages per
// writer, all acked before the next), from its own goroutine while a test
// changes the cluster.
type load struct {
	writers []*writer
	stop    chan struct{}
	done    chan struct{}
	err     error
	rounds  atomic.Int64
}

func startLoad(t *testing.T, c *tc.Cluster, rooms []string, perRoom int) *load {
	l := &load{}
	for _, room := range rooms {
		for j := 0; j < perRoom; j++ {
			l.writers = append(l.writers, newWriter(t, c, room, fmt.Sprintf("%s-w%d", room, j)))
		}
	}
	return l
}

// round posts n messages per writer and waits for their acks.
func (l *load) round(n int) error {
	for _, w := range l.writers {
		for j := 0; j < n; j++ {
			w.post()
		}
	}
	for _, w := range l.writers {
		if err := w.await(30*time.Second, nil); err != nil {
			return err
		}
		if w.cl.Closed() {
			return fmt.Errorf("%s was disconnected", w.name)
		}
	}
	l.rounds.Add(1)
	return nil
}

// run starts posting rounds in the background until halt.
func (l *load) run() {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			if l.err = l.round(5); l.err != nil {
				return
			}
		}
	}()
}

// halt stops the background rounds and fails the test if one failed.
func (l *load) halt(t *testing.T) {
	t.Helper()
	close(l.stop)
	<-l.done
	if l.err != nil {
		t.Fatal(l.err)
	}
}

// check verifies every writer's acks against its room's history.
func (l *load) check(t *testing.T, c *tc.Cluster) {
	t.Helper()
	byRoom := map[string][]*writer{}
	for _, w := range l.writers {
		room := strings.SplitN(w.name, "-w", 2)[0]
		byRoom[room] = append(byRoom[room], w)
	}
	for room, ws := range byRoom {
		want := 0
		for _, w := range ws {
			want += w.sent
		}
		if hist := checkRoom(t, c, room, ws...); len(hist) != want {
			t.Fatalf("room %s: history holds %d messages, %d were acked", room, len(hist), want)
		}
	}
}

// checkHolders stops the cluster and checks, per room, that exactly the
// ring's replicas hold its shard and that they hold the same messages.
func checkHolders(t *testing.T, c *tc.Cluster, rooms []string) {
	t.Helper()
	p := c.Router.Members().Placement()
	c.Close()
	for _, room := range rooms {
		s := c.Shard(room)
		reps, _ := p.Replicas(s, 3)
		want := map[string]bool{}
		for _, r := range reps {
			want[r.ID] = true
		}
		var first []storage.KV
		firstID := ""
		for i := range c.Nodes {
			cfg := c.Config(i)
			st, err := storage.OpenStore(cfg.DataDir, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			_, found, err := st.LoadRaft(s)
			rs := c.Room(room)
			kvs, err2 := st.List(rs.Object, rs.MsgStart, rs.MsgEnd, 0, false)
			st.Close()
			if err != nil || err2 != nil {
				t.Fatal(err, err2)
			}
			if found != want[cfg.ID] {
				t.Fatalf("room %s (shard %d): %s holds a replica: %v, ring replicas %v", room, s, cfg.ID, found, reps)
			}
			if !found {
				if len(kvs) > 0 {
					t.Fatalf("room %s: %s kept %d messages after its replica was removed", room, cfg.ID, len(kvs))
				}
				continue
			}
			if firstID == "" {
				first, firstID = kvs, cfg.ID
			} else if !sameKVs(first, kvs) {
				t.Fatalf("room %s: %s holds %d messages, %s holds %d or different ones", room, firstID, len(first), cfg.ID, len(kvs))
			}
		}
	}
}

// TestGrowAndShrinkUnderLoad grows a cluster from three nodes to five and
// shrinks it back to three (decommissioning two of the founders) while
// clients write: nothing acknowledged is lost or duplicated, nobody is
// disconnected, every shard ends with its ring's replicas as voters, and
// exactly those replicas hold its data.
func TestGrowAndShrinkUnderLoad(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000, MaxMoves: 8})
	rooms := []string{"grow-a", "grow-b", "grow-c", "grow-d"}
	l := startLoad(t, c, rooms, 2)
	l.run()
	start := time.Now()
	for k := 0; k < 2; k++ {
		c.AddNode()
		c.WaitConverged(wait)
		c.WaitPlaced(60 * time.Second)
	}
	t.Logf("grown to five nodes in %v, %d rounds", time.Since(start).Round(time.Millisecond), l.rounds.Load())
	start = time.Now()
	for _, i := range []int{0, 1} {
		c.Decommission(i, 60*time.Second)
		c.WaitPlaced(60 * time.Second)
	}
	t.Logf("shrunk to three nodes in %v, %d rounds", time.Since(start).Round(time.Millisecond), l.rounds.Load())
	l.halt(t)
	l.check(t, c)
	checkHolders(t, c, rooms)
}

// TestAmnesiaKeepsCommittedMessage is the case a node that lost its disk
// must not break: B is cut off, X commits on A and C, A is killed, C's disk
// is wiped and C restarts, B heals. Were C to come back as the replica it
// was, B and C could elect a leader without X. As a new replica it cannot
// vote until a leader adds it, so X survives: once A is back, it is in
// history, and C ends up a voter again with the same data.
func TestAmnesiaKeepsCommittedMessage(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000})
	room := "amnesia"
	a := c.Leader(room)
	b, cc := (a+1)%3, (a+2)%3
	cut := cuttable(c, b)

	w := newWriter(t, c, room, "w")
	w.post()
	w.collect(t, wait, nil)
	cut.Store(true)
	w.post() // X: committed on A and C only
	w.collect(t, wait, nil)

	c.Kill(a)
	c.Kill(cc)
	c.Wipe(cc)
	c.Start(cc)
	cut.Store(false)
	c.WaitConverged(wait)
	// B and the new C must not form a quorum of the old group: nobody
	// serves the room until A is back.
	if i := servingIndex(c, room); i >= 0 {
		t.Fatalf("node%d serves %s with A down and C wiped", i+1, room)
	}
	c.Start(a)
	c.WaitConverged(wait)
	c.WaitPlaced(60 * time.Second)
	r := newWriter(t, c, room, "reader")
	r.post()
	r.collect(t, wait, nil)
	hist := checkRoom(t, c, room, w, r)
	if len(hist) != 3 {
		t.Fatalf("history holds %d messages, want 3 (X lost?): %v", len(hist), hist)
	}
	checkHolders(t, c, []string{room})
}

func servingIndex(c *tc.Cluster, room string) int {
	for i, n := range c.Nodes {
		if n != nil && n.Serves(c.Room(room).Object) {
			return i
		}
	}
	return -1
}

// TestRestartAfterRingChange stops a node, grows the cluster while it is
// down (some of its replicas move to the new node and are removed from its
// group), then restarts it: it keeps every group it is still a voter of,
// drops the ones it was removed from, and bootstraps nothing.
func TestRestartAfterRingChange(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000, MaxMoves: 8})
	rooms := []string{"ring-a", "ring-b", "ring-c", "ring-d", "ring-e"}
	l := startLoad(t, c, rooms, 1)
	l.run()
	c.Stop(2)
	c.AddNode()
	// node3 is down, so the shards the ring still places on it keep it as
	// a voter; the others move to node4 without it.
	tc.Eventually(t, 60*time.Second, func() error {
		err := c.Placed()
		if err != nil && !strings.Contains(err.Error(), "learners [node3]") {
			return err
		}
		return nil
	})
	c.Start(2)
	c.WaitConverged(wait)
	c.WaitPlaced(60 * time.Second)
	l.halt(t)
	p := c.Router.Members().Placement()
	want := 0
	for s := 0; s < cluster.Partitions; s++ {
		reps, _ := p.Replicas(s, 3)
		for _, r := range reps {
			if r.ID == "node3" {
				want++
			}
		}
	}
	tc.Eventually(t, 30*time.Second, func() error {
		if got := c.Nodes[2].Replicas(); got != want {
			return fmt.Errorf("node3 holds %d replicas, the ring places %d on it", got, want)
		}
		return nil
	})
	l.check(t, c)
	checkHolders(t, c, rooms)
}

// TestLargeSnapshotReachesNewReplica fills one room with more data than a
// gRPC message may hold (4 MiB), then adds a node the ring places that
// room's shard on: the shard reaches it as a streamed snapshot, while a
// writer in another room keeps getting acks.
func TestLargeSnapshotReachesNewReplica(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 100000, SendBurst: 100000, MaxMoves: 64})
	var metas []cluster.Meta
	for i := 1; i <= 4; i++ {
		metas = append(metas, cluster.Meta{ID: fmt.Sprintf("node%d", i), Role: cluster.RoleNode})
	}
	grown := cluster.NewPlacement(metas)
	room, other := "", ""
	for i := 0; room == "" || other == ""; i++ {
		name := fmt.Sprintf("big-%d", i)
		reps, _ := grown.Replicas(c.Shard(name), 3)
		onNew := false
		for _, r := range reps {
			onNew = onNew || r.ID == "node4"
		}
		if onNew && room == "" {
			room = name
		} else if !onNew && other == "" {
			other = name
		}
	}
	big := newWriter(t, c, room, "big")
	text := strings.Repeat("x", 1900)
	for round := 0; round < 30; round++ {
		for j := 0; j < 100; j++ {
			big.sent++
			big.cl.Post(fmt.Sprintf("big-%d", big.sent), text)
		}
		big.collect(t, 30*time.Second, nil)
	}

	w := newWriter(t, c, other, "w")
	var maxWait atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			w.post()
			w.collect(t, 30*time.Second, nil)
			if d := int64(time.Since(start)); d > maxWait.Load() {
				maxWait.Store(d)
			}
		}
	}()
	i := c.AddNode()
	c.WaitConverged(wait)
	c.WaitPlaced(90 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("longest ack wait in %s during the move: %v", other, time.Duration(maxWait.Load()))
	if w.cl.Closed() {
		t.Fatal("the other room's writer was disconnected")
	}
	checkRoom(t, c, room, big)
	c.Close()
	st, err := storage.OpenStore(c.Config(i).DataDir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	size := 0
	err = st.Scan(c.Room(room).Object, nil, nil, false, func(k, v []byte) bool {
		size += len(k) + len(v)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if size < 5<<20 {
		t.Fatalf("the new replica holds %d bytes of %s, want more than 5 MiB", size, room)
	}
	t.Logf("new replica holds %.1f MiB of %s", float64(size)/(1<<20), room)
}

// TestForeignNodeGetsNoPlace seeds a node of another cluster (it formed
// its own, alone) into ours: our members see it in the gossip pool but
// give it no place in the ring, and rooms carry on.
func TestForeignNodeGetsNoPlace(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	cfg := objectnode.DefaultConfig()
	cfg.ID = "alien"
	cfg.DataDir = t.TempDir()
	cfg.GRPCListen = "127.0.0.1:0"
	cfg.GossipListen = fmt.Sprintf("127.0.0.1:%d", tc.FreePort(t))
	cfg.Timings = tc.Timings()
	cfg.Expect = 1 // alone: forms a cluster of its own
	// Under the same CA and gossip key: a node of another cluster that an
	// operator set up from the same files.
	cfg.Security = c.Security(security.RoleNode, "alien")
	cfg.Logger = quietLog()
	alien, err := objectnode.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc.Eventually(t, wait, func() error {
		if _, ok := alien.ShardStatus(0); !ok {
			// Seen once in a full -race run (10 s, where it takes under 2 s
			// alone): say what the alien knew, for the next time.
			var ids []string
			for _, n := range alien.Members().Placement().Nodes() {
				ids = append(ids, n.ID)
			}
			return fmt.Errorf("the alien has not formed its cluster (cluster %q, replica %q, knows nodes %v, foreigners %v)",
				alien.Members().Meta().Cluster, alien.Members().Meta().Replica, ids, alien.Members().Foreigners())
		}
		return nil
	})
	alien.Kill()
	cfg.GRPCListen = alien.GRPCAddr()
	cfg.Seeds = []string{c.Nodes[0].GossipAddr()}
	if alien, err = objectnode.Start(cfg); err != nil {
		t.Fatal(err)
	}
	defer alien.Kill()
	tc.Eventually(t, wait, func() error {
		for _, m := range []*cluster.Membership{c.Nodes[0].Members(), c.Router.Members()} {
			if f := m.Foreigners(); len(f) == 0 || !strings.HasPrefix(f[0], "alien/") {
				return fmt.Errorf("%s has not met the alien: %v", m.Meta().ID, f)
			}
		}
		return nil
	})
	for i, n := range c.Nodes {
		if _, ok := n.Members().Placement().Node("alien"); ok {
			t.Fatalf("node%d placed the alien in its ring", i+1)
		}
	}
	if _, ok := c.Router.Members().Placement().Node("alien"); ok {
		t.Fatal("the router placed the alien in its ring")
	}
	w := newWriter(t, c, "not-alien", "w")
	w.post()
	w.collect(t, wait, nil)
}
