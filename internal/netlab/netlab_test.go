package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func newLab(t *testing.T, names ...string) *Lab {
	t.Helper()
	if why := Usable(); why != "" {
		if Required() {
			t.Fatalf("CI=true needs the lab: %s", why)
		}
		t.Skip(why)
	}
	l, err := New(names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// TestAddrMakesHosts: a process's first address makes its host, later
// ones count up its ports, and the program a host runs sees that address.
func TestAddrMakesHosts(t *testing.T) {
	l := newLab(t)
	a1, err := l.Addr("a")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := l.Addr("a")
	b1, _ := l.Addr("b")
	ha, pa1, _ := net.SplitHostPort(a1)
	ha2, pa2, _ := net.SplitHostPort(a2)
	hb, pb1, _ := net.SplitHostPort(b1)
	if ha != ha2 || ha == hb || pa1 == pa2 || pa1 != pb1 {
		t.Fatalf("addresses a %s %s, b %s: want one host per name, ports counting per host", a1, a2, b1)
	}
	if got := len(l.Hosts()); got != 2 {
		t.Fatalf("%d hosts, want 2", got)
	}
	if _, err := l.Add("a"); err == nil {
		t.Fatal("a second host a was made")
	}
	out, err := l.Command("a", "ip", "-4", "-o", "addr", "show", "eth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " "+ha+"/24") {
		t.Fatalf("host a's eth0: %v %s, want %s", err, out, ha)
	}
}

// TestCutAndHeal: a cut drops one direction only, and Heal restores it.
func TestCutAndHeal(t *testing.T) {
	l := newLab(t, "client", "server")
	ln, err := l.Listen("server", "tcp", l.Host("server").IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	greet := func(from string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := l.Dialer(from)(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		if err == nil && string(b) != "hi" {
			err = errors.New("read " + string(b))
		}
		return err
	}
	if err := greet("client"); err != nil {
		t.Fatalf("before any cut: %v", err)
	}
	if err := l.Cut("client", "server"); err != nil {
		t.Fatal(err)
	}
	if err := greet("client"); err == nil {
		t.Fatal("client reached server through a cut")
	}
	l.Heal()
	if err := greet("client"); err != nil {
		t.Fatalf("after the heal: %v", err)
	}
	// The server's replies dropped: the handshake cannot finish.
	if err := l.Cut("server", "client"); err != nil {
		t.Fatal(err)
	}
	if err := greet("client"); err == nil {
		t.Fatal("client reached server while its replies were cut")
	}
	l.Heal()
	if err := greet("client"); err != nil {
		t.Fatalf("after the second heal: %v", err)
	}
}

// TestRequiredInCI: CI=true, and only that, turns an unusable lab from a
// skip into a failure.
func TestRequiredInCI(t *testing.T) {
	for _, c := range []struct {
		env  string
		want bool
	}{{"true", true}, {"", false}, {"false", false}, {"1", false}} {
		t.Setenv("CI", c.env)
		if got := Required(); got != c.want {
			t.Errorf("CI=%q: Required() = %v, want %v", c.env, got, c.want)
		}
	}
}
