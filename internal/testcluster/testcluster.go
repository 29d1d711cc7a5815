// Package testcluster runs a real hellochat cluster inside a test: object
// nodes and a router on 127.0.0.1 ports, each node with Pebble in a temp
// dir, gossiping for real. Nothing is mocked.
package testcluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"

	"hellochat/apps"
	"hellochat/apps/builtin"
	"hellochat/apps/chat"
	"hellochat/cluster"
	"hellochat/internal/launch"
	"hellochat/internal/logging"
	"hellochat/objectnode"
	"hellochat/router"
	"hellochat/security"
	"hellochat/shard"
	"hellochat/storage"
)

// Timings makes failure detection quick on loopback, yet slow enough that
// a loaded 2-core machine running every package under -race does not make
// gossip call live nodes down every few seconds (a 50 ms probe timeout did).
func Timings() cluster.Timings {
	return cluster.Timings{
		ProbeInterval:       200 * time.Millisecond,
		ProbeTimeout:        100 * time.Millisecond,
		SuspicionMult:       2,
		GossipInterval:      50 * time.Millisecond,
		PushPullInterval:    time.Second,
		DeadNodeReclaimTime: 200 * time.Millisecond,
		RejoinInterval:      200 * time.Millisecond,
	}
}

// startWait bounds how long New waits for its cluster to form.
const startWait = 30 * time.Second

// Options change a cluster from its defaults.
type Options struct {
	// ObjectIdle closes a durable object's actor (a chat room's too)
	// after that long without calls (default objectnode.DefaultObjectIdle).
	ObjectIdle time.Duration
	// GatewayGrace is the nodes' objectnode.Config.GatewayGrace.
	GatewayGrace time.Duration
	SendRate     float64 // the chat's (default chat.DefaultSendRate); negative: no limit
	SendBurst    int
	// SeedHistory caps the history seed clients get (router --seed-history).
	SeedHistory int
	// SnapshotEvery, TrailEntries and KeepEntries shrink the Raft log
	// bounds, to make snapshots happen in a test.
	SnapshotEvery, TrailEntries, KeepEntries uint64
	// MaxMoves bounds the replicas each leader moves at once.
	MaxMoves int
	// SnapshotRate bounds the bytes per second a node streams in
	// snapshots (default shard.DefaultSnapshotRate): a tiny rate holds a
	// large shard's new replica empty for as long as a test needs.
	SnapshotRate int
	// FrameRate, FrameBurst, MaxConns and MaxConnsPerAddr are the router's
	// browser limits. Zero leaves them unbounded: every test client comes
	// from one address, faster than a person.
	FrameRate                 float64
	FrameBurst                int
	MaxConns, MaxConnsPerAddr int
	FrameReadTimeout          time.Duration // default router.DefaultFrameReadTimeout
	// NodeFS, when set, gives a node (by id) the file system its store
	// lives on; nil: the disk.
	NodeFS func(id string) vfs.FS
	// GatewayFaults, when set, gives a node (by id) the faults of what it
	// streams to routers.
	GatewayFaults func(id string) objectnode.GatewayFaults
	// Apps are the object classes and routes the nodes and the router
	// run (default apps/builtin's).
	Apps *apps.Registry
}

// Room is where room lives on this cluster's nodes.
func (c *Cluster) Room(room string) RoomStore {
	object, start, end := chat.StoredMessages(room)
	return RoomStore{object, start, end}
}

// RoomStore is where a chat room lives in a node's store: the object its
// keys are under, and the key range of its messages, one key each.
type RoomStore struct {
	Object           string
	MsgStart, MsgEnd []byte
}

// Shard is the shard that holds room on this cluster.
func (c *Cluster) Shard(room string) int { return cluster.Shard(c.Room(room).Object) }

// Cluster is n object nodes and one router.
type Cluster struct {
	t      testing.TB
	opts   Options
	dir    string
	cfgs   []objectnode.Config
	seeds  []string
	Nodes  []*objectnode.Node // nil while a node is down
	Router *router.Router
}

