// Package launch runs a hellochat cluster as real processes on loopback:
// object nodes and a router started from built binaries, each on free
// ports, which can be killed with -9, paused with SIGSTOP, and restarted.
// Tests and the failover experiment share it.
package launch

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hellochat/cluster"
)

// Proc is one process of the cluster.
type Proc struct {
	Name string
	bin  string
	args []string
	log  string
	cmd  *exec.Cmd
	exit chan struct{} // closed when the current process has exited
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
	Nodes  []*Proc
	Router *Proc
	Base   string // the router's http://host:port
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
	c := &Cluster{Dir: o.Dir}
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
		c.Nodes = append(c.Nodes, &Proc{Name: id, bin: filepath.Join(o.Bin, "objectnode"), log: filepath.Join(o.Dir, id+".log"),
			args: append([]string{"--id", id, "--data", filepath.Join(o.Dir, id), "--grpc-addr", "127.0.0.1:" + strconv.Itoa(gp),
				"--gossip-addr", gossip[i], "--join", strings.Join(gossip, ","), "--expect", strconv.Itoa(o.Nodes)}, o.NodeFlags...)})
	}
	hp, err := FreePort()
	if err != nil {
		return nil, err
	}
	rgp, err := FreePort()
	if err != nil {
		return nil, err
	}
	c.Base = "http://127.0.0.1:" + strconv.Itoa(hp)
	c.Router = &Proc{Name: "router1", bin: filepath.Join(o.Bin, "router"), log: filepath.Join(o.Dir, "router1.log"),
		args: append([]string{"--http-addr", "127.0.0.1:" + strconv.Itoa(hp), "--gossip-addr", "127.0.0.1:" + strconv.Itoa(rgp),
			"--join", strings.Join(gossip, ",")}, o.RouterFlags...)}
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
	resp, err := client.Get(c.Base + "/api/cluster")
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

// FreePort returns a port free for both TCP and UDP on 127.0.0.1.
func FreePort() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("launch: no free TCP+UDP port")
}
