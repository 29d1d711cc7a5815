package cluster

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"
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
// seen alive again on new addresses.
func TestMembershipKeepsDownNodesPlaced(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	start := func(i int, known []Meta) *Membership {
		id := fmt.Sprintf("node%d", i+1)
		m, err := Start(Config{
			Meta:    Meta{ID: id, Role: RoleNode, GRPC: "127.0.0.1:" + strconv.Itoa(9000+i)},
			Bind:    addrs[i],
			Seeds:   addrs,
			Timings: fastTimings(),
			Known:   known,
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

	router, err := Start(Config{Meta: Meta{ID: "router1", Role: RoleRouter}, Bind: freeAddr(t), Seeds: addrs[:1], Timings: fastTimings()})
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
}
