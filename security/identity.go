// Package security holds what makes the cluster's channels trusted: each
// process's certificate (its identity: a role and an id, signed by the
// cluster's CA), the TLS settings built from it for gRPC, the gossip key,
// and a development PKI that `make cluster` and the tests create on first
// use.
package security

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Roles a certificate can name.
const (
	RoleNode   = "node"   // an object node: serves gRPC, replicates shards
	RoleRouter = "router" // a router: attaches rooms, reads status
	RoleAdmin  = "admin"  // an operator's tool: status, decommission
)

// Identity is who a certificate says its holder is.
type Identity struct {
	Role string
	ID   string
}

func (id Identity) String() string { return id.Role + "/" + id.ID }

// uri is how an identity is written into a certificate (a URI SAN).
func (id Identity) uri() *url.URL {
	return &url.URL{Scheme: "hellochat", Host: id.Role, Path: "/" + id.ID}
}

// IdentityOf reads the identity a certificate carries.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	for _, u := range cert.URIs {
		if u.Scheme != "hellochat" || len(u.Path) < 2 {
			continue
		}
		switch u.Host {
		case RoleNode, RoleRouter, RoleAdmin:
			return Identity{Role: u.Host, ID: u.Path[1:]}, nil
		}
	}
	return Identity{}, fmt.Errorf("security: certificate %q names no hellochat identity", cert.Subject.CommonName)
}

// ErrNoIdentity: the caller did not present a cluster certificate (a
// plaintext server, or a test that runs one).
var ErrNoIdentity = errors.New("security: caller has no cluster certificate")

// PeerIdentity is the identity of a gRPC caller, from its verified client
// certificate.
func PeerIdentity(ctx context.Context) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Identity{}, ErrNoIdentity
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, ErrNoIdentity
	}
	return IdentityOf(info.State.VerifiedChains[0][0])
}

// Insecure is the settings of a process run with --insecure: plaintext
// gRPC, gossip in the clear, and every caller taken at its word.
func Insecure() *Settings { return &Settings{Insecure: true} }

// Authorize checks that a gRPC caller holds a cluster certificate naming one
// of roles, and returns its identity; the error is a PermissionDenied
// status. Without security (Insecure) every caller passes, with no
// identity.
func (s *Settings) Authorize(ctx context.Context, roles ...string) (Identity, error) {
	if s.Insecure {
		return Identity{}, nil
	}
	id, err := PeerIdentity(ctx)
	if err != nil {
		return Identity{}, status.Error(codes.PermissionDenied, err.Error())
	}
	for _, r := range roles {
		if id.Role == r {
			return id, nil
		}
	}
	return id, status.Errorf(codes.PermissionDenied, "security: %s may not call this", id)
}
