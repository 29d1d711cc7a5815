package flagenv

import (
	"errors"
	"flag"
	"log/slog"

	"hellochat/security"
)

// Security holds the flags that say where a process's certificate, its CA
// and the gossip key come from.
type Security struct {
	ca, cert, key, gossipKey, devPKI *string
	insecure                         *bool
}

// SecurityFlags defines the security flags every process shares.
func SecurityFlags(fs *flag.FlagSet) *Security {
	return &Security{
		ca:        fs.String("tls-ca", "", "PEM file of the cluster's CA certificate"),
		cert:      fs.String("tls-cert", "", "PEM file of this process's certificate, signed by --tls-ca (it names the process's role and id)"),
		key:       fs.String("tls-key", "", "PEM file of this process's private key (may be --tls-cert itself)"),
		gossipKey: fs.String("gossip-key", "", "file holding the cluster's 32-byte gossip key in hex"),
		devPKI:    fs.String("dev-pki", "", "directory of a development PKI shared by a local cluster: its CA, gossip key and this process's certificate are created there on first use (make cluster uses data/pki)"),
		insecure:  fs.Bool("insecure", false, "plaintext gRPC and gossip, every caller trusted: only on a network nobody else can reach"),
	}
}

// Settings loads what the flags name, for the process with this role and
// id.
func (s *Security) Settings(role, id string, log *slog.Logger) (*security.Settings, error) {
	want := security.Identity{Role: role, ID: id}
	switch {
	case *s.insecure:
		log.Warn("running without security (--insecure): anyone who can reach this process's ports can join the cluster, forge Raft messages and read every room")
		return security.Insecure(), nil
	case *s.devPKI != "":
		return security.Dev(*s.devPKI, want)
	case *s.ca != "" && *s.cert != "" && *s.key != "" && *s.gossipKey != "":
		return security.Load(*s.ca, *s.cert, *s.key, *s.gossipKey, want)
	default:
		return nil, errors.New("no certificates: pass --tls-ca, --tls-cert, --tls-key and --gossip-key (see docs/security.md), or --dev-pki DIR for a cluster on this machine, or --insecure")
	}
}
