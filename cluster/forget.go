package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"hellochat/security"
)

// Forgetting a node. memberlist forgets dead members but the known set
// never does (a crash must not reshuffle rooms), so a machine that is gone
// for good would hold its place in every ring forever. An admin says so
// with a tombstone: it names one incarnation of a node (its id and
// Meta.Replica), is signed with an admin certificate, and travels and
// persists with the known set. Every member drops that incarnation from
// its known set, and refuses every meta of it from then on, even one the
// node itself signs later: a machine declared gone must not come back with
// its old disk and old replicas. The same id on a wiped disk is a new
// incarnation, and joins as a new node.

// MaxTombstones bounds the tombstones a member keeps, pushes and persists;
// past it the oldest (by the admin's time) are dropped, and the
// incarnations they named could be taken again.
const MaxTombstones = 1024

// RoleForgotten marks an entry of the known set, as pushed in push/pull
// and persisted by nodes, that is a tombstone rather than a member: it
// carries Meta.Forgotten, and members of versions before tombstones
// refuse it as unsigned.
const RoleForgotten = "forgotten"

// forgetContext starts every signed tombstone, so no other signature (a
// member's meta, above all) can pass for one.
const forgetContext = "hellochat forget node v1\x00"

// Tombstone says that incarnation Replica of object node Node is gone for
// good, as an admin declared at At.
type Tombstone struct {
	Node    string `json:"node"`
	Replica string `json:"replica"`
	At      int64  `json:"at"` // Unix nanoseconds, the admin's clock
	// Proof is the admin's signature: Proof.Meta holds the tombstone's
	// JSON without Proof, exactly as signed. Nil without certificates.
	Proof *Proof `json:"proof,omitempty"`
}

func (t Tombstone) key() string { return t.Node + "\x00" + t.Replica }

func (t Tombstone) String() string {
	return fmt.Sprintf("%s (incarnation %q, forgotten %s)", t.Node, t.Replica, time.Unix(0, t.At).UTC().Format(time.RFC3339))
}

// forgets reports whether t forgets meta's incarnation.
func (t Tombstone) forgets(meta Meta) bool {
	return meta.Role == RoleNode && meta.ID == t.Node && meta.Replica == t.Replica
}

// entry is t as an entry of the known set.
func (t Tombstone) entry() Meta {
	return Meta{ID: t.Node, Role: RoleForgotten, Forgotten: &t}
}

var (
	errForgotten = errors.New("this incarnation of the node was forgotten by an admin")
	errNotAdmin  = errors.New("a tombstone must be signed with an admin certificate")
)

// SignTombstone makes the tombstone an admin sends in Rooms.Forget: sec
// must be an admin's certificate. Without certificates (--insecure) the
// tombstone goes unsigned, and members without certificates take it.
func SignTombstone(sec *security.Settings, t Tombstone) (Tombstone, error) {
	t.Proof = nil
	if err := t.valid(); err != nil {
		return Tombstone{}, err
	}
	if !sec.Secure() {
		return t, nil
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return Tombstone{}, fmt.Errorf("cluster: encoding a tombstone: %w", err)
	}
	sig, err := sec.Sign(append([]byte(forgetContext), raw...))
	if err != nil {
		return Tombstone{}, fmt.Errorf("cluster: signing a tombstone: %w", err)
	}
	t.Proof = &Proof{Meta: raw, Sig: sig, Cert: sec.Certificate()}
	return t, nil
}

func (t Tombstone) valid() error {
	switch {
	case t.Node == "":
		return errors.New("cluster: a tombstone must name a node")
	case t.At <= 0:
		return fmt.Errorf("cluster: tombstone of %s: no time", t.Node)
	}
	return nil
}

// openTombstone checks t's proof and returns the tombstone the proof holds
// (the fields around it count for nothing), as a meta is checked: a
// certificate of the cluster's CA, here with the admin role, and its
// signature.
func (v *verifier) openTombstone(t Tombstone) (Tombstone, error) {
	if v == nil {
		t.Proof = nil
		return t, t.valid()
	}
	p := t.Proof
	if p == nil {
		return Tombstone{}, errors.New("tombstone is not signed")
	}
	cc, err := v.certs.add(p.Cert)
	if err != nil {
		return Tombstone{}, err
	}
	if cc.member.Role != security.RoleAdmin {
		return Tombstone{}, fmt.Errorf("%w, not %s's", errNotAdmin, cc.member.Identity)
	}
	if err := cc.member.Verify(append([]byte(forgetContext), p.Meta...), p.Sig); err != nil {
		return Tombstone{}, err
	}
	var opened Tombstone
	if err := json.Unmarshal(p.Meta, &opened); err != nil {
		return Tombstone{}, fmt.Errorf("decoding a signed tombstone: %w", err)
	}
	if err := opened.valid(); err != nil {
		return Tombstone{}, err
	}
	opened.Proof = &Proof{Meta: bytes.Clone(p.Meta), Sig: bytes.Clone(p.Sig), Cert: cc.der}
	return opened, nil
}

