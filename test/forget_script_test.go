package test

import (
	"fmt"
	tc "hellochat/internal/testcluster"
	"os"
	"path/filepath"
	"strings"
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
	e.startCluster(t, out, nil)
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
	// A shard may still be handing its leadership over when the script
	// returns: wait for the health it checks, as CI once saw a 503 here.
	tc.Eventually(t, 30*time.Second, func() error {
		health, err := httpGetText("http://" + scriptsAdmin + "/healthz")
		if err != nil || !strings.HasPrefix(health, "ok: 3 of 3 object nodes alive") {
			return fmt.Errorf("router /healthz after forget-node: %q, %v", health, err)
		}
		return nil
	})
}
