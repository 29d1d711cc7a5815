// Package launch runs a hellochat cluster as real processes on loopback:
// object nodes and a router started from built binaries, each on free
// ports, which can be killed with -9, paused with SIGSTOP, restarted (with
// or without their data), added and decommissioned. Tests, the benchmark
// and the failover experiment share it.
package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// Proc is one process of the cluster.
type Proc struct {
	Name string
	bin  string
	args []string
	log  string
	cmd  *exec.Cmd
	exit chan struct{} // closed when the current process has exited

	// Object nodes only: their gRPC and gossip addresses, data directory.
	grpcAddr, gossipAddr, data string
	// pki is the cluster's development PKI, which Status and Decommission
	// call the node with as an admin.
	pki string
}

// admin dials the node as an admin of the cluster.
func (p *Proc) admin() (*grpc.ClientConn, error) {
	s, err := security.Dev(p.pki, security.Identity{Role: security.RoleAdmin, ID: "admin"})
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(s.ClientCreds()))
}

// Start starts the process, appending its output to its log file.
func (p *Proc) Start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("launch: log for %s: %w", p.Name, err)
	}
	defer f.Close()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("launch: start %s: %w", p.Name, err)
	}
	exit := make(chan struct{})
	p.exit = exit
	cmd := p.cmd
	go func() {
		cmd.Wait()
		close(exit)
	}()
	return nil
}

// Pid is the running process's id (0 when not started).
func (p *Proc) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the running process.
func (p *Proc) Signal(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(sig)
	}
}

