package main

import (
	"flag"
	"fmt"
	"os"

	"hellochat/internal/flagenv"
	"hellochat/security"
)

// devCert is `objectnode dev-cert`: it hands one process of a development
// cluster its own certificate without the rest of the development PKI, so
// that process (a router, typically) never holds the CA's key or another
// member's. deploy/compose.yaml runs it before the router starts.
func devCert(args []string) int {
	fs := flag.NewFlagSet("objectnode dev-cert", flag.ExitOnError)
	dir := fs.String("dev-pki", "", "directory of the development PKI (created on first use, as --dev-pki does for a process)")
	role := fs.String("role", security.RoleRouter, "role of the process the certificate is for: node, router or admin")
	id := fs.String("id", "", "id of the process the certificate is for (its --id)")
	out := fs.String("out", "", "directory to write ca.pem (the CA's certificate only), ROLE-ID.pem (certificate and key) and gossip.key into")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: objectnode dev-cert --dev-pki DIR --role ROLE --id ID --out DIR")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, args); err != nil || fs.NArg() != 0 || *dir == "" || *id == "" || *out == "" {
		fs.Usage()
		return 2
	}
	switch *role {
	case security.RoleNode, security.RoleRouter, security.RoleAdmin:
	default:
		fmt.Fprintf(os.Stderr, "dev-cert: --role %q: node, router or admin\n", *role)
		return 2
	}
	files, err := security.ExportDev(*dir, security.Identity{Role: *role, ID: *id}, *out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dev-cert: %v\n", err)
		return 1
	}
	fmt.Printf("%s/%s: --tls-ca %s --tls-cert %s --tls-key %s --gossip-key %s\n",
		*role, *id, files.CA, files.Cert, files.Cert, files.GossipKey)
	return 0
}
