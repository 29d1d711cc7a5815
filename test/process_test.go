package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hellochat/cluster"
	tc "hellochat/internal/testcluster"
	"hellochat/storage"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildBinaries builds the real objectnode and router once per test run.
func buildBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hellochat-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "hellochat/cmd/objectnode", "hellochat/cmd/router")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// proc is one real process of the cluster.
type proc struct {
	name string
	args []string
	log  string
	cmd  *exec.Cmd
	exit chan struct{} // closed when the process has exited
}

func (p *proc) start(t *testing.T, bin string) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	f.Close()
	p.exit = make(chan struct{})
	go func(exit chan struct{}) {
		p.cmd.Wait()
		close(exit)
	}(p.exit)
}

func (p *proc) kill9() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

type clusterJSON struct {
	Members []struct {
		ID    string `json:"id"`
		Role  string `json:"role"`
		Alive bool   `json:"alive"`
	} `json:"members"`
	Shards  map[int]string `json:"shards"`
	Leaders map[int]string `json:"leaders"`
	Rooms   []struct {
		Room   string `json:"room"`
		Leader string `json:"leader"`
	} `json:"rooms"`
}

func getCluster(base, rooms string) (clusterJSON, error) {
	var v clusterJSON
	resp, err := http.Get(base + "/api/cluster?rooms=" + rooms)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// settled waits until every shard is led by its preferred replica.
func settled(t *testing.T, base, rooms string) clusterJSON {
	t.Helper()
	var view clusterJSON
	tc.Eventually(t, 30*time.Second, func() error {
		v, err := getCluster(base, rooms)
		if err != nil {
			return err
		}
		for s, owner := range v.Shards {
			if v.Leaders[s] != owner {
				return fmt.Errorf("shard %d led by %q, preferred %s", s, v.Leaders[s], owner)
			}
		}
		if len(v.Shards) != cluster.Partitions {
			return fmt.Errorf("%d shards placed", len(v.Shards))
		}
		view = v
		return nil
	})
	return view
}

// TestKill9Failover runs the real binaries: it kills -9 the node leading
// some rooms while a browser is connected to one of them. The browser stays
// connected, a message it sends after the kill is acknowledged by the new
// leader (seq continues without a gap), the node restarts and catches up,
// and once everything is stopped all three replicas hold identical logs.
func TestKill9Failover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := buildBinaries(t)
	dir := t.TempDir()
	var gossip, grpcs []string
	for i := 0; i < 3; i++ {
		gossip = append(gossip, "127.0.0.1:"+strconv.Itoa(tc.FreePort(t)))
		grpcs = append(grpcs, "127.0.0.1:"+strconv.Itoa(tc.FreePort(t)))
	}
	fast := []string{"--probe-interval", "100ms", "--probe-timeout", "50ms"}
	var nodes []*proc
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("node%d", i+1)
		nodes = append(nodes, &proc{name: id, log: filepath.Join(dir, id+".log"), args: append([]string{
			"--id", id, "--data", filepath.Join(dir, id), "--grpc-addr", grpcs[i],
			"--gossip-addr", gossip[i], "--join", strings.Join(gossip, ","), "--expect", "3"}, fast...)})
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(tc.FreePort(t))
	rt := &proc{name: "router", log: filepath.Join(dir, "router.log"), args: append([]string{
		"--http-addr", httpAddr, "--gossip-addr", "127.0.0.1:" + strconv.Itoa(tc.FreePort(t)),
		"--join", strings.Join(gossip, ",")}, fast...)}
	all := append(nodes, rt)
	t.Cleanup(func() {
		for _, p := range all {
			p.kill9()
		}
		if t.Failed() {
			for _, p := range all {
				t.Logf("--- %s log:\n%s", p.name, p.tail())
			}
		}
	})
	for _, p := range nodes {
		p.start(t, filepath.Join(bin, "objectnode"))
	}
	rt.start(t, filepath.Join(bin, "router"))
	base := "http://" + httpAddr

	var rooms []string
	for i := 0; i < 40; i++ {
		rooms = append(rooms, fmt.Sprintf("k%d", i))
	}
	view := settled(t, base, strings.Join(rooms, ","))
	victim := "node2"
	var victimRooms, otherRooms []string
	for _, r := range view.Rooms {
		if r.Leader == victim {
			victimRooms = append(victimRooms, r.Room)
		} else {
			otherRooms = append(otherRooms, r.Room)
		}
	}
	if len(victimRooms) < 2 || len(otherRooms) < 1 {
		t.Fatalf("leaders of 40 rooms: %d on %s, %d elsewhere", len(victimRooms), victim, len(otherRooms))
	}
	rooms = []string{victimRooms[0], victimRooms[1], otherRooms[0]}

	const n = 20
	for _, room := range rooms {
		cl := tc.Dial(t, base, room, "writer", true)
		for i := 1; i <= n; i++ {
			cl.Post(fmt.Sprintf("%s-%d", room, i), fmt.Sprintf("%s message %d", room, i))
		}
		for i := 1; i <= n; i++ {
			cl.Expect(wait, "ack", tc.IsType("ack"))
		}
		cl.Conn.Close(1000, "")
	}
	stay := tc.Dial(t, base, victimRooms[0], "stayer", true)
	stay.Expect(wait, "history", tc.IsType("history"))

	nodes[1].kill9()
	killed := time.Now()
	stay.Post("during", "sent right after the kill")
	a := stay.Expect(20*time.Second, "ack from the new leader", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "during" })
	t.Logf("message sent at the kill acknowledged after %v", time.Since(killed).Round(time.Millisecond))
	if a.Seq != n+1 {
		t.Fatalf("message sent during the failover got seq %d, want %d", a.Seq, n+1)
	}
	if stay.Closed() {
		t.Fatal("the browser's WebSocket closed during the failover")
	}
	other := tc.Dial(t, base, victimRooms[1], "other", true)
	if h := other.Expect(wait, "history", tc.IsType("history")); len(h.Messages) != n {
		t.Fatalf("room %s has %d messages on the new leader, want %d", victimRooms[1], len(h.Messages), n)
	}
	other.Post("after", "written on the new leader")
	other.Expect(wait, "ack", tc.IsType("ack"))

	nodes[1].start(t, filepath.Join(bin, "objectnode"))
	settled(t, base, "")
	stay.Post("back", "after node2 is back")
	if a := stay.Expect(wait, "ack", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "back" }); a.Seq != n+2 {
		t.Fatalf("ack after the restart has seq %d, want %d", a.Seq, n+2)
	}

	// Stop everything cleanly and compare the replicas byte for byte.
	for _, p := range all {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range all {
		waitExit(t, p)
	}
	want := map[string]int{victimRooms[0]: n + 2, victimRooms[1]: n + 1, otherRooms[0]: n}
	for room, count := range want {
		var first []storage.KV
		for i := 0; i < 3; i++ {
			st, err := storage.OpenStore(filepath.Join(dir, fmt.Sprintf("node%d", i+1)), slog.Default())
			if err != nil {
				t.Fatal(err)
			}
			kvs, err := st.List(room, []byte("m"), []byte("n"), 0, false)
			st.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(kvs) != count {
				t.Fatalf("node%d holds %d messages of %s, want %d", i+1, len(kvs), room, count)
			}
			if i == 0 {
				first = kvs
				continue
			}
			for j := range kvs {
				if !bytes.Equal(kvs[j].Key, first[j].Key) || !bytes.Equal(kvs[j].Value, first[j].Value) {
					t.Fatalf("replicas differ in room %s at message %d (node1 vs node%d)", room, j+1, i+1)
				}
			}
		}
	}
}

func waitExit(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.exit:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15s of SIGTERM", p.name)
	}
}