// Kill9 kills the process with SIGKILL and waits until it is gone.
func (p *Proc) Kill9() {
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Exited reports whether the last started process has exited, and its
// exit status if so (-1 when a signal ended it).
func (p *Proc) Exited() (code int, exited bool) {
	if p.exit == nil {
		return 0, false
	}
	select {
	case <-p.exit:
		return p.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}

// GRPCAddr is an object node's gRPC address ("" for the router).
func (p *Proc) GRPCAddr() string { return p.grpcAddr }

// GossipAddr is an object node's gossip address.
func (p *Proc) GossipAddr() string { return p.gossipAddr }

// DataDir is an object node's data directory ("" for the router).
func (p *Proc) DataDir() string { return p.data }

// LogPath is the file the process's output is appended to.
func (p *Proc) LogPath() string { return p.log }

// LogSize is the current length of the process's log, a mark to read what
// it logs from then on with LogSince.
func (p *Proc) LogSize() int64 {
	fi, err := os.Stat(p.log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogSince returns what the process logged after mark (a LogSize).
func (p *Proc) LogSince(mark int64) string {
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(mark, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// WipeData deletes an object node's data directory, as if its disk died.
// The node must be down.
func (p *Proc) WipeData() error {
	if _, exited := p.Exited(); p.exit != nil && !exited {
		return fmt.Errorf("launch: wipe %s: it is running", p.Name)
	}
	if p.data == "" {
		return fmt.Errorf("launch: wipe %s: not an object node", p.Name)
	}
	return os.RemoveAll(p.data)
}

// Status asks an object node for its status over gRPC.
func (p *Proc) Status(ctx context.Context) (*pb.StatusResponse, error) {
	conn, err := p.admin()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return pb.NewRoomsClient(conn).Status(ctx, &pb.StatusRequest{})
}

// Decommission asks an object node to move every replica off itself and
// stop (what `objectnode decommission` does). A node that has not joined
// its cluster yet answers Unavailable; Decommission retries that until ctx
// ends.
func (p *Proc) Decommission(ctx context.Context) (*pb.StatusResponse, error) {
	conn, err := p.admin()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for {
		st, err := pb.NewRoomsClient(conn).Decommission(ctx, &pb.DecommissionRequest{})
		if status.Code(err) != codes.Unavailable {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("launch: decommission %s: %w (last: %v)", p.Name, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Wait waits for the process to exit; false on timeout.
func (p *Proc) Wait(timeout time.Duration) bool {
	if p.exit == nil {
		return true
	}
	select {
	case <-p.exit:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Tail returns the last lines of the process's log.
func (p *Proc) Tail(lines int) string {
	b, _ := os.ReadFile(p.log)
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// Cluster is three (or more) object nodes and one router.
type Cluster struct {
	Dir    string
	Nodes  []*Proc // the object nodes in the cluster
	Router *Proc
	Base   string // the router's http://host:port
	Admin  string // the router's admin endpoints, http://host:port
	// Retired are nodes that were decommissioned and have exited; their
	// logs and data dirs stay for inspection.
	Retired []*Proc

	bin       string
	nodeFlags []string
	created   int // object nodes ever started (names node1..nodeN)
}

// Options for a cluster.
type Options struct {
	Bin   string // directory holding objectnode and router
	Dir   string // data and log directory
	Nodes int    // default 3
	// Extra flags for every process (e.g. gossip timings).
	NodeFlags, RouterFlags []string
}

// Start launches the cluster and waits until every shard is led by its
// preferred replica.
func Start(o Options) (*Cluster, error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	c := &Cluster{Dir: o.Dir, bin: o.Bin, nodeFlags: o.NodeFlags, created: o.Nodes}
	var gossip []string
	for i := 0; i < o.Nodes; i++ {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		gossip = append(gossip, "127.0.0.1:"+strconv.Itoa(p))
	}
	for i := 0; i < o.Nodes; i++ {
		id := fmt.Sprintf("node%d", i+1)
		gp, err := FreePort()
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, c.nodeProc(id, "127.0.0.1:"+strconv.Itoa(gp), gossip[i], gossip, o.Nodes))
	}
	hp, err := FreePort()
	if err != nil {
		return nil, err
	}
	rgp, err := FreePort()
	if err != nil {
		return nil, err
	}
	ap, err := FreePort()
	if err != nil {
		return nil, err
	}
	c.Base = "http://127.0.0.1:" + strconv.Itoa(hp)
	c.Admin = "http://127.0.0.1:" + strconv.Itoa(ap)
	c.Router = &Proc{Name: "router1", bin: filepath.Join(o.Bin, "router"), log: filepath.Join(o.Dir, "router1.log"),
		args: append([]string{"--http-addr", "127.0.0.1:" + strconv.Itoa(hp), "--admin-addr", "127.0.0.1:" + strconv.Itoa(ap),
			"--gossip-addr", "127.0.0.1:" + strconv.Itoa(rgp),
			"--join", strings.Join(gossip, ","), "--dev-pki", c.pki(),
			// Load tools connect from one address, faster than people.
			"--max-conns-per-addr", "0", "--frame-rate", "0"}, o.RouterFlags...)}
	for _, p := range append(c.Nodes, c.Router) {
		if err := p.Start(); err != nil {
			c.Kill()
			return nil, err
		}
	}
	if _, err := c.Settled(30 * time.Second); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) nodeProc(id, grpcAddr, gossipAddr string, seeds []string, expect int) *Proc {
	data := filepath.Join(c.Dir, id)
	return &Proc{Name: id, bin: filepath.Join(c.bin, "objectnode"), log: filepath.Join(c.Dir, id+".log"),
		grpcAddr: grpcAddr, gossipAddr: gossipAddr, data: data, pki: c.pki(),
		args: append([]string{"--id", id, "--data", data, "--grpc-addr", grpcAddr,
			"--gossip-addr", gossipAddr, "--join", strings.Join(seeds, ","), "--expect", strconv.Itoa(expect),
			"--dev-pki", c.pki()}, c.nodeFlags...)}
}

// pki is the directory of the cluster's development PKI.
func (c *Cluster) pki() string { return filepath.Join(c.Dir, "pki") }

// AddNode starts one more object node, named after the last one ever
// started, on a fresh data dir with --expect 0: it only joins the running
// cluster, and the shards' leaders move replicas onto it. It returns at
// once; WaitPlaced tells when the moves are done.
func (c *Cluster) AddNode() (*Proc, error) {
	gp, err := FreePort()
	if err != nil {
		return nil, err
	}
	sp, err := FreePort()
	if err != nil {
		return nil, err
	}
	var seeds []string
	for _, n := range c.Nodes {
		seeds = append(seeds, n.gossipAddr)
	}
	c.created++
	p := c.nodeProc(fmt.Sprintf("node%d", c.created), "127.0.0.1:"+strconv.Itoa(gp), "127.0.0.1:"+strconv.Itoa(sp), seeds, 0)
	if err := p.Start(); err != nil {
		return nil, err
	}
	c.Nodes = append(c.Nodes, p)
	return p, nil
}

// NodesCreated counts the object nodes ever started; the next AddNode is
// node<NodesCreated()+1>.
func (c *Cluster) NodesCreated() int { return c.created }

// Retire moves a node that has exited for good (decommissioned) from
// Nodes to Retired.
func (c *Cluster) Retire(p *Proc) {
	for i, n := range c.Nodes {
		if n == p {
			c.Nodes = append(c.Nodes[:i:i], c.Nodes[i+1:]...)
			c.Retired = append(c.Retired, p)
			return
		}
	}
}

// EveryNode is every object node ever started, retired ones last.
func (c *Cluster) EveryNode() []*Proc {
	return append(append([]*Proc{}, c.Nodes...), c.Retired...)
}

// Replicas is the shard group size the nodes use (objectnode's default).
const Replicas = 3

// Ring is the placement of the cluster's current nodes, as every member
// computes it once gossip has converged: retired nodes have no place.
func (c *Cluster) Ring() *cluster.Placement {
	var metas []cluster.Meta
	for _, n := range c.Nodes {
		metas = append(metas, cluster.Meta{ID: n.Name, Role: cluster.RoleNode})
	}
	return cluster.NewPlacement(metas)
}

// RingReplicas lists the ring's replicas of a shard.
func RingReplicas(ring *cluster.Placement, shard int) ([]string, error) {
	reps, err := ring.Replicas(shard, Replicas)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(reps))
	for i, r := range reps {
		ids[i] = r.ID
	}
	return ids, nil
}

// Placed checks, by asking every node, that the cluster is placed: each
// shard has one serving leader, the ring's first replica, whose voters are
// exactly the ring's replicas (no learner, no replica of a wiped node's
// earlier incarnation) and whose own ring agrees; and each node holds
// exactly the replicas the ring gives it. The nodes' answers are
// authoritative where the router's gossiped view can lag (a node killed
// and restarted quickly may still look like the leader it was).
func (c *Cluster) Placed(ctx context.Context) error {
	ring := c.Ring()
	want := make([][]string, cluster.Partitions)
	holds := map[string]int{}
	for s := range want {
		ids, err := RingReplicas(ring, s)
		if err != nil {
			return err
		}
		want[s] = ids
		for _, id := range ids {
			holds[id]++
		}
	}
	type report struct {
		node string
		st   *pb.ShardStatus
	}
	led := make([][]report, cluster.Partitions)
	replicas := map[string]uint32{}
	for _, n := range c.Nodes {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.Status(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: status: %v", n.Name, err)
		}
		if st.Leaving {
			return fmt.Errorf("%s is leaving", n.Name)
		}
		replicas[n.Name] = st.Replicas
		for _, ss := range st.Shards {
			if s := int(ss.Shard); s < cluster.Partitions {
				led[s] = append(led[s], report{n.Name, ss})
			}
		}
	}
	for s, reports := range led {
		switch len(reports) {
		case 0:
			return fmt.Errorf("shard %d: no serving leader", s)
		case 1:
		default:
			return fmt.Errorf("shard %d: %s and %s both serve it", s, reports[0].node, reports[1].node)
		}
		if reports[0].node != want[s][0] {
			return fmt.Errorf("shard %d: led by %s, its preferred replica (the ring's first) is %s", s, reports[0].node, want[s][0])
		}
		for _, r := range reports {
			for _, v := range r.st.Voters {
				if strings.Contains(v, "(old)") {
					return fmt.Errorf("shard %d (led by %s): voter %s of an earlier incarnation remains", s, r.node, v)
				}
			}
			if !SameSet(r.st.Voters, want[s]) || len(r.st.Learners) > 0 {
				return fmt.Errorf("shard %d (led by %s): voters %v learners %v, ring wants %v", s, r.node, r.st.Voters, r.st.Learners, want[s])
			}
			if !SameSet(r.st.Want, want[s]) {
				return fmt.Errorf("shard %d: its leader %s places it on %v, the ring of %d nodes on %v", s, r.node, r.st.Want, len(c.Nodes), want[s])
			}
		}
	}
	// A replica removed from its group deletes itself a moment after the
	// group applied its removal.
	for _, n := range c.Nodes {
		if int(replicas[n.Name]) != holds[n.Name] {
			return fmt.Errorf("%s holds %d shard replicas, the ring places %d on it", n.Name, replicas[n.Name], holds[n.Name])
		}
	}
	return nil
}

// WaitPlaced waits until the cluster is placed (Placed) and settled (every
// node alive and every shard led by its preferred replica, as the router
// sees it). progress, if not nil, is called about every interval with the
// time waited and what is still missing.
func (c *Cluster) WaitPlaced(ctx context.Context, timeout, interval time.Duration, progress func(waited time.Duration, missing error)) error {
	start := time.Now()
	deadline := start.Add(timeout)
	nextReport := start.Add(interval)
	var last error
	for {
		for _, n := range c.Nodes {
			if code, exited := n.Exited(); exited {
				return fmt.Errorf("launch: %s exited (status %d) while waiting for placement", n.Name, code)
			}
		}
		last = c.Placed(ctx)
		if last == nil {
			var v View
			if v, last = c.View(); last == nil {
				last = settled(v, len(c.Nodes))
			}
		}
		if last == nil {
			return nil
		}
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("launch: cluster not placed after %v: %w", timeout, last)
		}
		if progress != nil && interval > 0 && now.After(nextReport) {
			progress(now.Sub(start), last)
			nextReport = now.Add(interval)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("launch: waiting for placement: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SameSet reports whether a and b hold the same strings.
func SameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string{}, a...), append([]string{}, b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// LogMarks records every node's log length (LogSize), to read what the
// nodes logged after it with LogsSince.
func (c *Cluster) LogMarks() map[*Proc]int64 {
	marks := map[*Proc]int64{}
	for _, p := range c.EveryNode() {
		marks[p] = p.LogSize()
	}
	return marks
}

// LogsSince returns, per node, what it logged after marks (a node started
// after the marks were taken: all of its log).
func (c *Cluster) LogsSince(marks map[*Proc]int64) map[string]string {
	out := map[string]string{}
	for _, p := range c.EveryNode() {
		out[p.Name] = p.LogSince(marks[p])
	}
	return out
}

// All is every process, nodes first.
func (c *Cluster) All() []*Proc {
	all := append([]*Proc{}, c.Nodes...)
	if c.Router != nil {
		all = append(all, c.Router)
	}
	return all
}

// Kill kills every process with -9.
func (c *Cluster) Kill() {
	for _, p := range c.All() {
		p.Kill9()
	}
}

// Stop sends SIGTERM to every process and waits for them to exit.
func (c *Cluster) Stop(timeout time.Duration) error {
	for _, p := range c.All() {
		p.Signal(syscall.SIGCONT) // a paused process cannot exit
		p.Signal(syscall.SIGTERM)
	}
	for _, p := range c.All() {
		if !p.Wait(timeout) {
			return fmt.Errorf("launch: %s did not exit within %v of SIGTERM", p.Name, timeout)
		}
	}
	return nil
}

// View is the router's /api/cluster answer (the parts we use).
type View struct {
	Members []struct {
		ID    string `json:"id"`
		Role  string `json:"role"`
		Alive bool   `json:"alive"`
	} `json:"members"`
	Shards  map[int]string `json:"shards"`
	Leaders map[int]string `json:"leaders"`
}

// View asks the router how it sees the cluster.
func (c *Cluster) View() (View, error) {
	var v View
	client := http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(c.Admin + "/api/cluster")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// Settled waits until every node is alive and every shard is led by its
// preferred replica, as the router sees it.
func (c *Cluster) Settled(timeout time.Duration) (View, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		v, err := c.View()
		if err == nil {
			err = settled(v, len(c.Nodes))
		}
		if err == nil {
			return v, nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return View{}, fmt.Errorf("launch: cluster not settled after %v: %w", timeout, last)
}

func settled(v View, nodes int) error {
	alive := 0
	for _, m := range v.Members {
		if m.Role == cluster.RoleNode && m.Alive {
			alive++
		}
	}
	if alive != nodes {
		return fmt.Errorf("%d of %d nodes alive", alive, nodes)
	}
	if len(v.Shards) != cluster.Partitions {
		return fmt.Errorf("%d of %d shards placed", len(v.Shards), cluster.Partitions)
	}
	for s, owner := range v.Shards {
		if v.Leaders[s] != owner {
			return fmt.Errorf("shard %d led by %q, preferred %s", s, v.Leaders[s], owner)
		}
	}
	return nil
}

// Node returns the node process with this id.
func (c *Cluster) Node(id string) *Proc {
	for _, p := range c.Nodes {
		if p.Name == id {
			return p
		}
	}
	return nil
}

// PrepareDir creates dir, or empties it of a previous run's node data and
// logs, so a tool's cluster starts fresh.
func PrepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "node") || strings.HasSuffix(e.Name(), ".log") {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// FreePort returns a port free for both TCP and UDP on 127.0.0.1 (gossip
// needs both). It is chosen outside the kernel's ephemeral range: a port
// the kernel handed out and took back is soon given to some outgoing
// connection (the cluster's own make many), and the node that was to bind
// it fails with "address already in use".
func FreePort() (int, error) {
	elo, ehi := ephemeralRange()
	lo, hi := 10000, elo-1
	if hi-lo < 1000 {
		lo, hi = ehi+1, 65535
	}
	for i := 0; i < 200; i++ {
		port := lo + rand.IntN(hi-lo+1)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("launch: no free TCP+UDP port in %d-%d", lo, hi)
}

// ephemeralRange reads the kernel's range of ports for outgoing
// connections (Linux's default when it cannot).
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}
