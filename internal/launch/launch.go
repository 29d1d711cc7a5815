// Package launch runs a hellochat cluster as real processes on loopback:
// object nodes and a router started from built binaries, each on free
// ports, which can be killed with -9, paused with SIGSTOP, restarted (with
// or without their data), added and decommissioned. Tests, the benchmark
// and the failover experiment share it.
package launch

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
	// Lost are nodes whose machine is gone for good (killed, disk
	// deleted, forgotten): only their logs stay.
	Lost []*Proc

	net       Network
	transport *http.Transport // to the router, from where the tools run
	bin       string
	nodeFlags []string
	created   int // object nodes ever started (names node1..nodeN)
}

// Options for a cluster.
type Options struct {
	Bin   string // directory holding objectnode and router
	Dir   string // data and log directory
	Nodes int    // default 3
	// Network places the processes (default Loopback).
	Network Network
	// Extra flags for every process (e.g. gossip timings).
	NodeFlags, RouterFlags []string
}

// Start launches the cluster and waits until every shard is led by its
// preferred replica.
func Start(o Options) (*Cluster, error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Network == nil {
		o.Network = Loopback{}
	}
	c := &Cluster{Dir: o.Dir, net: o.Network, transport: &http.Transport{DialContext: o.Network.DialContext},
		bin: o.Bin, nodeFlags: o.NodeFlags, created: o.Nodes}
	var ids, gossip []string
	for i := 0; i < o.Nodes; i++ {
		id := fmt.Sprintf("node%d", i+1)
		addr, err := c.net.Addr(id)
		if err != nil {
			return nil, err
		}
		ids, gossip = append(ids, id), append(gossip, addr)
	}
	for i, id := range ids {
		p, err := c.nodeProc(id, gossip[i], gossip, o.Nodes)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, p)
	}
	const router = "router1"
	var addrs [3]string // http, admin, gossip
	for i := range addrs {
		var err error
		if addrs[i], err = c.net.Addr(router); err != nil {
			return nil, err
		}
	}
	c.Base, c.Admin = "http://"+addrs[0], "http://"+addrs[1]
	c.Router = &Proc{Name: router, net: c.net, bin: filepath.Join(o.Bin, "router"), log: filepath.Join(o.Dir, router+".log"),
		args: append([]string{"--id", router, "--http-addr", addrs[0], "--admin-addr", addrs[1], "--gossip-addr", addrs[2],
			"--join", strings.Join(gossip, ","), "--dev-pki", c.pki(),
			// Load tools connect from one address, faster than people.
			"--max-conns-per-addr", "0", "--queued-bytes-per-addr", "0", "--frame-rate", "0"}, o.RouterFlags...)}
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

// nodeProc prepares object node id, gossiping on gossipAddr, with gRPC
// and admin addresses of its own.
func (c *Cluster) nodeProc(id, gossipAddr string, seeds []string, expect int) (*Proc, error) {
	grpcAddr, err := c.net.Addr(id)
	if err != nil {
		return nil, err
	}
	adminAddr, err := c.net.Addr(id)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(c.Dir, id)
	return &Proc{Name: id, net: c.net, bin: filepath.Join(c.bin, "objectnode"), log: filepath.Join(c.Dir, id+".log"),
		grpcAddr: grpcAddr, gossipAddr: gossipAddr, adminAddr: adminAddr, data: data, pki: c.pki(),
		args: append([]string{"--id", id, "--data", data, "--grpc-addr", grpcAddr, "--admin-addr", adminAddr,
			"--gossip-addr", gossipAddr, "--join", strings.Join(seeds, ","), "--expect", strconv.Itoa(expect),
			"--dev-pki", c.pki()}, c.nodeFlags...)}, nil
}

// pki is the directory of the cluster's development PKI.
func (c *Cluster) pki() string { return filepath.Join(c.Dir, "pki") }

// HTTPClient reaches the cluster's router from where the tools run. Every
// client shares the cluster's one transport, so idle connections are
// reused rather than piling up.
func (c *Cluster) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: c.transport}
}

// AddNode starts one more object node, named after the last one ever
// started, on a fresh data dir with --expect 0: it only joins the running
// cluster, and the shards' leaders move replicas onto it. It returns at
// once; WaitPlaced tells when the moves are done.
func (c *Cluster) AddNode() (*Proc, error) {
	id := fmt.Sprintf("node%d", c.created+1)
	gossipAddr, err := c.net.Addr(id)
	if err != nil {
		return nil, err
	}
	var seeds []string
	for _, n := range c.Nodes {
		seeds = append(seeds, n.gossipAddr)
	}
	p, err := c.nodeProc(id, gossipAddr, seeds, 0)
	if err != nil {
		return nil, err
	}
	c.created++
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

// Lose moves a node whose machine is gone for good from Nodes to Lost.
func (c *Cluster) Lose(p *Proc) {
	if i := slices.Index(c.Nodes, p); i >= 0 {
		c.Nodes = slices.Delete(c.Nodes, i, i+1)
		c.Lost = append(c.Lost, p)
	}
}

// EveryNode is every object node ever started whose disk is still there,
// retired ones last.
func (c *Cluster) EveryNode() []*Proc {
	return append(append([]*Proc{}, c.Nodes...), c.Retired...)
}

// EveryLog is the log of every object node ever started, lost ones too.
func (c *Cluster) EveryLog() []string {
	var paths []string
	for _, p := range append(c.EveryNode(), c.Lost...) {
		paths = append(paths, p.LogPath())
	}
	return paths
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
	defer c.transport.CloseIdleConnections()
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
