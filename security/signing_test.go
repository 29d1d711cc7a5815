package security

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A member's signature checks out under its own certificate only, and
// only a certificate of the cluster's CA is taken to name anyone.
func TestSignAndCheckMember(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	node := devOrFatal(t, dir, Identity{RoleNode, "node1"})
	router := devOrFatal(t, dir, Identity{RoleRouter, "router1"})
	alien := devOrFatal(t, filepath.Join(t.TempDir(), "other"), Identity{RoleNode, "node1"})

	msg := []byte("node1 says hello")
	sig, err := node.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := router.CheckMember(node.Certificate())
	if err != nil {
		t.Fatalf("the router refused node1's certificate: %v", err)
	}
	if m.Identity != (Identity{RoleNode, "node1"}) {
		t.Fatalf("node1's certificate names %s", m.Identity)
	}
	if err := m.Verify(msg, sig); err != nil {
		t.Fatalf("node1's signature: %v", err)
	}
	if err := m.Verify([]byte("node1 says goodbye"), sig); err == nil {
		t.Fatal("a signature of another message passed")
	}
	rsig, err := router.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(msg, rsig); err == nil {
		t.Fatal("the router's signature passed as node1's")
	}
	if _, err := node.CheckMember(alien.Certificate()); err == nil {
		t.Fatal("a certificate of another CA was taken as a member's")
	}
	if _, err := Insecure().Sign(msg); err == nil {
		t.Fatal("an insecure process signed")
	}
	if Insecure().Secure() || !node.Secure() {
		t.Fatal("Secure() is wrong")
	}
}

// What ExportDev hands a router holds no private key but the router's own:
// it loads, it can check node certificates, and the CA's key stays behind.
func TestExportDevLeavesTheCAKeyBehind(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	out := filepath.Join(t.TempDir(), "router")
	node := devOrFatal(t, dir, Identity{RoleNode, "node1"})
	files, err := ExportDev(dir, Identity{RoleRouter, "router1"}, out)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "PRIVATE KEY") && filepath.Join(out, e.Name()) != files.Cert {
			t.Fatalf("%s holds a private key", e.Name())
		}
	}
	router, err := Load(files.CA, files.Cert, files.Cert, files.GossipKey, Identity{RoleRouter, "router1"})
	if err != nil {
		t.Fatal(err)
	}
	if string(router.GossipKey) != string(node.GossipKey) {
		t.Fatal("the exported gossip key is not the cluster's")
	}
	if _, err := router.CheckMember(node.Certificate()); err != nil {
		t.Fatalf("the router cannot check node1's certificate: %v", err)
	}
	if _, err := ExportDev(dir, Identity{RoleRouter, "router1"}, out); err != nil {
		t.Fatalf("exporting again: %v", err)
	}
}
