package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestProbePathsServed starts each program as the manifests do (admin
// endpoints on), without security and alone, and checks that every path a
// probe uses is served on --admin-addr: /livez answers 200, /readyz 200 or
// 503, neither 404.
func TestProbePathsServed(t *testing.T) {
	objs := decodeManifests(t, manifestGlobs...)
	paths := map[string]map[string]bool{} // program -> probe paths
	for _, r := range podRuns(t, objs) {
		if !r.parsedOK || r.p.isDecommission() {
			continue
		}
		if paths[r.p.program()] == nil {
			paths[r.p.program()] = map[string]bool{}
		}
		for _, p := range []*corev1.Probe{r.container.StartupProbe, r.container.LivenessProbe, r.container.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil {
				paths[r.p.program()][p.HTTPGet.Path] = true
			}
		}
	}
	if len(paths["objectnode"]) == 0 || len(paths["router"]) == 0 {
		t.Fatalf("probe paths found: %v", paths)
	}
	bin := binaries(t)
	for _, prog := range []string{"objectnode", "router"} {
		t.Run(prog, func(t *testing.T) {
			admin := freeAddr(t)
			args := []string{"--insecure", "--id", "probe-" + prog, "--admin-addr", admin, "--gossip-addr", freeAddr(t)}
			if prog == "objectnode" {
				args = append(args, "--data", filepath.Join(t.TempDir(), "node"), "--grpc-addr", freeAddr(t), "--expect", "1")
			} else {
				args = append(args, "--http-addr", freeAddr(t))
			}
			cmd := exec.Command(filepath.Join(bin, prog), args...)
			cmd.Env = cleanEnv()
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				cmd.Process.Kill()
				<-exited
			}()
			client := &http.Client{Timeout: 2 * time.Second}
			for path := range paths[prog] {
				deadline := time.Now().Add(20 * time.Second)
				for {
					code, err := get(client, "http://"+admin+path)
					if err == nil && (code == http.StatusOK || (path == "/readyz" && code == http.StatusServiceUnavailable)) {
						break
					}
					if code == http.StatusNotFound {
						t.Fatalf("%s on --admin-addr %s: %s is not served (404); a probe of it would fail", prog, admin, path)
					}
					select {
					case err := <-exited:
						exited <- err
						t.Fatalf("%s exited (%v) before %s answered:\n%s", prog, err, path, out.String())
					default:
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s on --admin-addr %s: %s answers %d (%v); a probe of it would fail. Output:\n%s", prog, admin, path, code, err, out.String())
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
}

func get(c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr())
}
