package deploy

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"hellochat/security"
)

// runMakeCerts runs make-certs.sh; it skips the test where bash or openssl
// is missing.
func runMakeCerts(t *testing.T, dir string, nodes, routers int) string {
	t.Helper()
	for _, tool := range []string{"bash", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("make-certs.sh needs %s, which is not installed", tool)
		}
	}
	cmd := exec.Command("bash", "make-certs.sh", "-n", fmt.Sprint(nodes), "-r", fmt.Sprint(routers), dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make-certs.sh: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestCertificates issues the certificates with make-certs.sh for the
// manifests' replica counts, and checks that every file a pod reads is one
// the script makes, in the Secret the pod mounts, and that each process
// would accept its own certificate (security.Load checks the chain and
// that the certificate names the process's role and --id) and complete
// mutual TLS with the others.
func TestCertificates(t *testing.T) {
	objs := decodeManifests(t, manifestGlobs...)
	if t.Failed() {
		t.FailNow() // TestManifestsDecodeStrictly says more
	}
	replicas := map[string]int{}
	for _, o := range objs {
		if s, ok := o.obj.(*appsv1.StatefulSet); ok && s.Spec.Replicas != nil {
			replicas[s.Name] = int(*s.Spec.Replicas)
		}
	}
	dir := t.TempDir()
	out := runMakeCerts(t, dir, replicas["hellochat-node"], replicas["hellochat-router"])

	// The Secrets it prints commands for are the ones the pods mount.
	re := regexp.MustCompile(`(?m)^kubectl create secret generic (\S+) --from-file=(\S+) --dry-run=client -o yaml \| kubectl apply -f -$`)
	var printed []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		printed = append(printed, m[1])
		if m[2] != filepath.Join(dir, "secrets", m[1]) {
			t.Errorf("make-certs.sh: secret %s from %s, want %s", m[1], m[2], filepath.Join(dir, "secrets", m[1]))
		}
	}
	sort.Strings(printed)
	if want := secretNames(objs); fmt.Sprint(printed) != fmt.Sprint(want) {
		t.Errorf("make-certs.sh prints commands for Secrets %v; the manifests mount %v. Its output:\n%s", printed, want, out)
	}
	if n := strings.Count(out, "\n"); n != len(printed) {
		t.Errorf("make-certs.sh stdout has %d lines, %d of them commands (stdout must hold only commands, for | sh):\n%s", n, len(printed), out)
	}

	settings := map[string]*security.Settings{} // by pod name, or "admin"
	for _, r := range podRuns(t, objs) {
		if !r.parsedOK {
			continue
		}
		files := secretFiles(t, r)
		path := func(flag string) string {
			f, ok := files[flag]
			if !ok {
				t.Errorf("%s: --%s is not read from a Secret", r.where, flag)
				return ""
			}
			p := filepath.Join(dir, "secrets", f.secret, f.key)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: --%s: Secret %s has no key %s (make-certs.sh made no %s)", r.where, flag, f.secret, f.key, p)
			}
			return p
		}
		ca, cert, key, gossip := path("tls-ca"), path("tls-cert"), path("tls-key"), path("gossip-key")
		if t.Failed() {
			continue
		}
		id := security.Identity{Role: security.RoleNode, ID: r.p.get("id")}
		name := r.podName
		switch {
		case r.p.isRouter():
			id.Role = security.RoleRouter
		case r.p.isDecommission():
			// objectnode decommission always calls as admin/admin.
			id, name = security.Identity{Role: security.RoleAdmin, ID: "admin"}, "admin"
		}
		s, err := security.Load(ca, cert, key, gossip, id)
		if err != nil {
			t.Errorf("%s: %v", r.where, err)
			continue
		}
		if len(s.GossipKey) != security.GossipKeyBytes {
			t.Errorf("%s: gossip key of %d bytes", r.where, len(s.GossipKey))
		}
		settings[name] = s
	}
	if t.Failed() {
		return
	}

	// Mutual TLS as the programs set it up: a node serves; nodes, routers
	// and the admin call it.
	server := settings["hellochat-node-0"]
	for _, client := range []string{"hellochat-node-1", "hellochat-router-0", "hellochat-router-1", "admin"} {
		c := settings[client]
		if server == nil || c == nil {
			t.Fatalf("no settings for hellochat-node-0 or %s (have %d)", client, len(settings))
		}
		if err := handshake(server.ServerTLS(), c.ClientTLS()); err != nil {
			t.Errorf("TLS from %s to hellochat-node-0: %v", client, err)
		}
	}
	// And the check is real: a router's certificate cannot serve as a node.
	if err := handshake(settings["hellochat-router-0"].ServerTLS(), settings["hellochat-node-1"].ClientTLS()); err == nil {
		t.Error("a node accepted a router's certificate as a node's")
	}

	// Scaling up: a second run with more nodes keeps the CA and the
	// certificates issued, and adds the new pod's.
	caSum := fileSum(t, filepath.Join(dir, "ca.pem"))
	nodeDir := filepath.Join(dir, "secrets", "hellochat-node-tls")
	oldSum := fileSum(t, filepath.Join(nodeDir, "hellochat-node-0.pem"))
	runMakeCerts(t, dir, replicas["hellochat-node"]+1, replicas["hellochat-router"])
	if fileSum(t, filepath.Join(dir, "ca.pem")) != caSum || fileSum(t, filepath.Join(nodeDir, "hellochat-node-0.pem")) != oldSum {
		t.Error("a second run replaced the CA or an issued certificate")
	}
	next := fmt.Sprintf("hellochat-node-%d", replicas["hellochat-node"])
	if _, err := security.Load(filepath.Join(nodeDir, "ca.pem"), filepath.Join(nodeDir, next+".pem"), filepath.Join(nodeDir, next+"-key.pem"),
		filepath.Join(nodeDir, "gossip.key"), security.Identity{Role: security.RoleNode, ID: next}); err != nil {
		t.Errorf("after scaling up: %v", err)
	}
	if leaked, _ := filepath.Glob(filepath.Join(dir, "secrets", "*", "ca-key.pem")); len(leaked) > 0 {
		t.Errorf("the CA's key is in a Secret: %v", leaked)
	}
}

// handshake runs a TLS handshake between server and client configurations
// over a loopback TCP connection (whose buffers take the session tickets
// the server sends after the handshake).
func handshake(server, client *tls.Config) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		errc <- tls.Server(c, server).Handshake()
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cerr := tls.Client(c, client).Handshake()
	serr := <-errc
	if cerr != nil {
		return cerr
	}
	return serr
}
