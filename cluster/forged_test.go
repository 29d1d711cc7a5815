package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/memberlist"

	"hellochat/security"
)

// intruder is a gossip member that holds the gossip key and nothing else a
// node has: it announces itself with meta and answers push/pull with state.
type intruder struct {
	meta  []byte
	state []byte
}

func (d *intruder) NodeMeta(int) []byte                        { return d.meta }
func (d *intruder) NotifyMsg([]byte)                           {}
func (d *intruder) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *intruder) LocalState(bool) []byte                     { return d.state }
func (d *intruder) MergeRemoteState([]byte, bool)              {}

func startIntruder(t *testing.T, name string, key []byte, d *intruder, join string) *memberlist.Memberlist {
	t.Helper()
	host, port, err := splitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.BindAddr, mc.BindPort = host, port
	mc.SecretKey = key
	mc.Delegate = d
	mc.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ml.Join([]string{join}); err != nil {
		t.Fatalf("intruder joins: %v", err)
	}
	return ml
}

// knownLog records every known set a member hands to OnKnown (what a node
// persists).
type knownLog struct {
	mu   sync.Mutex
	sets [][]Meta
}

func (k *knownLog) save(metas []Meta) {
	k.mu.Lock()
	k.sets = append(k.sets, metas)
	k.mu.Unlock()
}

// ever reports whether any persisted set held a meta for which bad is true.
func (k *knownLog) ever(bad func(Meta) bool) (Meta, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, set := range k.sets {
		for _, m := range set {
			if bad(m) {
				return m, true
			}
		}
	}
	return Meta{}, false
}

