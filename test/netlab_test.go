package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/internal/netlab"
	"hellochat/router"
)

// netlabCluster is three object nodes and a router, each on a host of its
// own in a lab of network namespaces, and a host for the browsers.
type netlabCluster struct {
	t    *testing.T
	lab  *netlab.Lab
	http *http.Client // from the browsers' host
}

func startNetlab(t *testing.T) *netlabCluster {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	if why := netlab.Usable(); why != "" {
		t.Skip("netlab: " + why)
	}
	bin := buildBinaries(t)
	lab, err := netlab.New("node1", "node2", "node3", "router1", "browsers")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lab.Close)
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	var gossip []string
	for _, n := range []string{"node1", "node2", "node3"} {
		gossip = append(gossip, lab.Host(n).IP+":7101")
	}
	start := func(host, bin string, args ...string) {
		log, err := os.Create(filepath.Join(dir, host+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := lab.Command(host, bin, args...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				t.Logf("--- %s log (last 3 KB):\n%s", host, tail(b, 3000))
			}
		})
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		ip := lab.Host(n).IP
		start(n, filepath.Join(bin, "objectnode"), "--id", n, "--data", filepath.Join(dir, n),
			"--grpc-addr", ip+":9101", "--gossip-addr", ip+":7101", "--join", strings.Join(gossip, ","),
			"--expect", "3", "--dev-pki", pki)
	}
	rip := lab.Host("router1").IP
	start("router1", filepath.Join(bin, "router"), "--id", "router1", "--http-addr", rip+":8080",
		"--admin-addr", rip+":8081", "--gossip-addr", rip+":7100", "--join", strings.Join(gossip, ","),
		"--dev-pki", pki)
	c := &netlabCluster{t: t, lab: lab,
		http: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: lab.DialContext("browsers")}}}
	c.waitHealthy("3 of 3 object nodes alive")
	return c
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (c *netlabCluster) get(path string) (string, error) {
	resp, err := c.http.Get("http://" + c.lab.Host("router1").IP + ":8081" + path)
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

// browser is a v2 WebSocket from the browsers' host.
type netlabBrowser struct {
	conn *websocket.Conn
	seen chan string // texts of messages, and "ack:ID" for acks
	done chan error
}

func (c *netlabCluster) browser(room, name string) *netlabBrowser {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := "ws://" + c.lab.Host("router1").IP + ":8080/ws?lines=1&room=" + room + "&name=" + name + "&key=" + name + "-netlab-key-0123456789"
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{router.SubprotocolV2},
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: c.lab.DialContext("browsers")}}})
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
				var f struct{ Type, ID, Text string }
				if json.Unmarshal([]byte(line), &f) != nil {
					continue
				}
				switch f.Type {
				case "message":
					b.seen <- f.Text
				case "ack":
					b.seen <- "ack:" + f.ID
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
