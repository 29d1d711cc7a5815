package test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	tc "hellochat/internal/testcluster"
	"hellochat/security"
)

// scrape reads a Prometheus text exposition: series ("name" or
// `name{label="value",...}`) to value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %s", addr, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitMetric waits until series at addr satisfies ok.
func waitMetric(t *testing.T, addr, series string, ok func(float64) bool, what string) float64 {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		v, found := scrape(t, addr)[series]
		if found && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s at %s is %v (found %v)", what, series, addr, v, found)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func above(x float64) func(float64) bool { return func(v float64) bool { return v > x } }

// annAndBob joins ann, then bob, to room; ann has seen bob join.
func annAndBob(t *testing.T, c *tc.Cluster, room string) (ann, bob *tc.Client) {
	t.Helper()
	ann = tc.Dial(t, c.URL(), room, "ann", true)
	ann.Expect(wait, "presence", tc.IsType("presence"))
	bob = tc.Dial(t, c.URL(), room, "bob", true)
	ann.Expect(wait, "bob joining", func(f tc.Frame) bool { return f.Type == "joined" && f.Name == "bob" })
	return ann, bob
}

// annTellsBob has ann send n messages, bob shown each, ann acked the last.
func annTellsBob(ann, bob *tc.Client, n int) {
	for i := 0; i < n; i++ {
		ann.Post(fmt.Sprintf("m-%d", i), "hello")
	}
	for i := 0; i < n; i++ {
		bob.Expect(wait, "message", tc.IsMessage)
	}
	ann.Expect(wait, "last ack", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == fmt.Sprintf("m-%d", n-1) })
}

// TestMetricsMoveWithEvents: each metric family moves when its event
// happens, scraped over HTTP from the admin listeners of a real
// in-process cluster: browsers connected, Raft proposals, commits and
// fsyncs, Pebble, the Go and process collectors, and a leader killed.
func TestMetricsMoveWithEvents(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	rtAdmin := c.Router.AdminAddr()
	room := "metrics-room"
	leader := c.Leader(room)
	nodeAdmin := c.Nodes[leader].AdminAddr()

	before := scrape(t, nodeAdmin)
	for _, series := range []string{"hellochat_pebble_disk_usage_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if before[series] <= 0 {
			t.Fatalf("node %s: %s = %v, want > 0", nodeAdmin, series, before[series])
		}
	}
	if scrape(t, rtAdmin)["go_goroutines"] <= 0 {
		t.Fatal("router: no Go collector")
	}

	ann, bob := annAndBob(t, c, room)
	waitMetric(t, rtAdmin, "hellochat_router_sessions", func(v float64) bool { return v == 2 }, "two browsers")
	annTellsBob(ann, bob, 5)
	nd := scrape(t, nodeAdmin)
	for _, series := range []string{"hellochat_raft_proposals_total", "hellochat_raft_commit_seconds_count",
		"hellochat_raft_log_sync_seconds_count", "hellochat_raft_apply_seconds_count"} {
		if nd[series] <= before[series] {
			t.Errorf("node %s did not move: %v -> %v", series, before[series], nd[series])
		}
	}
	if nd["hellochat_raft_shards_led"] < 1 || nd["hellochat_raft_replicas"] < 1 {
		t.Errorf("leader reports %v shards led, %v replicas", nd["hellochat_raft_shards_led"], nd["hellochat_raft_replicas"])
	}

	// Kill the room's leader: the survivors see a leader change, and the
	// room takes messages again.
	var survivor string
	changes := map[string]float64{}
	for i, node := range c.Nodes {
		if i != leader {
			survivor = node.AdminAddr()
			changes[survivor] = scrape(t, survivor)["hellochat_raft_leader_changes_total"]
		}
	}
	c.Kill(leader)
	ann.Post("after-kill", "still here")
	ann.Expect(wait, "ack after the kill", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "after-kill" })
	waitMetric(t, survivor, "hellochat_raft_leader_changes_total", above(changes[survivor]), "a survivor saw leaders change")
}

