package security

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// GossipKeyBytes is the gossip key's length: memberlist's AES-256.
const GossipKeyBytes = 32

// Settings are one process's security: its certificate and the CA it
// trusts, and the gossip key; or, with Insecure, none of it.
type Settings struct {
	Insecure  bool
	Identity  Identity
	cert      tls.Certificate
	roots     *x509.CertPool
	GossipKey []byte
}

// Load reads an operator's files: the CA certificate, this process's
// certificate and key (PEM; one file may hold both), and the gossip key
// (hex). The certificate must name want.
func Load(caFile, certFile, keyFile, gossipKeyFile string, want Identity) (*Settings, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("security: reading the CA certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("security: %s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("security: loading this process's certificate: %w", err)
	}
	s := &Settings{cert: cert, roots: roots}
	if s.Identity, err = checkLeaf(cert, roots); err != nil {
		return nil, err
	}
	if s.Identity != want {
		return nil, fmt.Errorf("security: %s names %s, but this process is %s", certFile, s.Identity, want)
	}
	if gossipKeyFile != "" {
		if s.GossipKey, err = readGossipKey(gossipKeyFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func checkLeaf(cert tls.Certificate, roots *x509.CertPool) (Identity, error) {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return Identity{}, fmt.Errorf("security: parsing this process's certificate: %w", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return Identity{}, fmt.Errorf("security: this process's certificate is not signed by the CA: %w", err)
	}
	return IdentityOf(leaf)
}

func readGossipKey(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("security: reading the gossip key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != GossipKeyBytes {
		return nil, fmt.Errorf("security: %s must hold %d bytes in hex", file, GossipKeyBytes)
	}
	return key, nil
}

// verify checks a peer's chain against the cluster's CA and that it names
// one of roles. Peers are known by identity, not host name: nodes move
// between addresses, so the host name a client dialled says nothing.
func (s *Settings) verify(raw [][]byte, usage x509.ExtKeyUsage, roles ...string) error {
	if len(raw) == 0 {
		return errors.New("security: peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("security: peer certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: s.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("security: peer certificate not from this cluster: %w", err)
	}
	id, err := IdentityOf(certs[0])
	if err != nil {
		return err
	}
	for _, r := range roles {
		if id.Role == r {
			return nil
		}
	}
	return fmt.Errorf("security: peer is %s; want a %s", id, strings.Join(roles, " or "))
}

// ServerTLS is a node's TLS: it shows its certificate and requires one from
// the cluster of every caller (nodes, routers, admin tools).
func (s *Settings) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    s.roots,
	}
}

// ClientTLS is the TLS for dialling a node: the node must show a node
// certificate from the cluster's CA.
func (s *Settings) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cert},
		// The chain and role are checked by VerifyPeerCertificate instead
		// of a host name (see verify).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return s.verify(raw, x509.ExtKeyUsageServerAuth, RoleNode)
		},
	}
}

// ServerCreds are a node's gRPC server credentials.
func (s *Settings) ServerCreds() credentials.TransportCredentials {
	if s.Insecure {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(s.ServerTLS())
}

// ClientCreds are the gRPC credentials for dialling a node.
func (s *Settings) ClientCreds() credentials.TransportCredentials {
	if s.Insecure {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(s.ClientTLS())
}
