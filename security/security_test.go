package security

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func devOrFatal(t *testing.T, dir string, id Identity) *Settings {
	t.Helper()
	s, err := Dev(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Processes of a local cluster start at once and share the PKI directory:
// they must all end up under one CA and one gossip key.
func TestDevConcurrentFirstUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	var wg sync.WaitGroup
	got := make([]*Settings, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = Dev(dir, Identity{Role: RoleNode, ID: "node" + string(rune('1'+i))})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
		if string(got[i].GossipKey) != string(got[0].GossipKey) || len(got[i].GossipKey) != GossipKeyBytes {
			t.Fatalf("process %d has another gossip key", i)
		}
	}
	// Each certificate verifies against every other process's CA.
	for i := range got {
		if _, err := checkLeaf(got[i].cert, got[0].roots); err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("PKI directory mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	if _, err := Load(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node-node1.pem"), filepath.Join(dir, "node-node1.pem"), "", Identity{RoleNode, "node2"}); err == nil {
		t.Fatal("node1's certificate was accepted for node2")
	}
}

// handshake runs a TLS handshake over loopback between a node's server
// side and a client, and returns each side's error.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (serr, cerr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3 finishes the client's side first; a refusal of
			// the client's certificate reaches it on its first read.
			_, err = tc.Write([]byte{1})
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, client)
	cerr = tc.Handshake()
	if cerr == nil {
		_, cerr = tc.Read(make([]byte, 1))
	}
	return <-done, cerr
}

func TestMutualTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	node := devOrFatal(t, dir, Identity{RoleNode, "node1"})
	router := devOrFatal(t, dir, Identity{RoleRouter, "router1"})
	other := devOrFatal(t, filepath.Join(t.TempDir(), "other"), Identity{RoleNode, "node1"})

	if serr, cerr := handshake(t, node.ServerTLS(), router.ClientTLS()); serr != nil || cerr != nil {
		t.Fatalf("router to node: server %v, client %v", serr, cerr)
	}
	// A client with no certificate, or one from another cluster's CA.
	bare := router.ClientTLS()
	bare.Certificates = nil
	if serr, _ := handshake(t, node.ServerTLS(), bare); serr == nil {
		t.Fatal("the node took a client with no certificate")
	}
	if serr, _ := handshake(t, node.ServerTLS(), other.ClientTLS()); serr == nil {
		t.Fatal("the node took a client certified by another CA")
	}
	// A client refuses a server that is not a node of its cluster.
	if _, cerr := handshake(t, other.ServerTLS(), router.ClientTLS()); cerr == nil {
		t.Fatal("the router took a node certified by another CA")
	}
	asServer := router.ServerTLS()
	if _, cerr := handshake(t, asServer, node.ClientTLS()); cerr == nil {
		t.Fatal("a node took a router's certificate as a node's")
	}
}
