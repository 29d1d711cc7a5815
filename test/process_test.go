package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hellochat/apps/chat"
	"hellochat/internal/launch"
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

type roomsJSON struct {
	Rooms []struct {
		Room   string `json:"room"`
		Leader string `json:"leader"`
	} `json:"rooms"`
}

func roomLeaders(t *testing.T, base string, rooms []string) roomsJSON {
	t.Helper()
	var v roomsJSON
	resp, err := http.Get(base + "/api/cluster?rooms=" + strings.Join(rooms, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// startProcesses starts a cluster of the real binaries (built once), with
// startLaunched starts a cluster of real processes, killed when the test
// ends; a failed test shows the end of every process's log.
func startLaunched(t *testing.T, o launch.Options) *launch.Cluster {
	t.Helper()
	c, err := launch.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Kill()
		if t.Failed() {
			for _, p := range c.All() {
				t.Logf("--- %s log (last 30 lines):\n%s", p.Name, p.Tail(30))
			}
		}
	})
	return c
}

// quick gossip, stopped (and its logs shown on failure) by t.Cleanup.
func startProcesses(t *testing.T) (bin, dir string, c *launch.Cluster) {
	t.Helper()
	bin = buildBinaries(t)
	dir = t.TempDir()
	c = startLaunched(t, launch.Options{Bin: bin, Dir: dir,
		NodeFlags:   []string{"--probe-interval", "100ms", "--probe-timeout", "50ms"},
		RouterFlags: []string{"--probe-interval", "100ms", "--probe-timeout", "50ms"}})
	return bin, dir, c
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
	_, dir, c := startProcesses(t)
	base := c.Base

	var rooms []string
	for i := 0; i < 40; i++ {
		rooms = append(rooms, fmt.Sprintf("k%d", i))
	}
	victim := "node2"
	var victimRooms, otherRooms []string
	for _, r := range roomLeaders(t, c.Admin, rooms).Rooms {
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

	c.Node(victim).Kill9()
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

	if err := c.Node(victim).Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Settled(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	stay.Post("back", "after node2 is back")
	if a := stay.Expect(wait, "ack", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "back" }); a.Seq != n+2 {
		t.Fatalf("ack after the restart has seq %d, want %d", a.Seq, n+2)
	}

	// Once node2 has every committed entry, stop everything cleanly and
	// compare the replicas byte for byte.
	if _, err := c.Settled(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{victimRooms[0]: n + 2, victimRooms[1]: n + 1, otherRooms[0]: n}
	for room, count := range want {
		var first []storage.KV
		for i := 0; i < 3; i++ {
			st, err := storage.OpenStore(filepath.Join(dir, fmt.Sprintf("node%d", i+1)), slog.Default())
			if err != nil {
				t.Fatal(err)
			}
			object, start, end := chat.StoredMessages(room)
			kvs, err := st.List(object, start, end, 0, false)
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

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestDuplicateIDProcessExits starts a second real objectnode process with
// a live node's --id: it exits non-zero with an error naming the first
// (its gRPC address); the first keeps running.
func TestDuplicateIDProcessExits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin, dir, c := startProcesses(t)
	first := c.Node("node2")
	gp, err := launch.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "objectnode"), "--id", "node2",
		"--data", filepath.Join(dir, "second-node2"), "--grpc-addr", "127.0.0.1:0",
		"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", gp), "--join", first.GossipAddr(), "--expect", "0",
		"--dev-pki", filepath.Join(dir, "pki"))
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the second node2 did not exit within 30 s:\n%s", out)
	}
	if err == nil {
		t.Fatalf("the second node2 exited with status 0:\n%s", out)
	}
	if !bytes.Contains(out, []byte(`"node2" is already used`)) || !bytes.Contains(out, []byte(first.GRPCAddr())) {
		t.Fatalf("the second node2's error does not name the first (%s):\n%s", first.GRPCAddr(), out)
	}
	if _, exited := first.Exited(); exited {
		t.Fatal("the first node2 exited")
	}
}
