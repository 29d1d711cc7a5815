package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	tc "hellochat/internal/testcluster"
	"hellochat/limits"
)

// fill stores n messages in a room through the router, as one v2 client
// keeping up to fillWindow unacknowledged (below the router's send window,
// so it is never paused or refused). Message i's text starts "<prefix> i ".
func fill(t *testing.T, c *tc.Cluster, room, prefix string, n, size int) {
	t.Helper()
	const fillWindow = 500
	cl := tc.Dial(t, c.URL(), room, "filler-"+prefix, true)
	cl.Expect(wait, "history", tc.IsType("history"))
	pad := ""
	if size > 0 {
		pad = strings.Repeat("x", size)
	}
	sent, acked := 0, 0
	for acked < n {
		for sent < n && sent-acked < fillWindow {
			cl.Post(fmt.Sprintf("%s-%d", prefix, sent), fmt.Sprintf("%s %d %s", prefix, sent, pad))
			sent++
		}
		f := cl.Expect(wait, "ack", func(f tc.Frame) bool { return f.Type == "ack" || f.Type == "error" })
		if f.Type == "error" {
			t.Fatalf("fill: %s", f.Raw)
		}
		acked++
	}
	cl.Conn.Close(1000, "")
}

// TestSeedJoinStreamsWholeHistory: a seed-protocol client joining a room of
// 20,000 messages gets all of them, oldest first, then the live ones without
// a gap or a duplicate, like the seed app; and while it does not read, the
// router holds only about a page for it, never the history.
func TestSeedJoinStreamsWholeHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 20 MB of messages")
	}
	const total, size = 20000, 400
	c := tc.New(t, 3, tc.Options{SendRate: -1})
	room := "long-history"
	began := time.Now()
	fill(t, c, room, "h", total, size)
	t.Logf("stored %d messages of %d bytes in %v", total, size, time.Since(began).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// A small receive buffer, so the kernel cannot take the history off the
	// router's hands: what the reader does not read, the router must hold
	// or not read from the store.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
		})
		return errors.Join(err, serr)
	}}
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.URL(), "http")+"/ws?room="+room+"&name=reader",
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	live := tc.Dial(t, c.URL(), room, "live", true)
	live.Expect(wait, "history", tc.IsType("history"))

	// The reader reads nothing yet: the kernel's socket buffers fill, then
	// the router must stop reading pages for it.
	peak, start := 0, time.Now()
	for time.Since(start) < 2*time.Second {
		peak = max(peak, c.Router.Stats().QueuedBytes)
		time.Sleep(10 * time.Millisecond) // sampling a gauge, not waiting for an event
	}
	// The room sends a page once the one before reached the reader's
	// socket (WebSocketDrained): one page waits, one is being written,
	// and the rest is slack for frames sent meanwhile.
	const bound = 4 * limits.MaxPageBytes
	if peak > bound {
		t.Fatalf("the router held %d bytes for a reader of a %d MB history; want at most %d", peak, total*size>>20, bound)
	}
	if peak == 0 {
		t.Fatalf("the router never held anything for a reader that does not read: the test did not test the pacing")
	}
	for i := 1; i <= 5; i++ {
		live.Post(fmt.Sprintf("live-%d", i), fmt.Sprintf("live %d", i))
	}

	var got []string
	for len(got) < total+5 {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		var f tc.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if f.Timestamp == 0 {
			continue // join and leave notices
		}
		got = append(got, f.Message)
	}
	for i := 0; i < total; i++ {
		if !strings.HasPrefix(got[i], fmt.Sprintf("h %d ", i)) {
			t.Fatalf("history message %d is %.20q: out of order, missing or doubled", i, got[i])
		}
	}
	for i := 1; i <= 5; i++ {
		if got[total+i-1] != fmt.Sprintf("live %d", i) {
			t.Fatalf("live message %d after the history is %.20q", i, got[total+i-1])
		}
	}
	t.Logf("reader got %d history messages (%.1f MB) and 5 live ones; the router held at most %d KB for it",
		total, float64(total*size)/(1<<20), peak>>10)
}

// TestSeedHistoryCap: the router's --seed-history caps what a seed client
// is sent on connect to the newest messages.
func TestSeedHistoryCap(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: -1, SeedHistory: 10})
	room := "capped"
	fill(t, c, room, "m", 25, 0)
	reader := tc.Dial(t, c.URL(), room, "reader", false)
	for i := 15; i < 25; i++ {
		f := reader.Expect(wait, "history", func(f tc.Frame) bool { return f.Timestamp != 0 })
		if f.Message != fmt.Sprintf("m %d", i) {
			t.Fatalf("history message %q, want m %d", f.Message, i)
		}
	}
	reader.Quiet(300*time.Millisecond, "more history", func(f tc.Frame) bool { return f.Timestamp != 0 })
}

// TestV2ResumeOfLargeMessages: a v2 client resuming after 1,000 messages of
// 4 KB (4 MB, more than gRPC's default message limit) gets all of them, in
// bounded frames, then live ones.
func TestV2ResumeOfLargeMessages(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: -1})
	room := "big-resume"
	fill(t, c, room, "a", 1, 0)
	fill(t, c, room, "b", 1000, 4000)
	cl := tc.Dial(t, c.URL(), room, "back", true, "after=1")
	var seqs []uint64
	for len(seqs) < 1000 {
		f := cl.Expect(wait, "history or message", func(f tc.Frame) bool { return f.Type == "history" || f.Type == "message" })
		if len(f.Raw) > 2*limits.MaxPageBytes {
			t.Fatalf("a frame of %d bytes", len(f.Raw))
		}
		if f.Type == "message" {
			seqs = append(seqs, f.Seq)
		}
		for _, m := range f.Messages {
			seqs = append(seqs, m.Seq)
		}
	}
	for i, s := range seqs {
		if s != uint64(i+2) {
			t.Fatalf("message %d of the resume has seq %d, want %d", i, s, i+2)
		}
	}
	cl.Post("after", "live after the resume")
	if m := cl.Expect(wait, "live message", tc.IsMessage); m.Seq != 1002 {
		t.Fatalf("live message after the resume: %s", m.Raw)
	}
}