// New starts n nodes and a router and waits until every member sees the
// others. Everything is stopped by t.Cleanup.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	switch {
	case opts.SendRate == 0:
		opts.SendRate = chat.DefaultSendRate
		opts.SendBurst = chat.DefaultSendBurst
	case opts.SendRate < 0:
		opts.SendRate = 0 // the chat's "unlimited"
	}
	c := &Cluster{t: t, opts: opts, dir: t.TempDir(), Nodes: make([]*objectnode.Node, n)}
	for i := 0; i < n; i++ {
		c.seeds = append(c.seeds, "127.0.0.1:"+strconv.Itoa(FreePort(t)))
	}
	seeds := c.seeds
	for i := 0; i < n; i++ {
		c.cfgs = append(c.cfgs, c.nodeConfig(fmt.Sprintf("node%d", i+1), seeds[i], n))
	}
	t.Cleanup(c.Close)
	for i := range c.cfgs {
		c.Start(i)
	}
	c.Router = c.StartRouter("router1")
	// Generous bounds: a cluster forms in a second or two, but CI runs
	// every package under -race on a loaded 2-core machine.
	c.WaitConverged(startWait)
	c.WaitLeaders(startWait)
	return c
}

// StartRouter starts a router (New starts router1) that joins the
// cluster; the caller shuts it down.
func (c *Cluster) StartRouter(id string) *router.Router {
	c.t.Helper()
	logger, raw := testLogger(c.t, id)
	rt, err := router.Start(router.Config{
		Apps:             c.apps(),
		RoomClass:        chat.ClassName,
		ID:               id,
		HTTPListen:       "127.0.0.1:0",
		AdminListen:      "127.0.0.1:0",
		GossipListen:     "127.0.0.1:" + strconv.Itoa(FreePort(c.t)),
		Seeds:            c.seeds,
		Timings:          Timings(),
		FrameRate:        c.opts.FrameRate,
		FrameBurst:       c.opts.FrameBurst,
		MaxConns:         c.opts.MaxConns,
		MaxConnsPerAddr:  c.opts.MaxConnsPerAddr,
		FrameReadTimeout: c.opts.FrameReadTimeout,
		Security:         c.Security(security.RoleRouter, id),
		Logger:           logger,
		LogOutput:        raw,
	})
	if err != nil {
		c.t.Fatalf("start router %s: %v", id, err)
	}
	return rt
}

func (c *Cluster) apps() *apps.Registry {
	if c.opts.Apps != nil {
		return c.opts.Apps
	}
	return builtin.Registry(builtin.Options{Chat: chat.Options{SendRate: c.opts.SendRate, SendBurst: c.opts.SendBurst, SeedHistory: c.opts.SeedHistory}})
}

func (c *Cluster) nodeConfig(id, gossip string, expect int) objectnode.Config {
	logger, raw := testLogger(c.t, id)
	return objectnode.Config{
		Apps:         c.apps(),
		ID:           id,
		DataDir:      filepath.Join(c.dir, id),
		GRPCListen:   "127.0.0.1:0", // fixed at first start, kept for restarts
		AdminListen:  "127.0.0.1:0",
		GossipListen: gossip,
		Seeds:        c.seeds,
		Expect:       expect,
		Timings:      Timings(),
		ObjectIdle:   c.opts.ObjectIdle,
		GatewayGrace: c.opts.GatewayGrace,
		Replicas:     3,
		// Production's clock: ten ticks of 100 ms, elections within 1-2 s.
		// Half that, under -race on a loaded 2-core machine, cost leaders
		// their quorum checks every few seconds, and shards never settled.
		RaftTick:      100 * time.Millisecond,
		ElectionTicks: 10,
		SnapshotEvery: c.opts.SnapshotEvery,
		TrailEntries:  c.opts.TrailEntries,
		KeepEntries:   c.opts.KeepEntries,
		MaxMoves:      c.opts.MaxMoves,
		SnapshotRate:  c.opts.SnapshotRate,
		Security:      c.Security(security.RoleNode, id),
		FS:            c.nodeFS(id),
		GatewayFaults: c.gatewayFaults(id),
		Logger:        logger,
		LogOutput:     raw,
	}
}

func (c *Cluster) gatewayFaults(id string) objectnode.GatewayFaults {
	if c.opts.GatewayFaults == nil {
		return nil
	}
	return c.opts.GatewayFaults(id)
}

func (c *Cluster) nodeFS(id string) vfs.FS {
	if c.opts.NodeFS == nil {
		return nil
	}
	return c.opts.NodeFS(id)
}

