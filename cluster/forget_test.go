package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hellochat/security"
)

// forgetRig is three object nodes and a router on real gossip over
// loopback, with certificates from one development PKI; node3 runs
// incarnation "r1".
type forgetRig struct {
	t      *testing.T
	pki    string
	addrs  []string
	logs   []*knownLog
	ms     []*Membership // node1..node3, nil while down
	router *Membership
}

func newForgetRig(t *testing.T) *forgetRig {
	r := &forgetRig{t: t, pki: filepath.Join(t.TempDir(), "pki"),
		addrs: []string{freeAddr(t), freeAddr(t), freeAddr(t)},
		logs:  []*knownLog{{}, {}, {}}, ms: make([]*Membership, 3)}
	t.Cleanup(func() {
		for _, m := range append(r.ms, r.router) {
			if m != nil {
				m.Shutdown()
			}
		}
	})
	for i := range r.ms {
		r.ms[i] = r.start(i, "r1", nil, nil)
	}
	router := devCreds(t, r.pki, security.RoleRouter, "router1")
	var err error
	r.router, err = Start(Config{Meta: Meta{ID: "router1", Role: RoleRouter}, Bind: freeAddr(t), Seeds: r.addrs,
		Timings: fastTimings(), GossipKey: router.GossipKey, Security: router})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.members() {
		waitFor(t, "3 live nodes", func() bool { return m.Placement().LiveNodes() == 3 })
	}
	return r
}

// start starts node i as incarnation replica from known.
func (r *forgetRig) start(i int, replica string, known []Meta, onConflict func(error)) *Membership {
	r.t.Helper()
	m, err := r.try(i, replica, known, r.addrs, onConflict)
	if err != nil {
		r.t.Fatalf("start node%d: %v", i+1, err)
	}
	return m
}

func (r *forgetRig) try(i int, replica string, known []Meta, seeds []string, onConflict func(error)) (*Membership, error) {
	id := fmt.Sprintf("node%d", i+1)
	sec := devCreds(r.t, r.pki, security.RoleNode, id)
	return Start(Config{
		Meta:       Meta{ID: id, Role: RoleNode, GRPC: fmt.Sprintf("127.0.0.1:%d", 9200+i), Replica: replica},
		Bind:       r.addrs[i],
		Seeds:      seeds,
		Timings:    fastTimings(),
		Known:      known,
		GossipKey:  sec.GossipKey,
		Security:   sec,
		OnKnown:    r.logs[i].save,
		OnConflict: onConflict,
	})
}

