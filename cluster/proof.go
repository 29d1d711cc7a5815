package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/hashicorp/memberlist"

	"hellochat/security"
)

// Limits on what a member keeps for checking others' signatures.
const (
	// MaxMemberCerts bounds the certificates a member keeps checked (by
	// fingerprint); when full it forgets them all but its own and checks
	// them again as they come.
	MaxMemberCerts = 1024
	// MaxPendingMetas bounds the members whose gossip metadata names a
	// certificate this member has not seen yet; beyond it, such metadata
	// is refused.
	MaxPendingMetas = 256
	// certFetches is how many push/pull exchanges a member starts with a
	// member whose certificate it lacks, one per rejoin tick.
	certFetches = 5
)

// signContext starts every signed meta, so a signature made for gossip
// can never pass for anything else a member signs.
const signContext = "hellochat gossip meta v1\x00"

// Proof is a member's signature over its own metadata, with the
// certificate that vouches for its key: with it any member can check a
// meta that reached it second hand (pushed in push/pull state, or read
// back from disk).
type Proof struct {
	Meta []byte `json:"meta"` // the Meta, JSON without Proof, exactly as signed
	Sig  []byte `json:"sig"`
	Cert []byte `json:"cert"` // the signer's certificate, DER
}

// wireMeta is a member's metadata as memberlist gossips it: at most 512
// bytes, no room for a certificate, so it names one by fingerprint. A
// member without certificates (development, --insecure) gossips its Meta's
// JSON instead.
type wireMeta struct {
	Meta json.RawMessage `json:"m"`
	Sig  []byte          `json:"s"`
	Cert []byte          `json:"c"`
}

var (
	errUnsigned = errors.New("metadata is not signed")
	// errNoCert: the meta names a certificate not seen yet; it may come
	// with the next push/pull.
	errNoCert = errors.New("metadata names a certificate not seen yet")
)

func fingerprint(der []byte) []byte {
	h := sha256.Sum256(der)
	return h[:12]
}

// certCache holds the certificates a member has checked against its CA,
// by fingerprint. Safe for concurrent use: the membership goroutine and
// memberlist's (conflicts) both read it.
type certCache struct {
	sec  *security.Settings
	own  string
	mu   sync.Mutex
	byFP map[string]cachedCert
}

type cachedCert struct {
	member *security.Member
	der    []byte
}

func newCertCache(sec *security.Settings) (*certCache, error) {
	c := &certCache{sec: sec, byFP: map[string]cachedCert{}}
	own := sec.Certificate()
	if _, err := c.add(own); err != nil {
		return nil, fmt.Errorf("cluster: this member's own certificate: %w", err)
	}
	c.own = string(fingerprint(own))
	return c, nil
}

// add checks der against the CA unless it was checked before.
func (c *certCache) add(der []byte) (cachedCert, error) {
	fp := string(fingerprint(der))
	c.mu.Lock()
	cc, ok := c.byFP[fp]
	c.mu.Unlock()
	if ok {
		return cc, nil
	}
	m, err := c.sec.CheckMember(der)
	if err != nil {
		return cachedCert{}, err
	}
	cc = cachedCert{member: m, der: bytes.Clone(der)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byFP) >= MaxMemberCerts {
		own := c.byFP[c.own]
		c.byFP = map[string]cachedCert{c.own: own}
	}
	c.byFP[fp] = cc
	return cc, nil
}

func (c *certCache) get(fp []byte) (cachedCert, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cc, ok := c.byFP[string(fp)]
	return cc, ok
}

// sealer signs this member's meta; nil when it has no certificate.
type sealer struct {
	sec  *security.Settings
	cert []byte
	fp   []byte
}

// seal returns meta with its Proof and the bytes memberlist gossips.
func (s *sealer) seal(meta Meta) (Meta, []byte, error) {
	meta.Proof = nil
	raw, err := json.Marshal(meta)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("cluster: encoding this member's metadata: %w", err)
	}
	if s == nil {
		return meta, raw, nil
	}
	sig, err := s.sec.Sign(append([]byte(signContext), raw...))
	if err != nil {
		return Meta{}, nil, fmt.Errorf("cluster: signing this member's metadata: %w", err)
	}
	wire, err := json.Marshal(wireMeta{Meta: raw, Sig: sig, Cert: s.fp})
	if err != nil {
		return Meta{}, nil, fmt.Errorf("cluster: encoding this member's metadata: %w", err)
	}
	meta.Proof = &Proof{Meta: raw, Sig: sig, Cert: s.cert}
	return meta, wire, nil
}

// verifier checks others' metas; nil checks nothing (no certificates).
type verifier struct{ certs *certCache }