// Security is the settings of a member of the cluster's development PKI
// (created on first use): the cluster runs as securely as a real one.
func (c *Cluster) Security(role, id string) *security.Settings {
	s, err := security.Dev(filepath.Join(c.dir, "pki"), security.Identity{Role: role, ID: id})
	if err != nil {
		c.t.Fatalf("security for %s %s: %v", role, id, err)
	}
	return s
}

// AddNode starts one more object node (fresh data dir), which joins the
// running cluster; it returns its index.
func (c *Cluster) AddNode() int {
	c.t.Helper()
	i := len(c.cfgs)
	gossip := "127.0.0.1:" + strconv.Itoa(FreePort(c.t))
	c.cfgs = append(c.cfgs, c.nodeConfig(fmt.Sprintf("node%d", i+1), gossip, 0))
	c.Nodes = append(c.Nodes, nil)
	c.Start(i)
	return i
}

// Decommission moves every replica off node i and waits (up to timeout)
// until the node stopped itself.
func (c *Cluster) Decommission(i int, timeout time.Duration) {
	c.t.Helper()
	n := c.Nodes[i]
	n.Decommission()
	select {
	case <-n.Failed():
		if err := n.Err(); err != nil {
			c.t.Fatalf("decommission of %s: %v", c.cfgs[i].ID, err)
		}
	case <-time.After(timeout):
		c.t.Fatalf("%s still holds %d replicas %v after decommission", c.cfgs[i].ID, n.Replicas(), timeout)
	}
	c.Stop(i)
}

// Wipe deletes node i's data dir (the node must be down): its disk died.
func (c *Cluster) Wipe(i int) {
	c.t.Helper()
	if c.Nodes[i] != nil {
		c.t.Fatalf("wipe %s: it is running", c.cfgs[i].ID)
	}
	if err := os.RemoveAll(c.cfgs[i].DataDir); err != nil {
		c.t.Fatal(err)
	}
}

// WaitPlaced waits until every shard's group, as its serving leader sees
// it, has exactly the ring's replicas as voters and no learner.
func (c *Cluster) WaitPlaced(timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, func() error {
		return c.Placed()
	})
}

// Placed reports the first shard whose voters differ from the ring's.
func (c *Cluster) Placed() error {
	p := c.Router.Members().Placement()
	for s := 0; s < cluster.Partitions; s++ {
		reps, err := p.Replicas(s, 3)
		if err != nil {
			return err
		}
		var want []string
		for _, r := range reps {
			want = append(want, r.ID)
		}
		var st shard.ShardStatus
		for _, n := range c.Nodes {
			if n == nil {
				continue
			}
			if s2, ok := n.ShardStatus(s); ok && s2.Serving {
				st = s2
			}
		}
		if !st.Serving {
			return fmt.Errorf("shard %d: no serving leader", s)
		}
		if !sameSet(st.Voters, want) || len(st.Learners) > 0 {
			return fmt.Errorf("shard %d: voters %v learners %v, ring wants %v", s, st.Voters, st.Learners, want)
		}
	}
	return nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return true
}

// WaitLeaders waits until every shard is led by its preferred replica (the
// ring's first) and the router has heard so by gossip: after that, no
// leader moves unless a test makes it.
func (c *Cluster) WaitLeaders(timeout time.Duration) {
	c.t.Helper()
	Eventually(c.t, timeout, func() error {
		p := c.Router.Members().Placement()
		for s := 0; s < cluster.Partitions; s++ {
			owner, _ := p.ShardOwner(s)
			if l := p.Leaders(s); len(l) != 1 || l[0].ID != owner.ID {
				return fmt.Errorf("shard %d: leaders %v, preferred %s", s, l, owner.ID)
			}
		}
		return nil
	})
}

// Start starts (or restarts) node i on its old ports and data dir.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.Nodes[i], err = objectnode.Start(c.cfgs[i])
		// A port just released by a killed node can take a moment.
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("start %s: %v", c.cfgs[i].ID, err)
	}
	c.cfgs[i].GRPCListen = c.Nodes[i].GRPCAddr()
}

// Kill stops node i abruptly (no leave, no redirects).
func (c *Cluster) Kill(i int) {
	if n := c.Nodes[i]; n != nil {
		n.Kill()
		c.Nodes[i] = nil
	}
}

// Config is node i's configuration.
func (c *Cluster) Config(i int) objectnode.Config { return c.cfgs[i] }

