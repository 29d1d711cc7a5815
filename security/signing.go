package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Signatures let a member vouch for what it says to members it never
// talks to directly: gossip hands a node's metadata on from peer to peer,
// so the channel it arrived on says nothing of who wrote it.

// Secure reports whether this process has certificates to sign and check
// with (false with --insecure).
func (s *Settings) Secure() bool { return s != nil && !s.Insecure && len(s.cert.Certificate) > 0 }

// Certificate is this process's certificate, DER.
func (s *Settings) Certificate() []byte {
	if !s.Secure() {
		return nil
	}
	return s.cert.Certificate[0]
}

// Sign signs msg with this process's private key: ECDSA or RSA (PKCS #1
// v1.5) over SHA-256, or Ed25519. Member.Verify checks it.
func (s *Settings) Sign(msg []byte) ([]byte, error) {
	if !s.Secure() {
		return nil, errors.New("security: no key to sign with (--insecure)")
	}
	signer, ok := s.cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("security: the private key (%T) cannot sign", s.cert.PrivateKey)
	}
	if _, ok := signer.Public().(ed25519.PublicKey); ok {
		return signer.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	digest := sha256.Sum256(msg)
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("security: signing: %w", err)
	}
	return sig, nil
}

// Member is a certificate of the cluster's CA, checked, and the identity
// it names.
type Member struct {
	Identity
	leaf *x509.Certificate
}

// CheckMember parses a member's certificate (DER) and checks that the
// cluster's CA issued it for a member (every member's certificate allows
// client authentication) and that it names an identity. A chain is not
// accepted here: members' certificates are issued by the CA directly.
func (s *Settings) CheckMember(der []byte) (*Member, error) {
	if !s.Secure() {
		return nil, errors.New("security: no CA to check a certificate against (--insecure)")
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("security: member certificate: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("security: member certificate not from this cluster: %w", err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return nil, err
	}
	return &Member{Identity: id, leaf: leaf}, nil
}

// Verify checks that sig is the member's signature of msg (see Sign) and
// that its certificate has not expired since CheckMember.
func (m *Member) Verify(msg, sig []byte) error {
	if now := time.Now(); now.After(m.leaf.NotAfter) {
		return fmt.Errorf("security: %s's certificate expired at %s", m.Identity, m.leaf.NotAfter.Format(time.RFC3339))
	}
	var algo x509.SignatureAlgorithm
	switch m.leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		algo = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		algo = x509.SHA256WithRSA
	case ed25519.PublicKey:
		algo = x509.PureEd25519
	default:
		return fmt.Errorf("security: %s's key (%T) cannot sign", m.Identity, m.leaf.PublicKey)
	}
	if err := m.leaf.CheckSignature(algo, msg, sig); err != nil {
		return fmt.Errorf("security: %s's signature: %w", m.Identity, err)
	}
	return nil
}