// CheckTombstone checks t as every member will (see SignTombstone), and
// returns what its proof says.
func (m *Membership) CheckTombstone(t Tombstone) (Tombstone, error) {
	return m.verifier.openTombstone(t)
}

// Forget takes a tombstone an admin sent: once checked it is applied,
// pushed to every member and persisted with the known set. The node it
// names leaves the ring as soon as the membership goroutine applies it.
func (m *Membership) Forget(t Tombstone) error {
	opened, err := m.verifier.openTombstone(t)
	if err != nil {
		return fmt.Errorf("cluster: forget %s: %w", t.Node, err)
	}
	select {
	case m.merges <- merge{tombstones: []Tombstone{opened}}:
		return nil
	case <-m.stop:
		return errors.New("cluster: forget: membership stopped")
	}
}

// Tombstones lists the tombstones this member holds, oldest first.
func (m *Membership) Tombstones() []Tombstone {
	var out []Tombstone
	for _, e := range *m.tombs.Load() {
		out = append(out, *e.Forgotten)
	}
	return out
}

// Forgotten reports whether an admin forgot meta's incarnation.
func (m *Membership) Forgotten(id, replica string) bool {
	for _, e := range *m.tombs.Load() {
		if e.Forgotten.Node == id && e.Forgotten.Replica == replica {
			return true
		}
	}
	return false
}

// graveyard holds a member's tombstones; only the membership goroutine
// touches it.
type graveyard map[string]Tombstone

// forgets returns the tombstone that forgets meta, if any.
func (g graveyard) forgets(meta Meta) (Tombstone, bool) {
	if meta.Role != RoleNode {
		return Tombstone{}, false
	}
	t, ok := g[Tombstone{Node: meta.ID, Replica: meta.Replica}.key()]
	return t, ok
}

// add keeps t unless it is held already or is the oldest of more than
// MaxTombstones; it reports whether t is now held.
func (g graveyard) add(t Tombstone) bool {
	if _, ok := g[t.key()]; ok {
		return false
	}
	g[t.key()] = t
	if len(g) <= MaxTombstones {
		return true
	}
	oldest := t
	for _, o := range g {
		if o.At < oldest.At || (o.At == oldest.At && o.key() < oldest.key()) {
			oldest = o
		}
	}
	delete(g, oldest.key())
	return oldest.key() != t.key()
}

// entries lists the tombstones as known-set entries, oldest first.
func (g graveyard) entries() []Meta {
	out := make([]Meta, 0, len(g))
	for _, t := range g {
		out = append(out, t.entry())
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Forgotten, out[j].Forgotten
		if a.At != b.At {
			return a.At < b.At
		}
		return a.key() < b.key()
	})
	return out
}

// errForgottenSelf is what a node hears when an admin forgot the very
// incarnation it runs: every other member now refuses it, so it stops.
func errForgottenSelf(t Tombstone) error {
	return fmt.Errorf("an admin forgot this node, %s: every member refuses it now; "+
		"to bring the machine back, wipe its data dir and start it as a new incarnation", t)
}

// publishTombs makes graves what LocalState pushes and OnKnown persists.
func (m *Membership) publishTombs(graves graveyard) {
	entries := graves.entries()
	m.tombs.Store(&entries)
}

// spread starts a push/pull with every live member, so a tombstone an
// admin handed this member reaches them all at once rather than one
// random member per push/pull interval. The addresses come from the
// metas run keeps: memberlist's Members hands out the very Nodes its
// packet handler rewrites under its own lock, and reading one raced.
func (m *Membership) spread(known, routers map[string]Meta, alive map[string]bool) {
	self := m.meta.Load().ID
	var addrs []string
	for id := range alive {
		meta, ok := known[id]
		if !ok {
			meta, ok = routers[id]
		}
		if ok && id != self && meta.Gossip != "" {
			addrs = append(addrs, meta.Gossip)
		}
	}
	if len(addrs) == 0 {
		return
	}
	// Join takes up to TCPTimeout per unreachable member: aside, so the
	// membership goroutine keeps going.
	go func() {
		if _, err := m.ml.Join(addrs); err != nil {
			m.log.Debug("spreading a tombstone", "err", err)
		}
	}()
}
