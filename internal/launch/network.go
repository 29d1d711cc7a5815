package launch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Network is where a cluster's processes run and how tools reach them:
// loopback on this machine (Loopback), or a lab of network namespaces
// where each process has a host and an address of its own.
type Network interface {
	// Addr returns an address for one more listener of process proc
	// (each call a different one).
	Addr(proc string) (string, error)
	// Command returns the command that runs bin as process proc, on its
	// host.
	Command(proc, bin string, args ...string) *exec.Cmd
	// DialContext dials a process from where the tools (load clients,
	// status calls) run.
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Loopback runs every process on this machine, on free ports of
// 127.0.0.1.
type Loopback struct{}

// Addr returns 127.0.0.1 and a port free for TCP and UDP.
func (Loopback) Addr(string) (string, error) {
	p, err := FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// Command runs bin here.
func (Loopback) Command(_, bin string, args ...string) *exec.Cmd { return exec.Command(bin, args...) }

// DialContext dials from here.
func (Loopback) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, network, addr)
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
