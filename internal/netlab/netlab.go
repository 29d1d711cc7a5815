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
	"strings"

	"golang.org/x/sys/unix"
)

// Subnet is the lab's address range: it exists only inside the lab's
// namespaces.
const Subnet = "10.99.0.0/24"

// Lab is a switch namespace with a bridge, and hosts wired to it.
type Lab struct {
	prefix string
	sw     string
	Hosts  []Host
}

// Host is one namespace with one address on the lab's bridge.
type Host struct {
	Name string // what the caller called it
	NS   string // the namespace
	IP   string
}

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

// New builds a lab with one host per name, at 10.99.0.11, .12, ...
func New(names ...string) (*Lab, error) {
	l := &Lab{prefix: "hc" + suffix()}
	l.sw = l.prefix + "-sw"
	if err := run("netns", "add", l.sw); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"-n", l.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", l.sw, "link", "set", "br0", "up"},
	}
	for i, name := range names {
		h := Host{Name: name, NS: fmt.Sprintf("%s-%d", l.prefix, i), IP: fmt.Sprintf("10.99.0.%d", 11+i)}
		l.Hosts = append(l.Hosts, h)
		port := fmt.Sprintf("p%d", i)
		steps = append(steps,
			[]string{"netns", "add", h.NS},
			[]string{"link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", port, "netns", l.sw},
			[]string{"-n", l.sw, "link", "set", port, "master", "br0"},
			[]string{"-n", l.sw, "link", "set", port, "up"},
			[]string{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			[]string{"-n", h.NS, "link", "set", "eth0", "up"},
			[]string{"-n", h.NS, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Host returns the host called name.
func (l *Lab) Host(name string) Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	panic("netlab: no host " + name)
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
	for _, h := range l.Hosts {
		for _, t := range l.Hosts {
			exec.Command("ip", "-n", h.NS, "route", "del", "blackhole", t.IP+"/32").Run()
		}
	}
}

// DialContext dials from inside a host's namespace: the socket is made by
// a thread that joined the namespace and is thrown away after.
func (l *Lab) DialContext(host string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	ns := "/var/run/netns/" + l.Host(host).NS
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		done := make(chan result, 1)
		go func() {
			// Never unlocked: the runtime ends a thread whose goroutine
			// exits while locked, so the namespace dies with it.
			runtime.LockOSThread()
			f, err := os.Open(ns)
			if err != nil {
				done <- result{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				done <- result{nil, fmt.Errorf("netlab: enter %s: %w", ns, err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			done <- result{c, err}
		}()
		r := <-done
		return r.c, r.err
	}
}

// Close deletes every namespace of the lab, and with them its links.
func (l *Lab) Close() {
	for _, h := range l.Hosts {
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	exec.Command("ip", "netns", "del", l.sw).Run()
}
