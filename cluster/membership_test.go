package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"hellochat/security"
)

func fastTimings() Timings {
	return Timings{
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, SuspicionMult: 2,
		GossipInterval: 50 * time.Millisecond, PushPullInterval: 500 * time.Millisecond,
		DeadNodeReclaimTime: 100 * time.Millisecond, RejoinInterval: 100 * time.Millisecond,
	}
}

func freeAddr(t *testing.T) string {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return "127.0.0.1:" + strconv.Itoa(port)
		}
	}
	t.Fatal("no free port")
	return ""
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Real memberlist over loopback: members find each other, a killed member
// is seen down but keeps its place, a router started while it is down still
// learns of it (push/pull of the known set), and the restarted member is
// seen alive again on new addresses. With certificates, what the router
// learns of the down node is node3's own signed meta, and node3 restarts
// from a known set it checks again.
func TestMembershipKeepsDownNodesPlaced(t *testing.T) {
	t.Run("dev", func(t *testing.T) { testKeepsDownNodesPlaced(t, "") })
	t.Run("certificates", func(t *testing.T) { testKeepsDownNodesPlaced(t, filepath.Join(t.TempDir(), "pki")) })
}

func testKeepsDownNodesPlaced(t *testing.T, pki string) {
	creds := func(role, id string) *security.Settings {
		if pki == "" {
			return nil
		}
		return devCreds(t, pki, role, id)
	}
	var key []byte
	if pki != "" {
		key = creds(security.RoleRouter, "router1").GossipKey
	}
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	start := func(i int, known []Meta) *Membership {
		id := fmt.Sprintf("node%d", i+1)
		m, err := Start(Config{
			Meta:      Meta{ID: id, Role: RoleNode, GRPC: "127.0.0.1:" + strconv.Itoa(9000+i)},
			Bind:      addrs[i],
			Seeds:     addrs,
			Timings:   fastTimings(),
			Known:     known,
			GossipKey: key,
			Security:  creds(security.RoleNode, id),
		})
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		return m
	}
	ms := []*Membership{start(0, nil), start(1, nil), start(2, nil)}
	defer func() {
		for _, m := range ms {
			if m != nil {
				m.Shutdown()
			}
		}
	}()
	for _, m := range ms {
		waitFor(t, "3 live nodes", func() bool { return m.Placement().LiveNodes() == 3 })
	}
	before, _ := ms[0].Placement().Owner("some-room")

	ms[2].Shutdown() // no Leave: a crash
	known := ms[2].Placement().Nodes()
	ms[2] = nil
	waitFor(t, "node3 seen down", func() bool { return !ms[0].Placement().Alive("node3") })
	if got := len(ms[0].Placement().Nodes()); got != 3 {
		t.Fatalf("node1 knows %d nodes after node3 died, want 3", got)
	}
	after, _ := ms[0].Placement().Owner("some-room")
	if before.ID != after.ID {
		t.Fatalf("room moved from %s to %s on a crash", before.ID, after.ID)
	}

	router, err := Start(Config{Meta: Meta{ID: "router1", Role: RoleRouter}, Bind: freeAddr(t), Seeds: addrs[:1], Timings: fastTimings(),
		GossipKey: key, Security: creds(security.RoleRouter, "router1")})
	if err != nil {
		t.Fatal(err)
	}
	defer router.Shutdown()
	waitFor(t, "router learns all 3 nodes", func() bool { return len(router.Placement().Nodes()) == 3 })
	if router.Placement().Alive("node3") {
		t.Fatal("router thinks node3 is alive")
	}
	if o, _ := router.Placement().Owner("some-room"); o.ID != before.ID {
		t.Fatalf("router places some-room on %s, nodes on %s", o.ID, before.ID)
	}

	ms[2] = start(2, known)
	waitFor(t, "node3 alive again", func() bool { return ms[0].Placement().Alive("node3") && router.Placement().Alive("node3") })
	if got := len(ms[2].Placement().Nodes()); got != 3 {
		t.Fatalf("node3 restarted knowing %d nodes, want 3", got)
	}
	for _, m := range append(ms, router) {
		if n := m.Refused(); n != 0 {
			t.Fatalf("%s refused %d metas of a healthy cluster", m.Meta().ID, n)
		}
	}
}

// A peer's push (the known set it sends in push/pull) cannot replace the
// metadata of a member that is alive: its own gossip speaks for it. What a
// push says of a member nobody sees is still learned.
func TestPushCannotRewriteALiveMember(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t)}
	var ms []*Membership
	for i := range addrs {
		m, err := Start(Config{
			Meta:    Meta{ID: fmt.Sprintf("node%d", i+1), Role: RoleNode, GRPC: "127.0.0.1:" + strconv.Itoa(9100+i)},
			Bind:    addrs[i],
			Seeds:   addrs,
			Timings: fastTimings(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Shutdown()
		ms = append(ms, m)
	}
	waitFor(t, "2 live nodes", func() bool { return ms[1].Placement().LiveNodes() == 2 })
	forged := Meta{ID: "node1", Role: RoleNode, GRPC: "127.0.0.1:6666", Started: time.Now().Add(time.Hour).UnixNano()}
	ghost := Meta{ID: "node9", Role: RoleNode, GRPC: "127.0.0.1:9999", Started: 1}
	push, _ := json.Marshal([]Meta{forged})
	(*delegate)(ms[1]).MergeRemoteState(push, false)
	push, _ = json.Marshal([]Meta{ghost})
	(*delegate)(ms[1]).MergeRemoteState(push, false)
	// Pushes are taken in order: once node9 is known, the forged one was seen.
	waitFor(t, "node9 learned from the push", func() bool {
		_, ok := ms[1].Placement().Node("node9")
		return ok
	})
	if n1, _ := ms[1].Placement().Node("node1"); n1.GRPC != "127.0.0.1:9100" {
		t.Fatalf("node1 is now at %s, from a push", n1.GRPC)
	}
	// Nor can a push about node2 itself change node2's view of itself.
	self := Meta{ID: "node2", Role: RoleNode, GRPC: "127.0.0.1:6667", Started: time.Now().Add(time.Hour).UnixNano()}
	push, _ = json.Marshal([]Meta{self, {ID: "node8", Role: RoleNode, GRPC: "127.0.0.1:9998", Started: 1}})
	(*delegate)(ms[1]).MergeRemoteState(push, false)
	waitFor(t, "node8 learned from the push", func() bool {
		_, ok := ms[1].Placement().Node("node8")
		return ok
	})
	if n2, _ := ms[1].Placement().Node("node2"); n2.GRPC != "127.0.0.1:9101" {
		t.Fatalf("node2 sees itself at %s, from a push", n2.GRPC)
	}
}
