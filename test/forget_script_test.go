package test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScriptForgetNode runs `make forget-node` as make does, on the local
// cluster's scripts with four founders: it refuses while node3 runs and
// changes nothing; after kill-node it forgets node3, waits for the moves,
// and leaves the router without node3 in its member table, counting 3 of 3
// nodes in /healthz, and node3's data dir removed.
func TestScriptForgetNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster of real processes on the local cluster's fixed ports")
	}
	scriptsPortsFree(t)
	e := newScriptsEnv(t)
	out := &lockedBuffer{}
	// Not under a context: a killed cluster.sh would leave its processes.
	cl := e.cmd(context.Background(), nil, "cluster.sh", strconv.Itoa(scriptsNodes))
	cl.Stdout, cl.Stderr = out, out
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cl.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cl.Wait() }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			_ = syscall.Kill(-cl.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("cluster.sh output:\n%s", out.String())
		}
	})
	waitFor(t, "cluster.sh to report ready", 60*time.Second, func() bool {
		return strings.Contains(out.String(), "cluster | ready")
	})

	if got, code := e.run(nil, "forget-node.sh", "3"); code == 0 || !strings.Contains(got, "node3 is running") {
		t.Fatalf("forget-node N=3 while node3 runs: exit %d, want a refusal saying it runs", code)
	}
	if s := e.memberState("node3"); s != "alive" {
		t.Fatalf("node3 is %q after the refused forget-node, want alive", s)
	}
	if got, code := e.run(nil, "kill-node.sh", "3"); code != 0 {
		t.Fatalf("kill-node N=3: exit %d\n%s", code, got)
	}
	got, code := e.run(nil, "forget-node.sh", "3")
	if code != 0 || !strings.Contains(got, "node3 is forgotten") {
		t.Fatalf("forget-node N=3: exit %d", code)
	}
	if s := e.memberState("node3"); s != "" {
		t.Fatalf("the router still lists node3 as %q", s)
	}
	if _, err := os.Stat(filepath.Join(e.data, "node3")); !os.IsNotExist(err) {
		t.Fatalf("node3's data dir is still there: %v", err)
	}
	health, err := httpGetText("http://" + scriptsAdmin + "/healthz")
	if err != nil || !strings.HasPrefix(health, "ok: 3 of 3 object nodes alive") {
		t.Fatalf("router /healthz after forget-node: %q, %v", health, err)
	}
}
