package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/apps/chat/wire"
	"hellochat/internal/launch"
	"hellochat/internal/netlab"
)

// netlabCluster is three object nodes and a router, each on a host of its
// own in a lab of network namespaces, and a host for the browsers.
type netlabCluster struct {
	t    *testing.T
	lab  *netlab.Lab
	c    *launch.Cluster
	http *http.Client // from the browsers' host
}

var _ launch.Network = (*netlab.Network)(nil)

func startNetlab(t *testing.T, routerFlags ...string) *netlabCluster {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if why := netlab.Usable(); why != "" {
		if netlab.Required() {
			t.Fatalf("netlab: CI=true needs the lab: %s", why)
		}
		t.Skip("netlab: " + why)
	}
	bin := buildBinaries(t)
	lab, err := netlab.New("node1", "node2", "node3", "router1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	nw, err := lab.Network("browsers")
	if err != nil {
		t.Fatal(err)
	}
	c := startLaunched(t, launch.Options{Bin: bin, Dir: t.TempDir(), Network: nw, RouterFlags: routerFlags})
	for _, p := range c.Nodes {
		if host, _, _ := net.SplitHostPort(p.GRPCAddr()); host != lab.Host(p.Name).IP {
			t.Fatalf("%s listens on %s, not on its host %s", p.Name, p.GRPCAddr(), lab.Host(p.Name).IP)
		}
	}
	nc := &netlabCluster{t: t, lab: lab, c: c, http: c.HTTPClient(3 * time.Second)}
	nc.waitHealthy("3 of 3 object nodes alive")
	return nc
}

func (c *netlabCluster) get(path string) (string, error) {
	resp, err := c.http.Get(c.c.Admin + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s", path, resp.Status)
	}
	return string(b), err
}

// waitHealthy waits until every shard has a leader and the admin health
// says want.
func (c *netlabCluster) waitHealthy(want string) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err := c.get("/healthz")
		if err == nil && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster not healthy (%q) within 60 s: %q %v", want, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *netlabCluster) leaderOf(room string) string {
	c.t.Helper()
	body, err := c.get("/api/cluster?rooms=" + room)
	if err != nil {
		c.t.Fatal(err)
	}
	var v roomsJSON
	if err := json.Unmarshal([]byte(body), &v); err != nil || len(v.Rooms) != 1 {
		c.t.Fatalf("rooms view %q: %v", body, err)
	}
	return v.Rooms[0].Leader
}

// netlabBrowser is a v2 WebSocket from a host of the lab; it sees
// message texts, "ack:ID", "joined:NAME" and "left:NAME".
type netlabBrowser struct {
	conn *websocket.Conn
	seen chan string // texts of messages, and "ack:ID" for acks
	done chan error
}

func (c *netlabCluster) browser(room, name string) *netlabBrowser {
	c.t.Helper()
	return c.browserOn("browsers", room, name)
}

// browserOn is a browser on another host of the lab, made if need be.
func (c *netlabCluster) browserOn(host, room, name string) *netlabBrowser {
	c.t.Helper()
	if _, err := c.lab.Addr(host); err != nil { // makes the host
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(c.c.Base, "http") + "/ws?lines=1&room=" + room + "&name=" + name + "&key=" + name + "-netlab-key-0123456789"
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolV2},
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: c.lab.Dialer(host)}}})
	if err != nil {
		c.t.Fatalf("browser %s: %v", name, err)
	}
	b := &netlabBrowser{conn: conn, seen: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				b.done <- err
				close(b.seen)
				return
			}
			for _, line := range strings.Split(string(data), "\n") {
				var f struct{ Type, ID, Text, Name string }
				if json.Unmarshal([]byte(line), &f) != nil {
					continue
				}
				switch f.Type {
				case "message":
					b.seen <- f.Text
				case "ack":
					b.seen <- "ack:" + f.ID
				case "joined", "left":
					b.seen <- f.Type + ":" + f.Name
				}
			}
		}
	}()
	c.t.Cleanup(func() { conn.CloseNow() })
	return b
}

func (b *netlabBrowser) send(t *testing.T, id, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg, _ := json.Marshal(map[string]string{"type": "send", "id": id, "text": text})
	if err := b.conn.Write(ctx, websocket.MessageText, msg); err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
}

// expect waits for every item of want to be seen, in any order.
func (b *netlabBrowser) expect(t *testing.T, what string, timeout time.Duration, want ...string) {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	deadline := time.After(timeout)
	for len(missing) > 0 {
		select {
		case s, ok := <-b.seen:
			if !ok {
				t.Fatalf("%s: the browser was disconnected: %v", what, <-b.done)
			}
			delete(missing, s)
		case <-deadline:
			t.Fatalf("%s: still missing after %v: %v", what, timeout, missing)
		}
	}
}