// openWire decodes the metadata memberlist gossiped for member name.
func (v *verifier) openWire(raw []byte, name string) (Meta, error) {
	var w wireMeta
	if err := json.Unmarshal(raw, &w); err != nil {
		return Meta{}, fmt.Errorf("decoding metadata: %w", err)
	}
	if v == nil {
		// Development: take what is said. A signed meta still carries its
		// fields inside.
		if len(w.Meta) > 0 {
			raw = w.Meta
		}
		var meta Meta
		if err := json.Unmarshal(raw, &meta); err != nil {
			return Meta{}, fmt.Errorf("decoding metadata: %w", err)
		}
		meta.Proof = nil
		return checkName(meta, name)
	}
	if len(w.Meta) == 0 {
		return Meta{}, errUnsigned
	}
	cc, ok := v.certs.get(w.Cert)
	if !ok {
		return Meta{}, errNoCert
	}
	meta, err := v.check(cc, w.Meta, w.Sig)
	if err != nil {
		return Meta{}, err
	}
	return checkName(meta, name)
}

// openProof checks a meta that came second hand, and returns the meta its
// proof holds (the fields around it count for nothing).
func (v *verifier) openProof(meta Meta) (Meta, error) {
	if v == nil {
		meta.Proof = nil
		return meta, nil
	}
	p := meta.Proof
	if p == nil {
		return Meta{}, errUnsigned
	}
	cc, err := v.certs.add(p.Cert)
	if err != nil {
		return Meta{}, err
	}
	return v.check(cc, p.Meta, p.Sig)
}

// check verifies sig over raw by the member cc certifies, and that the
// meta speaks of that member, in its role.
func (v *verifier) check(cc cachedCert, raw, sig []byte) (Meta, error) {
	if err := cc.member.Verify(append([]byte(signContext), raw...), sig); err != nil {
		return Meta{}, err
	}
	var meta Meta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return Meta{}, fmt.Errorf("decoding signed metadata: %w", err)
	}
	if meta.Role != RoleNode && meta.Role != RoleRouter {
		return Meta{}, fmt.Errorf("metadata of a %q: members are nodes or routers", meta.Role)
	}
	if meta.ID != cc.member.ID || meta.Role != cc.member.Role {
		return Meta{}, fmt.Errorf("metadata of %s/%s signed by %s", meta.Role, meta.ID, cc.member.Identity)
	}
	meta.Proof = &Proof{Meta: bytes.Clone(raw), Sig: bytes.Clone(sig), Cert: cc.der}
	return meta, nil
}

func checkName(meta Meta, name string) (Meta, error) {
	if meta.ID != name {
		return Meta{}, fmt.Errorf("metadata of %q gossiped under the name %q", meta.ID, name)
	}
	return meta, nil
}

// sameProof reports whether a and b carry the same signed bytes, so a
// meta pushed again needs no second check.
func sameProof(a, b *Proof) bool {
	return a != nil && b != nil && bytes.Equal(a.Sig, b.Sig) && bytes.Equal(a.Meta, b.Meta)
}

// store makes meta this member's and signs it at once (at start, before
// memberlist gossips anything).
func (m *Membership) store(meta Meta) error {
	meta.Proof = nil
	m.meta.Store(&meta)
	_, err := m.reseal()
	return err
}

// reseal signs the newest meta (when this member has a certificate) unless
// it is signed already, makes it what memberlist gossips, and returns it
// signed.
func (m *Membership) reseal() (Meta, error) {
	m.sealMu.Lock()
	defer m.sealMu.Unlock()
	cur := m.meta.Load()
	if m.sealedFrom == cur {
		return *m.signed.Load(), nil
	}
	sealed, wire, err := m.sealer.seal(*cur)
	if err != nil {
		return Meta{}, err
	}
	m.sealedFrom = cur
	m.signed.Store(&sealed)
	m.wire.Store(&wire)
	return sealed, nil
}

// checkMetaSize refuses to start a member whose signed meta could outgrow
// memberlist's limit once its fields fill up: memberlist would gossip
// nothing for it and every other member would refuse it.
func (m *Membership) checkMetaSize(meta Meta) error {
	meta.Leads, meta.Version, meta.Leaving = math.MaxUint64, math.MaxUint64, true
	meta.Started = math.MinInt64
	if meta.Gossip == "" {
		meta.Gossip = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
	}
	if len(meta.Cluster) < clusterIDLen {
		meta.Cluster = strings.Repeat("f", clusterIDLen)
	}
	_, wire, err := m.sealer.seal(meta)
	if err != nil {
		return err
	}
	if len(wire) > memberlist.MetaMaxSize {
		return fmt.Errorf("cluster: this member's signed metadata can reach %d bytes, over gossip's limit of %d: "+
			"use shorter addresses or id, or an ECDSA or Ed25519 key (an RSA signature alone takes %d bytes)",
			len(wire), memberlist.MetaMaxSize, 4*256/3)
	}
	return nil
}

// clusterIDLen is the length of the cluster ids object nodes make (16 hex
// digits), which a fresh member's meta gains once it joins.
const clusterIDLen = 16

// pendingMeta is gossiped metadata waiting for the certificate it names.
type pendingMeta struct {
	raw     []byte
	addr    string // the member's gossip address, as memberlist saw it
	fetches int
}

// fetchCert starts a push/pull with the member itself: its state carries
// its own meta with its certificate.
func (m *Membership) fetchCert(p *pendingMeta) {
	p.fetches++
	addr := p.addr
	go func() {
		if _, err := m.ml.Join([]string{addr}); err != nil {
			m.log.Debug("fetching a member's certificate", "addr", addr, "err", err)
		}
	}()
}