// devCreds is a member's certificate from the development PKI in dir.
func devCreds(t *testing.T, dir, role, id string) *security.Settings {
	t.Helper()
	s, err := security.Dev(dir, security.Identity{Role: role, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// syncBuffer collects a member's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A member holding a router's secrets (the gossip key, a router
// certificate and its key) announces a phantom object node, and pushes
// another phantom, a tampered copy of a down node's signed meta (Leaving,
// Started=MaxInt64), and an unsigned one. None of it may reach the ring,
// and none of it may be persisted; each refusal is counted and logged.
func TestForgedMetasAreRefused(t *testing.T) {
	pki := filepath.Join(t.TempDir(), "pki")
	router := devCreds(t, pki, security.RoleRouter, "router1")
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	logs := []*knownLog{{}, {}, {}}
	var out syncBuffer
	ms := make([]*Membership, 3)
	for i := range ms {
		id := "node" + string(rune('1'+i))
		cfg := Config{
			Meta:      Meta{ID: id, Role: RoleNode, GRPC: "127.0.0.1:" + string(rune('1'+i)) + "000"},
			Bind:      addrs[i],
			Seeds:     addrs,
			Timings:   fastTimings(),
			GossipKey: router.GossipKey,
			Security:  devCreds(t, pki, security.RoleNode, id),
			OnKnown:   logs[i].save,
		}
		if i == 0 {
			cfg.Logger = slog.New(slog.NewTextHandler(&out, nil))
		}
		m, err := Start(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		ms[i] = m
	}
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
	node3, _ := ms[0].Placement().Node("node3")
	if node3.Proof == nil {
		t.Fatal("node3's meta carries no proof")
	}
	ms[2].Shutdown()
	ms[2] = nil
	waitFor(t, "node3 seen down", func() bool { return !ms[0].Placement().Alive("node3") })

	// What a router can sign: its own meta (which carries its certificate
	// to node1), and metas that claim to be nodes.
	signer := &sealer{sec: router, cert: router.Certificate(), fp: fingerprint(router.Certificate())}
	seal := func(meta Meta) (Meta, []byte) {
		sealed, wire, err := signer.seal(meta)
		if err != nil {
			t.Fatal(err)
		}
		return sealed, wire
	}
	own, _ := seal(Meta{ID: "router1", Role: RoleRouter, Started: 1})
	_, self := seal(Meta{ID: "node9", Role: RoleNode, GRPC: "127.0.0.1:9", Started: 1})
	phantom, _ := seal(Meta{ID: "node8", Role: RoleNode, GRPC: "127.0.0.1:8", Started: 1})
	leaving := node3
	leaving.Leaving, leaving.Started, leaving.Proof = true, math.MaxInt64, nil
	raw, _ := json.Marshal(leaving)
	leaving.Proof = &Proof{Meta: raw, Sig: node3.Proof.Sig, Cert: node3.Proof.Cert}
	state, _ := json.Marshal([]Meta{
		own,
		phantom,
		leaving,
		{ID: "node7", Role: RoleNode, GRPC: "127.0.0.1:7", Started: 1},
	})
	ml := startIntruder(t, "node9", router.GossipKey, &intruder{meta: self, state: state}, addrs[0])
	defer ml.Shutdown()

	forged := func(m Meta) bool {
		return m.ID == "node7" || m.ID == "node8" || m.ID == "node9" || (m.ID == "node3" && m.Leaving)
	}
	taken := func() (Meta, bool) {
		for _, m := range ms[0].Placement().Nodes() {
			if forged(m) {
				return m, true
			}
		}
		return Meta{}, false
	}
	refusedAll := func() bool {
		s := out.String()
		for _, id := range []string{"node9", "node8", "node7", "node3"} {
			if !strings.Contains(s, `msg="refusing member metadata" member=`+id) {
				return false
			}
		}
		return true
	}
	waitFor(t, "node1 to take or refuse the forgeries", func() bool {
		_, ok := taken()
		return ok || refusedAll()
	})
	if m, ok := taken(); ok {
		t.Fatalf("node1 took a forged meta into its ring: %+v", m)
	}
	if m, ok := logs[0].ever(forged); ok {
		t.Fatalf("node1 persisted a forged meta: %+v", m)
	}
	if got, _ := ms[0].Placement().Node("node3"); got.Leaving || got.Started != node3.Started {
		t.Fatalf("node3 is now %+v, was %+v", got, node3)
	}
	if n := ms[0].Refused(); n < 4 {
		t.Fatalf("node1 counted %d refusals, want at least 4", n)
	}
	if ms[0].Placement().Alive("node9") {
		t.Fatal("node1 sees the phantom node9 alive")
	}
}

// A known set read back from disk is checked like gossip: a meta an older
// version persisted unsigned (or a forgery it took) does not come back,
// while a node's own signed meta does.
func TestKnownFromDiskIsChecked(t *testing.T) {
	pki := filepath.Join(t.TempDir(), "pki")
	other := devCreds(t, pki, security.RoleNode, "node6")
	signer := &sealer{sec: other, cert: other.Certificate(), fp: fingerprint(other.Certificate())}
	signed, _, err := signer.seal(Meta{ID: "node6", Role: RoleNode, GRPC: "127.0.0.1:6", Started: 1})
	if err != nil {
		t.Fatal(err)
	}
	self := devCreds(t, pki, security.RoleNode, "node1")
	m, err := Start(Config{
		Meta:      Meta{ID: "node1", Role: RoleNode, GRPC: "127.0.0.1:1"},
		Bind:      freeAddr(t),
		Timings:   fastTimings(),
		GossipKey: self.GossipKey,
		Security:  self,
		Known:     []Meta{signed, {ID: "node5", Role: RoleNode, GRPC: "127.0.0.1:5", Started: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	if _, ok := m.Placement().Node("node5"); ok {
		t.Fatal("an unsigned meta from disk is in the ring")
	}
	if n6, ok := m.Placement().Node("node6"); !ok || n6.GRPC != "127.0.0.1:6" {
		t.Fatalf("node6's signed meta from disk: %+v, %v", n6, ok)
	}
	if n := m.Refused(); n != 1 {
		t.Fatalf("refused %d metas from disk, want 1", n)
	}
}

// A meta naming a certificate nobody ever sends waits a bounded time: the
// member is not alive meanwhile, and the meta is refused after
// certFetches push/pull exchanges with it.
func TestMetaWithAnUnknownCertificateIsRefused(t *testing.T) {
	pki := filepath.Join(t.TempDir(), "pki")
	self := devCreds(t, pki, security.RoleNode, "node1")
	var out syncBuffer
	m, err := Start(Config{
		Meta:      Meta{ID: "node1", Role: RoleNode, GRPC: "127.0.0.1:1"},
		Bind:      freeAddr(t),
		Timings:   fastTimings(),
		GossipKey: self.GossipKey,
		Security:  self,
		Logger:    slog.New(slog.NewTextHandler(&out, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	// node5's key and certificate are genuine, but its certificate never
	// travels: it answers push/pull with an empty state.
	node5 := devCreds(t, pki, security.RoleNode, "node5")
	signer := &sealer{sec: node5, cert: node5.Certificate(), fp: fingerprint(node5.Certificate())}
	_, wire, err := signer.seal(Meta{ID: "node5", Role: RoleNode, GRPC: "127.0.0.1:5", Started: 1})
	if err != nil {
		t.Fatal(err)
	}
	ml := startIntruder(t, "node5", self.GossipKey, &intruder{meta: wire, state: []byte("[]")}, m.GossipAddr())
	defer ml.Shutdown()
	waitFor(t, "node5's meta refused", func() bool {
		return strings.Contains(out.String(), `msg="refusing member metadata" member=node5`)
	})
	if !strings.Contains(out.String(), fmt.Sprintf("after %d push/pull exchanges", certFetches)) {
		t.Fatalf("refused for another reason:\n%s", out.String())
	}
	if m.Placement().Alive("node5") {
		t.Fatal("node5 is alive without a checked meta")
	}
	if _, ok := m.Placement().Node("node5"); ok {
		t.Fatal("node5 is known without a checked meta")
	}
}