// TestObjectMetricsMoveWithEvents: the node's durable-object metrics move
// with the events of the chat app's room, on the node that runs it: the
// upgrades are fetches, each chat message one socket message, each
// browser's leaving one socket close, none failed; its batches count as
// object commits, and the room as an active object. The router counts the
// object's browsers as sessions.
func TestObjectMetricsMoveWithEvents(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	room := "object-metrics"
	nodeAdmin := c.Nodes[c.Leader(room)].AdminAddr()
	events := func(kind string) string { return `hellochat_node_object_events_total{kind="` + kind + `"}` }
	failures := func(kind string) string { return `hellochat_node_object_event_failures_total{kind="` + kind + `"}` }
	before := scrape(t, nodeAdmin)
	for _, kind := range []string{"fetch", "call", "socket_message", "socket_close", "socket_error", "socket_drained", "alarm"} {
		if _, ok := before[events(kind)]; !ok {
			t.Errorf("%s missing before any event", events(kind))
		}
	}

	ann, bob := annAndBob(t, c, room)
	waitMetric(t, c.Router.AdminAddr(), "hellochat_router_sessions", func(v float64) bool { return v == 2 }, "two browsers")
	waitMetric(t, nodeAdmin, "hellochat_node_active_objects", above(0), "the room on its leader")
	waitMetric(t, nodeAdmin, events("fetch"), above(before[events("fetch")]+1), "two upgrades")

	const n = 5
	annTellsBob(ann, bob, n)
	waitMetric(t, nodeAdmin, events("socket_message"), above(before[events("socket_message")]+n-1), "a socket message per chat message")
	if v := scrape(t, nodeAdmin)["hellochat_node_object_commits_total"]; v <= before["hellochat_node_object_commits_total"] {
		t.Errorf("object commits did not move: %v -> %v", before["hellochat_node_object_commits_total"], v)
	}

	ann.Conn.Close(1000, "bye")
	bob.Conn.Close(1000, "bye")
	waitMetric(t, nodeAdmin, events("socket_close"), above(before[events("socket_close")]+1), "both browsers leaving")
	after := scrape(t, nodeAdmin)
	for _, kind := range []string{"fetch", "socket_message", "socket_close"} {
		if after[failures(kind)] != before[failures(kind)] {
			t.Errorf("%s moved: %v -> %v", failures(kind), before[failures(kind)], after[failures(kind)])
		}
	}
}

// TestHealthEndpoints: liveness and readiness over HTTP on the router's and
// nodes' admin listeners, and the gRPC health service on a node for a
// caller with a cluster certificate.
func TestHealthEndpoints(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	get := func(addr, path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, b.String()
	}
	for _, addr := range []string{c.Router.AdminAddr(), c.Nodes[0].AdminAddr()} {
		for _, path := range []string{"/livez", "/readyz", "/healthz"} {
			if code, body := get(addr, path); code != http.StatusOK || !strings.HasPrefix(body, "ok") {
				t.Errorf("GET %s%s: %d %q", addr, path, code, body)
			}
		}
	}
	conn := grpcConn(t, c, security.RoleRouter, c.Nodes[0].GRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, svc := range []string{"", "hellochat.Rooms"} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", svc, resp, err)
		}
	}
	// A stopped node's admin listener goes with it (an orchestrator's
	// liveness probe then fails).
	addr := c.Nodes[0].AdminAddr()
	c.Stop(0)
	if resp, err := http.Get("http://" + addr + "/livez"); err == nil {
		resp.Body.Close()
		t.Fatal("a stopped node's admin listener still answers")
	}
}

// TestSnapshotMetricsMoveWhenANodeJoins: a node added to a running cluster
// receives snapshots of the shards it gets, and the leaders count what they
// sent.
func TestSnapshotMetricsMoveWhenANodeJoins(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	ann := tc.Dial(t, c.URL(), "snapshot-room", "ann", true)
	ann.Post("s-1", "something to copy")
	ann.Expect(wait, "ack", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "s-1" })
	i := c.AddNode()
	// Placed by the ring of four: the new node must be a member first.
	c.WaitConverged(wait)
	tc.Eventually(t, 60*time.Second, func() error {
		if n := c.Nodes[i].Replicas(); n == 0 {
			return fmt.Errorf("the new node holds no replica yet")
		}
		return c.Placed()
	})
	got := scrape(t, c.Nodes[i].AdminAddr())
	if got["hellochat_raft_snapshot_received_bytes_total"] <= 0 || got["hellochat_raft_replicas"] <= 0 {
		t.Fatalf("the new node received %v snapshot bytes and holds %v replicas",
			got["hellochat_raft_snapshot_received_bytes_total"], got["hellochat_raft_replicas"])
	}
	var sent, count float64
	for _, n := range c.Nodes[:i] {
		m := scrape(t, n.AdminAddr())
		sent += m["hellochat_raft_snapshot_sent_bytes_total"]
		count += m["hellochat_raft_snapshots_sent_total"]
	}
	if sent <= 0 || count < got["hellochat_raft_replicas"] {
		t.Fatalf("the founders sent %v snapshots, %v bytes, for the new node's %v replicas", count, sent, got["hellochat_raft_replicas"])
	}
}