// SetRaftDrop makes node i drop Raft messages to and from a peer while drop
// returns true; gossip and routers still reach it. It takes effect on the
// node's next Start; nil drops nothing.
func (c *Cluster) SetRaftDrop(i int, drop func(peer string) bool) {
	c.cfgs[i].RaftFaults = nil
	if drop != nil {
		c.cfgs[i].RaftFaults = shard.DropFunc(drop)
	}
}

// SetElectionTicks sets node i's election timeout, in Raft ticks, from its
// next Start: a long one keeps a cut-off leader believing it leads (Raft's
// CheckQuorum deposes it only after that long) while its peers elect
// another.
func (c *Cluster) SetElectionTicks(i, ticks int) {
	c.cfgs[i].ElectionTicks = ticks
}

// Stop shuts node i down cleanly.
func (c *Cluster) Stop(i int) {
	if n := c.Nodes[i]; n != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
		c.Nodes[i] = nil
	}
}

// Replicas opens every node's store (all must be stopped) and returns each
// room's stored messages per node.
func (c *Cluster) Replicas(rooms []string) (map[string][][]storage.KV, error) {
	out := map[string][][]storage.KV{}
	for _, cfg := range c.cfgs {
		st, err := storage.OpenStore(cfg.DataDir, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return nil, err
		}
		for _, room := range rooms {
			rs := c.Room(room)
			kvs, err := st.List(rs.Object, rs.MsgStart, rs.MsgEnd, 0, false)
			if err != nil {
				st.Close()
				return nil, err
			}
			out[room] = append(out[room], kvs)
		}
		st.Close()
	}
	return out, nil
}

// WaitConverged waits until every running member sees every node alive.
func (c *Cluster) WaitConverged(timeout time.Duration) {
	c.t.Helper()
	want := 0
	for _, n := range c.Nodes {
		if n != nil {
			want++
		}
	}
	Eventually(c.t, timeout, func() error {
		views := []*cluster.Membership{c.Router.Members()}
		for _, n := range c.Nodes {
			if n != nil {
				views = append(views, n.Members())
			}
		}
		for _, m := range views {
			p := m.Placement()
			if got := p.LiveNodes(); got != want || len(p.Nodes()) != len(c.Nodes) {
				return fmt.Errorf("%s sees %d of %d nodes alive (%d known)", m.Meta().ID, got, want, len(p.Nodes()))
			}
		}
		return nil
	})
}

// Owner is the id of the node that owns room, as the router sees it.
func (c *Cluster) Owner(room string) string {
	o, _ := c.Router.Members().Placement().Owner(c.Room(room).Object)
	return o.ID
}

// Leader waits until a running node serves the room's shard and returns
// its index.
func (c *Cluster) Leader(room string) int {
	c.t.Helper()
	return c.ObjectLeader(c.Room(room).Object)
}

// ObjectLeader waits until a running node serves the shard of a storage
// object (a durable object's ID.StorageObject) and returns its index.
func (c *Cluster) ObjectLeader(object string) int {
	c.t.Helper()
	leader := -1
	Eventually(c.t, 10*time.Second, func() error {
		for i, n := range c.Nodes {
			if n != nil && n.Serves(object) {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("no node serves object %q", object)
	})
	return leader
}

// NodeIndex maps a node id to its index.
func (c *Cluster) NodeIndex(id string) int {
	for i, cfg := range c.cfgs {
		if cfg.ID == id {
			return i
		}
	}
	c.t.Fatalf("no node %q", id)
	return -1
}

// URL is the router's base URL.
func (c *Cluster) URL() string { return "http://" + c.Router.Addr() }

// Close stops everything.
func (c *Cluster) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.Router != nil {
		c.Router.Shutdown(ctx)
		c.Router = nil
	}
	for i, n := range c.Nodes {
		if n != nil {
			n.Shutdown(ctx)
			c.Nodes[i] = nil
		}
	}
}

// Eventually retries check until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a port free for both TCP and UDP on 127.0.0.1 (gossip
// needs both), outside the kernel's range for outgoing connections.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := launch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// testLogger logs to stderr only with HELLOCHAT_TEST_LOG=1: cluster logs
// drown the test output otherwise.
func testLogger(_ testing.TB, name string) (*slog.Logger, io.Writer) {
	var out io.Writer = io.Discard
	if os.Getenv("HELLOCHAT_TEST_LOG") != "" {
		out = os.Stderr
	}
	log, raw, _ := logging.New(name, out, slog.LevelInfo, logging.FormatText) // text is always known
	return log, raw
}
