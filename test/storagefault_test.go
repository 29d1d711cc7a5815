package test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	tc "hellochat/internal/testcluster"
)

// A leader whose disk fills up (every write and fsync fails with ENOSPC
// from then on) stops instead of hanging its rooms: it fails with a clear
// error, its shutdown completes, another replica leads, the router resends
// what was not acknowledged, and nothing acknowledged is lost. The browsers
// stay connected throughout.
func TestDiskFullLeaderStops(t *testing.T) {
	var full atomic.Bool
	enospc := errorfs.InjectorFunc(func(op errorfs.Op, _ string) error {
		if full.Load() && op.OpKind() == errorfs.OpKindWrite {
			return syscall.ENOSPC
		}
		return nil
	})
	c := tc.New(t, 3, tc.Options{NodeFS: func(id string) vfs.FS {
		if id == "node1" {
			return errorfs.Wrap(vfs.Default, enospc)
		}
		return nil
	}})
	room := ""
	for i := 0; room == ""; i++ {
		if r := fmt.Sprintf("full-%d", i); c.Leader(r) == 0 {
			room = r
		}
	}
	writer := tc.Dial(t, c.URL(), room, "writer", true)
	reader := tc.Dial(t, c.URL(), room, "reader", true)
	post := func(i int) { writer.Post(fmt.Sprintf("w-%d", i), fmt.Sprintf("m%d", i)) }
	for i := 1; i <= 5; i++ {
		post(i)
		reader.Expect(wait, "an early message", func(f tc.Frame) bool { return f.Text == fmt.Sprintf("m%d", i) })
	}

	full.Store(true)
	for i := 6; i <= 15; i++ {
		post(i)
	}
	select {
	case <-c.Nodes[0].Failed():
	case <-time.After(wait):
		t.Fatal("node1 did not stop after its disk filled")
	}
	if err := c.Nodes[0].Err(); err == nil || !strings.Contains(err.Error(), "storage failed") {
		t.Fatalf("node1 failed with %v, want it to say its storage failed", err)
	}
	// What the process does next (flagenv.ServeUntil): shut down, bounded.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c.Nodes[0].Shutdown(ctx)
	if ctx.Err() != nil {
		t.Fatalf("node1's shutdown hung for %v", time.Since(start))
	}
	c.Nodes[0] = nil

	for i := 6; i <= 15; i++ {
		reader.Expect(wait, "a message sent as the disk filled", func(f tc.Frame) bool { return f.Text == fmt.Sprintf("m%d", i) })
	}
	got := history(t, c, room)
	if len(got) != 15 {
		t.Fatalf("history holds %d messages, want the 15 sent once each: %v", len(got), got)
	}
	for i, h := range got {
		if want := fmt.Sprintf("w-%d|m%d", i+1, i+1); h != want {
			t.Fatalf("history[%d] = %s, want %s", i, h, want)
		}
	}
	if writer.Closed() || reader.Closed() {
		t.Fatal("a browser was disconnected")
	}
}
