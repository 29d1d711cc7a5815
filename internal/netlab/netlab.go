// Package netlab builds a small network of Linux network namespaces on a
// bridge of its own, so a cluster can run on distinct addresses with real
// links between its members, and those links can be cut. Everything it
// creates lives in namespaces it made (the bridge too); the machine's own
// network is not touched. It needs root and iproute2.
package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Subnet is the lab's address range: it exists only inside the lab's
// namespaces.
const Subnet = "10.99.0.0/24"

// Lab is a switch namespace with a bridge, and hosts wired to it.
type Lab struct {
	prefix string
	sw     string

	mu    sync.Mutex
	hosts []Host
	ports map[string]int // the next port Addr gives out, per host
}

// Host is one namespace with one address on the lab's bridge.
type Host struct {
	Name string // what the caller called it
	NS   string // the namespace
	IP   string
}

// MaxHosts bounds a lab: hosts are numbered from .11 in a /24.
const MaxHosts = 240

// Usable says why a lab cannot be built here, or "" when it can: it
// builds and deletes a one-host lab, so a machine that allows namespaces
// but not bridges or veth pairs (some containers) says so too.
func Usable() string {
	if os.Geteuid() != 0 {
		return "netlab needs root (network namespaces)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "netlab needs iproute2's ip command"
	}
	l, err := New("probe")
	if err != nil {
		return "this machine does not allow a lab of network namespaces: " + err.Error()
	}
	l.Close()
	return ""
}

// Required reports whether a lab this machine cannot build must fail the
// run instead of skipping it: in CI (CI=true) a skipped lab would pass
// without the network faults ever being tried.
func Required() bool { return os.Getenv("CI") == "true" }

func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func run(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// New builds a lab with one host per name, at 10.99.0.11, .12, ...; Add
// and Addr add more later.
func New(names ...string) (*Lab, error) {
	l := &Lab{prefix: "hc" + suffix(), ports: map[string]int{}}
	l.sw = l.prefix + "-sw"
	if err := run("netns", "add", l.sw); err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"-n", l.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", l.sw, "link", "set", "br0", "up"},
	} {
		if err := run(args...); err != nil {
			l.Close()
			return nil, err
		}
	}
	for _, name := range names {
		if _, err := l.Add(name); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Add wires one more host to the lab's bridge.
func (l *Lab) Add(name string) (Host, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.add(name)
}

func (l *Lab) add(name string) (Host, error) {
	i := len(l.hosts)
	if i >= MaxHosts {
		return Host{}, fmt.Errorf("netlab: no room for host %s: a lab has at most %d", name, MaxHosts)
	}
	for _, h := range l.hosts {
		if h.Name == name {
			return Host{}, fmt.Errorf("netlab: host %s exists", name)
		}
	}
	h := Host{Name: name, NS: fmt.Sprintf("%s-%d", l.prefix, i), IP: fmt.Sprintf("10.99.0.%d", 11+i)}
	// Listed before it is built, so Close deletes what a failed step
	// left.
	l.hosts = append(l.hosts, h)
	port := fmt.Sprintf("p%d", i)
	for _, args := range [][]string{
		{"netns", "add", h.NS},
		{"link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", port, "netns", l.sw},
		{"-n", l.sw, "link", "set", port, "master", "br0"},
		{"-n", l.sw, "link", "set", port, "up"},
		{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
	} {
		if err := run(args...); err != nil {
			return Host{}, err
		}
	}
	return h, nil
}

// Hosts lists the lab's hosts in the order they were added.
func (l *Lab) Hosts() []Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Host(nil), l.hosts...)
}

// FirstPort is the first port Addr gives out on each host.
const FirstPort = 7000

// Addr returns an address for one more listener on host name, made when
// first asked for: ports count up from FirstPort on each host.
func (l *Lab) Addr(name string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.lookup(name)
	if !ok {
		var err error
		if h, err = l.add(name); err != nil {
			return "", err
		}
	}
	p := l.ports[name]
	if p == 0 {
		p = FirstPort
	}
	l.ports[name] = p + 1
	return net.JoinHostPort(h.IP, strconv.Itoa(p)), nil
}

func (l *Lab) lookup(name string) (Host, bool) {
	for _, h := range l.hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Host returns the host called name.
func (l *Lab) Host(name string) Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	h, ok := l.lookup(name)
	if !ok {
		panic("netlab: no host " + name)
	}
	return h
}

// Command runs a program inside a host's namespace (ip netns exec replaces
// itself with the program: the process is the program's).
func (l *Lab) Command(host string, bin string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.Host(host).NS, bin}, args...)...)
}

// Cut stops packets from host from reaching each of to, one direction
// only: a blackhole route in from's namespace. Cut both ways for a
// partition.
func (l *Lab) Cut(from string, to ...string) error {
	for _, t := range to {
		if err := run("-n", l.Host(from).NS, "route", "add", "blackhole", l.Host(t).IP+"/32"); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes every cut (deleting a route that is not there fails, and
// is ignored).
func (l *Lab) Heal() {
	hosts := l.Hosts()
	for _, h := range hosts {
		for _, t := range hosts {
			exec.Command("ip", "-n", h.NS, "route", "del", "blackhole", t.IP+"/32").Run()
		}
	}
}

// Dialer dials from inside a host's namespace.
func (l *Lab) Dialer(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = l.within(host, func() error {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Listen listens inside a host's namespace; the socket stays there, and
// is served from any thread.
func (l *Lab) Listen(host, network, addr string) (ln net.Listener, err error) {
	err = l.within(host, func() error {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// within runs fn on a thread that joined host's namespace, and is thrown
// away after: sockets fn makes belong to that namespace.
func (l *Lab) within(host string, fn func() error) error {
	ns := "/var/run/netns/" + l.Host(host).NS
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime ends a thread whose goroutine exits
		// while locked, so the namespace dies with it.
		runtime.LockOSThread()
		f, err := os.Open(ns)
		if err != nil {
			done <- fmt.Errorf("netlab: enter %s: %w", ns, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("netlab: enter %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// Close deletes every namespace of the lab, and with them its links.
func (l *Lab) Close() {
	for _, h := range l.Hosts() {
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	exec.Command("ip", "netns", "del", l.sw).Run()
}

// Network runs each process of a cluster on a host of its own, named
// after the process and made when first given an address, and dials from
// host tools (the load clients' and status calls' host). It is a
// launch.Network.
type Network struct {
	*Lab
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Network places a cluster in the lab, its tools on host tools (made now
// if the lab lacks it).
func (l *Lab) Network(tools string) (*Network, error) {
	l.mu.Lock()
	_, ok := l.lookup(tools)
	l.mu.Unlock()
	if !ok {
		if _, err := l.Add(tools); err != nil {
			return nil, err
		}
	}
	return &Network{Lab: l, dial: l.Dialer(tools)}, nil
}

// DialContext dials from the tools' host.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return n.dial(ctx, network, addr)
}