// members are the live nodes and the router.
func (r *forgetRig) members() []*Membership {
	var out []*Membership
	for _, m := range append(r.ms, r.router) {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

// crash stops node i without a leave and waits until the others see it down.
func (r *forgetRig) crash(i int) {
	id := r.ms[i].Meta().ID
	r.ms[i].Shutdown()
	r.ms[i] = nil
	for _, m := range r.members() {
		waitFor(r.t, id+" seen down", func() bool { return !m.Placement().Alive(id) })
	}
}

// tombstone is node3's incarnation replica forgotten, signed by signer.
func (r *forgetRig) tombstone(signer *security.Settings, replica string) Tombstone {
	t, err := SignTombstone(signer, Tombstone{Node: "node3", Replica: replica, At: time.Now().UnixNano()})
	if err != nil {
		r.t.Fatal(err)
	}
	return t
}

// inRing reports whether m's ring holds node id (as owner of some shard or
// one of three replicas).
func inRing(m *Membership, id string) bool {
	p := m.Placement()
	for s := 0; s < Partitions; s++ {
		reps, _ := p.Replicas(s, 3)
		for _, rep := range reps {
			if rep.ID == id {
				return true
			}
		}
	}
	return false
}

// last is the known set a node persisted last.
func (k *knownLog) last() []Meta {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.sets) == 0 {
		return nil
	}
	return k.sets[len(k.sets)-1]
}

// A tombstone signed by a router's or a node's certificate is refused,
// whether handed to Forget or pushed in push/pull state: node3 stays in
// every ring, and each pushed forgery is counted.
func TestTombstoneNotSignedByAnAdminIsRefused(t *testing.T) {
	r := newForgetRig(t)
	r.crash(2)
	node3, _ := r.ms[0].Placement().Node("node3")
	forged := []Tombstone{
		r.tombstone(devCreds(t, r.pki, security.RoleRouter, "router1"), "r1"),
		r.tombstone(devCreds(t, r.pki, security.RoleNode, "node1"), "r1"),
	}
	for i, f := range forged {
		if err := r.ms[0].Forget(f); !errors.Is(err, errNotAdmin) {
			t.Fatalf("Forget of forged tombstone %d: %v, want it refused as not an admin's", i, err)
		}
	}
	// An admin's signature over another tombstone does not carry over.
	admin := r.tombstone(devCreds(t, r.pki, security.RoleAdmin, "admin"), "r1")
	tampered := admin
	tampered.Proof = &Proof{Meta: []byte(`{"node":"node2","replica":"r1","at":1}`), Sig: admin.Proof.Sig, Cert: admin.Proof.Cert}
	unsigned := Tombstone{Node: "node3", Replica: "r1", At: 1}
	before := r.ms[1].Refused()
	push, _ := json.Marshal([]Meta{forged[0].entry(), forged[1].entry(), tampered.entry(), unsigned.entry()})
	(*delegate)(r.ms[1]).MergeRemoteState(push, false)
	waitFor(t, "node2 refuses the 4 pushed tombstones", func() bool { return r.ms[1].Refused() >= before+4 })
	for _, m := range r.members() {
		if len(m.Tombstones()) != 0 {
			t.Fatalf("%s holds tombstones %v", m.Meta().ID, m.Tombstones())
		}
		if got, ok := m.Placement().Node("node3"); !ok || got.Replica != node3.Replica || !inRing(m, "node3") {
			t.Fatalf("%s no longer places node3: %+v %v", m.Meta().ID, got, ok)
		}
		if _, ok := m.Placement().Node("node2"); !ok {
			t.Fatalf("%s forgot node2", m.Meta().ID)
		}
	}
	if _, ok := r.logs[1].ever(func(m Meta) bool { return m.Role == RoleForgotten }); ok {
		t.Fatal("node2 persisted a forged tombstone")
	}
}

// An admin's tombstone handed to one node reaches every member: node3
// leaves every ring and known set, the tombstone is persisted, and a node
// restarted from what it persisted (alone, so nobody tells it again) still
// holds it, even from a known set that still has node3's meta.
func TestForgetRemovesTheNodeEverywhereAndPersists(t *testing.T) {
	r := newForgetRig(t)
	r.crash(2)
	node3, _ := r.ms[0].Placement().Node("node3")
	if err := r.ms[0].Forget(r.tombstone(devCreds(t, r.pki, security.RoleAdmin, "admin"), "r1")); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.members() {
		waitFor(t, m.Meta().ID+" forgets node3", func() bool {
			_, known := m.Placement().Node("node3")
			return !known && m.Placement().RingSize() == 2 && len(m.Tombstones()) == 1
		})
		if inRing(m, "node3") {
			t.Fatalf("%s still places shards on node3", m.Meta().ID)
		}
	}
	waitFor(t, "node2 persists the tombstone", func() bool {
		for _, e := range r.logs[1].last() {
			if e.Role == RoleForgotten {
				return true
			}
		}
		return false
	})
	saved := r.logs[1].last()
	for _, e := range saved {
		if e.ID == "node3" && e.Role == RoleNode {
			t.Fatalf("node2 persisted node3's meta with its tombstone: %+v", e)
		}
	}
	r.ms[1].Shutdown()
	r.ms[1] = nil
	r.ms[0].Shutdown()
	r.ms[0] = nil
	r.router.Shutdown()
	r.router = nil

	// node2 alone, from its disk, and from a disk that kept node3's meta
	// beside the tombstone (as if written before it).
	stale := append([]Meta{node3}, saved...)
	for _, known := range [][]Meta{saved, stale} {
		m, err := r.try(1, "r1", known, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.Placement().Node("node3"); ok || len(m.Tombstones()) != 1 || m.Placement().RingSize() != 2 {
			t.Fatalf("node2 restarted knowing %v, tombstones %v", m.Placement().Nodes(), m.Tombstones())
		}
		m.Shutdown()
	}
}

// After node3's incarnation r1 is forgotten, node3 starting again on its
// old disk (r1, signing its own meta) is refused by every member and told
// to stop; node3 reinstalled on a wiped disk (incarnation r2) joins as a
// new node. A node whose own disk holds its tombstone refuses to start.
func TestForgottenIncarnationStaysOut(t *testing.T) {
	r := newForgetRig(t)
	r.crash(2)
	admin := r.tombstone(devCreds(t, r.pki, security.RoleAdmin, "admin"), "r1")
	if err := r.ms[0].Forget(admin); err != nil {
		t.Fatal(err)
	}
	for _, m := range r.members() {
		waitFor(t, m.Meta().ID+" forgets node3", func() bool { return len(m.Tombstones()) == 1 })
	}

	var once sync.Once
	stopped := make(chan error, 1)
	before := r.ms[0].Refused()
	r.ms[2] = r.start(2, "r1", nil, func(err error) { once.Do(func() { stopped <- err }) })
	select {
	case err := <-stopped:
		t.Logf("node3 (r1) told: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("node3 restarted as its forgotten incarnation and was not told to stop")
	}
	waitFor(t, "node1 refuses node3 (r1)", func() bool { return r.ms[0].Refused() > before })
	for _, m := range r.members()[:2] {
		if _, ok := m.Placement().Node("node3"); ok || m.Placement().Alive("node3") || inRing(m, "node3") {
			t.Fatalf("%s took node3's forgotten incarnation back", m.Meta().ID)
		}
	}
	if r.router.Placement().Alive("node3") {
		t.Fatal("the router sees node3's forgotten incarnation alive")
	}
	r.ms[2].Shutdown()
	r.ms[2] = nil

	if _, err := r.try(2, "r1", []Meta{admin.entry()}, nil, nil); err == nil || !strings.Contains(err.Error(), "forgot this node") {
		t.Fatalf("node3 started from a disk holding its own tombstone: %v", err)
	}

	r.ms[2] = r.start(2, "r2", nil, nil)
	for _, m := range r.members() {
		waitFor(t, m.Meta().ID+" takes node3 (r2)", func() bool {
			n3, ok := m.Placement().Node("node3")
			return ok && n3.Replica == "r2" && m.Placement().Alive("node3") && inRing(m, "node3")
		})
	}
}