// TestNetlabPartitions runs the cluster on five hosts (network namespaces
// on a bridge, secured by default) and cuts links: a leader partitioned
// from everyone (both directions), then healed; then a one-way cut, where
// the leader can hear but not speak; then the other way, where it speaks
// but hears nothing. Each time the room moves to another
// leader, every message sent meanwhile is acknowledged and shown, and the
// browsers stay connected.
func TestNetlabPartitions(t *testing.T) {
	c := startNetlab(t)
	// phase finds a room node1 leads (placement may have moved leaders
	// since the last phase), checks it works, cuts, sends n messages, and
	// heals.
	phase := func(name string, cut func(), n int) {
		t.Helper()
		start := time.Now()
		room := ""
		for i := 0; room == ""; i++ {
			if r := fmt.Sprintf("%s-%d", name, i); c.leaderOf(r) == "node1" {
				room = r
			}
		}
		ann, bob := c.browser(room, "ann"), c.browser(room, "bob")
		ann.send(t, name+"-first", name+" before the cut")
		bob.expect(t, name+": a message before the cut", 10*time.Second, name+" before the cut")

		cut()
		var texts, acks []string
		for i := 0; i < n; i++ {
			id, text := fmt.Sprintf("%s-%d", name, i), fmt.Sprintf("%s %d", name, i)
			ann.send(t, id, text)
			texts, acks = append(texts, text), append(acks, "ack:"+id)
		}
		bob.expect(t, name+": messages shown", 30*time.Second, texts...)
		ann.expect(t, name+": messages acknowledged", 30*time.Second, append(acks, texts...)...)
		// The router's view follows gossip, which may lag the messages.
		deadline := time.Now().Add(30 * time.Second)
		for c.leaderOf(room) == "node1" {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the router still sees node1 leading %s after 30 s", name, room)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.lab.Heal()
		c.waitHealthy("3 of 3 object nodes alive")
		t.Logf("%s, then healed: %v", name, time.Since(start))
	}
	phase("partition", func() {
		c.lab.Cut("node1", "node2", "node3", "router1")
		c.lab.Cut("node2", "node1")
		c.lab.Cut("node3", "node1")
		c.lab.Cut("router1", "node1")
	}, 20)
	phase("mute", func() { c.lab.Cut("node1", "node2", "node3", "router1") }, 20)
	// The other way: node1 speaks (its heartbeats and votes arrive) but
	// hears nothing back.
	phase("deaf", func() {
		c.lab.Cut("node2", "node1")
		c.lab.Cut("node3", "node1")
		c.lab.Cut("router1", "node1")
	}, 20)
}

// TestNetlabDeadBrowserLeaves pulls the network from under a browser (its
// host cut off from the router both ways: no FIN, no RST) and checks the
// router ends its session within --dead-browser-after: once on a quiet
// connection (TCP keepalive finds it) and once while the room keeps
// talking to it (keepalive is silent while data waits unacknowledged;
// TCP_USER_TIMEOUT finds it).
func TestNetlabDeadBrowserLeaves(t *testing.T) {
	const deadAfter = 4 * time.Second
	c := startNetlab(t, "--dead-browser-after", deadAfter.String())
	for _, talking := range []bool{false, true} {
		name := "quiet"
		if talking {
			name = "talking"
		}
		host := "gone-" + name
		ann := c.browser("dead-"+name, "ann")
		bob := c.browserOn(host, "dead-"+name, "bob")
		ann.expect(t, name+": bob joins", 10*time.Second, "joined:bob")
		ann.send(t, name+"-hello", name+" hello")
		bob.expect(t, name+": bob is live", 10*time.Second, name+" hello")

		if err := c.lab.Cut(host, "router1"); err != nil {
			t.Fatal(err)
		}
		if err := c.lab.Cut("router1", host); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		stop := make(chan struct{})
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for i := 0; talking; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				msg, _ := json.Marshal(map[string]string{"type": "send", "id": fmt.Sprintf("t-%d", i), "text": "to the void"})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := ann.conn.Write(ctx, websocket.MessageText, msg)
				cancel()
				if err != nil {
					return
				}
			}
		}()
		// The kernel's clocks are coarse: allow it twice the bound.
		ann.expect(t, name+": bob leaves", 2*deadAfter+5*time.Second, "left:bob")
		close(stop)
		<-sent
		t.Logf("%s: bob left %v after his network went (bound %v)", name, time.Since(cut).Round(100*time.Millisecond), deadAfter)
		c.lab.Heal()
	}
}
