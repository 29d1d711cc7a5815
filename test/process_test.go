package test

import (
	"encoding/json"
	"fmt"
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

	tc "hellochat/internal/testcluster"
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
	go p.cmd.Wait()
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
	Rooms []struct {
		Room  string `json:"room"`
		Owner string `json:"owner"`
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

// TestKill9NodeKeepsHistory runs the real binaries: it kills -9 an object
// node, restarts it, and checks its rooms' history is intact. A browser
// connected to one of its rooms stays connected through the outage, and the
// message it sent while the node was down is stored once when it returns.
func TestKill9NodeKeepsHistory(t *testing.T) {
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
	var view clusterJSON
	tc.Eventually(t, 20*time.Second, func() error {
		v, err := getCluster(base, strings.Join(rooms, ","))
		if err != nil {
			return err
		}
		alive := 0
		for _, m := range v.Members {
			if m.Role == "node" && m.Alive {
				alive++
			}
		}
		if alive != 3 {
			return fmt.Errorf("%d of 3 nodes alive", alive)
		}
		view = v
		return nil
	})
	victim := "node2"
	var victimRooms, otherRooms []string
	for _, r := range view.Rooms {
		if r.Owner == victim {
			victimRooms = append(victimRooms, r.Room)
		} else {
			otherRooms = append(otherRooms, r.Room)
		}
	}
	if len(victimRooms) < 2 || len(otherRooms) < 1 {
		t.Fatalf("placement of 40 rooms: %d on %s, %d elsewhere", len(victimRooms), victim, len(otherRooms))
	}
	victimRooms = victimRooms[:2]
	rooms = append(victimRooms, otherRooms[0])

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
	// Rooms of other nodes keep working while node2 is down.
	other := tc.Dial(t, base, otherRooms[0], "other", true)
	other.Post("during-other", "while node2 is down")
	if a := other.Expect(wait, "ack", tc.IsType("ack")); a.Seq != n+1 {
		t.Fatalf("other room ack %s, want seq %d", a.Raw, n+1)
	}
	stay.Expect(wait, "reconnecting status", func(f tc.Frame) bool { return f.Type == "status" && f.State == "reconnecting" })
	stay.Post("during", "sent while the node was down")
	stay.Quiet(300*time.Millisecond, "ack while the node is down", tc.IsType("ack"))

	nodes[1].start(t, filepath.Join(bin, "objectnode"))
	a := stay.Expect(20*time.Second, "ack after restart", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "during" })
	if a.Seq != n+1 {
		t.Fatalf("message sent during the outage got seq %d, want %d", a.Seq, n+1)
	}
	if stay.Closed() {
		t.Fatal("the browser's WebSocket closed during the outage")
	}
	for _, room := range rooms {
		cl := tc.Dial(t, base, room, "reader", true)
		h := cl.Expect(wait, "history", tc.IsType("history"))
		want := n
		if room == victimRooms[0] || room == otherRooms[0] {
			want = n + 1
		}
		if len(h.Messages) != want {
			t.Fatalf("room %s has %d messages after the restart, want %d", room, len(h.Messages), want)
		}
		for i, m := range h.Messages[:n] {
			if m.Seq != uint64(i+1) || m.Text != fmt.Sprintf("%s message %d", room, i+1) {
				t.Fatalf("room %s history[%d] = %+v", room, i, m)
			}
		}
	}
}
