//go:build linux

package router_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/apps/builtin"
	"hellochat/apps/chat/wire"
	"hellochat/internal/chatclient"
	tc "hellochat/internal/testcluster"
	"hellochat/router"
	"hellochat/security"
)

// These tests run a router of their own, with small queued-bytes limits,
// beside a real in-process cluster; browsers are real WebSockets on
// loopback addresses (Linux answers all of 127.0.0.0/8), so that several
// client addresses are at hand.

const budgetWait = 60 * time.Second

// startBudgetRouter starts a router that serves the built-in apps and joins
// c's nodes, with the given limits on queued bytes.
func startBudgetRouter(t *testing.T, c *tc.Cluster, id string, budget, perAddr int64) *router.Router {
	t.Helper()
	var seeds []string
	for i := range c.Nodes {
		seeds = append(seeds, c.Config(i).GossipListen)
	}
	rt, err := router.Start(router.Config{
		Apps:               builtin.Registry(builtin.Options{}), // the chat at /ws, sends unbounded
		ID:                 id,
		HTTPListen:         "127.0.0.1:0",
		AdminListen:        "127.0.0.1:0",
		GossipListen:       "127.0.0.1:" + strconv.Itoa(tc.FreePort(t)),
		Seeds:              seeds,
		Timings:            tc.Timings(),
		Security:           c.Security(security.RoleRouter, id),
		QueuedBytesBudget:  budget,
		QueuedBytesPerAddr: perAddr,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("start router %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rt.Shutdown(ctx)
	})
	return rt
}

// dialerFrom dials from a loopback address of the test's choosing; a
// non-zero rcvbuf shrinks the socket's receive buffer before it connects,
// so the kernel takes little of what the router writes off its hands.
func dialerFrom(ip string, rcvbuf int) *net.Dialer {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	return d
}

func clientFrom(d *net.Dialer) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// slowBrowser joins room from ip, reads until its history came (so the
// room's live messages go to it from then on), and then reads nothing.
func slowBrowser(t *testing.T, base, room, name, ip string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budgetWait)
	defer cancel()
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws?lines=1&room=" + room + "&name=" + name
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: clientFrom(dialerFrom(ip, 4<<10)), Subprotocols: []string{wire.SubprotocolV2}})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", name, ip, err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	conn.SetReadLimit(-1)
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("%s waiting for its history: %v", name, err)
		}
		if bytes.Contains(data, []byte(`"type":"history"`)) {
			return conn
		}
	}
}

// dialReader joins room from ip as a browser that reads everything, and
// waits for its history.
func dialReader(t *testing.T, base, room, name, ip string) *chatclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budgetWait)
	defer cancel()
	cl, err := chatclient.DialVia(ctx, clientFrom(dialerFrom(ip, 0)), base, room, name, true)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", name, ip, err)
	}
	t.Cleanup(func() { cl.Conn.CloseNow() })
	expect(t, cl, "its history", tc.IsType("history"))
	return cl
}

// expect returns the next frame cl is sent that matches, skipping others.
func expect(t *testing.T, cl *chatclient.Client, what string, match func(tc.Frame) bool) tc.Frame {
	t.Helper()
	timeout := time.NewTimer(budgetWait)
	defer timeout.Stop()
	for {
		select {
		case f := <-cl.Frames:
			if match(f) {
				return f
			}
		case <-cl.Closed:
			t.Fatalf("closed while waiting for %s", what)
		case <-timeout.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// closedWith reads what a browser was sent until its connection ends, and
// returns the close frame that ended it; false when it ended without one,
// as when a write to it was stuck for router.WriteTimeout (a loaded
// machine may take that long to send the room's messages).
func closedWith(t *testing.T, conn *websocket.Conn) (websocket.CloseError, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budgetWait)
	defer cancel()
	for {
		_, _, err := conn.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce, true
		}
		if ctx.Err() != nil {
			t.Fatalf("the connection did not end: %v", err)
		}
		return ce, false
	}
}

// refusedMetric reads hellochat_router_refused_total for reason from the
// router's /metrics.
func refusedMetric(t *testing.T, rt *router.Router, reason string) int {
	t.Helper()
	resp, err := http.Get("http://" + rt.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read metrics: %v", err)
	}
	m := regexp.MustCompile(`(?m)^hellochat_router_refused_total\{reason="` + reason + `"\} (\d+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no refused_total for reason %q in:\n%s", reason, regexp.MustCompile(`(?m)^hellochat_router_refused_total.*$`).FindAll(body, -1))
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// Browsers that stop reading while their room talks cannot make the
// router hold more than its limits: not those of one address past their
// share (QueuedBytesPerAddr), not those of several addresses past the
// router's budget (QueuedBytesBudget). Each is closed as a slow consumer
// (1008) once its next frame does not fit, its bytes are given back, and
// a browser of another address that reads sees every message, never
// held up by them.
func TestQueuedBytesBudget(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	const limit = 256 << 10
	for _, tt := range []struct {
		name            string
		budget, perAddr int64
		slowFrom        []string // one slow browser per entry
		reason          string   // of the refusals counted
	}{
		{"per address", 0, limit, []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"}, "queued_bytes_per_addr"},
		{"router budget", limit, 0, []string{"127.0.0.1", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"}, "queued_bytes_budget"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := "router-" + strings.ReplaceAll(tt.name, " ", "-")
			rt := startBudgetRouter(t, c, id, tt.budget, tt.perAddr)
			base, room := "http://"+rt.Addr(), "budget-"+strings.ReplaceAll(tt.name, " ", "-")

			ctx, cancel := context.WithTimeout(context.Background(), budgetWait)
			defer cancel()
			// The writer and a reader, each from an address of its own.
			writer := dialReader(t, base, room, "writer", "127.0.0.2")
			reader := dialReader(t, base, room, "reader", "127.0.0.8")

			var slow []*websocket.Conn
			for i, ip := range tt.slowFrom {
				slow = append(slow, slowBrowser(t, base, room, fmt.Sprintf("slow%d", i), ip))
			}

			// Sample the queued bytes, the router's and those of the slow
			// browsers' first address, while the room talks.
			var peakMu sync.Mutex
			peak, peakAddr := 0, int64(0)
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				tick := time.NewTicker(time.Millisecond) // sampling a gauge, not waiting for an event
				defer tick.Stop()
				for {
					q, qa := rt.Stats().QueuedBytes, rt.QueuedFrom(tt.slowFrom[0])
					peakMu.Lock()
					peak, peakAddr = max(peak, q), max(peakAddr, qa)
					peakMu.Unlock()
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			}()

			// The room talks until every slow browser is gone: once its
			// socket's buffers are full, what it is sent waits in the
			// router, soon more than the limit. The messages go in rounds
			// the room's send window takes whole, so none is refused as
			// overloaded, and that a browser that reads takes without
			// coming near the limit (4000 bytes a message).
			const round, maxRounds = 50, 200
			text := strings.Repeat("x", 4000)
			sent := 0
			for rt.Stats().Sessions > 2 {
				if sent == round*maxRounds {
					t.Fatalf("%d messages sent, and %d slow browsers still connected", sent, rt.Stats().Sessions-2)
				}
				for j := sent; j < sent+round; j++ {
					frame := fmt.Sprintf(`{"type":"send","id":"w-%d","text":"%d %s"}`, j, j, text)
					if err := writer.Conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
						t.Fatalf("send %d: %v", j, err)
					}
				}
				for j := sent; j < sent+round; j++ {
					f := expect(t, writer, fmt.Sprintf("the ack of %d", j), func(f tc.Frame) bool { return f.Type == "ack" || f.Type == "error" })
					if f.Type == "error" {
						t.Fatalf("message %s refused: %s %s", f.ID, f.Code, f.Message)
					}
				}
				sent += round
			}
			for i := 0; i < sent; i++ {
				f := expect(t, reader, fmt.Sprintf("message %d", i), tc.IsMessage)
				if want := fmt.Sprintf("%d ", i); !strings.HasPrefix(f.Text, want) {
					t.Fatalf("the reader was shown %.20q as message %d", f.Text, i)
				}
			}
			close(stop)
			<-sampled

			peakMu.Lock()
			t.Logf("%d messages; peak queued bytes: %d in all, %d for %s", sent, peak, peakAddr, tt.slowFrom[0])
			if tt.perAddr > 0 && peakAddr > tt.perAddr {
				t.Errorf("the router held %d bytes for the browsers of %s; want at most %d", peakAddr, tt.slowFrom[0], tt.perAddr)
			}
			// Browsers with little waiting may pass the budget, by at
			// most twice QueuedBytesFloor each.
			if bound := tt.budget + int64(len(tt.slowFrom)+2)*2*router.QueuedBytesFloor; tt.budget > 0 && int64(peak) > bound {
				t.Errorf("the router held %d bytes for its browsers; want at most %d", peak, bound)
			}
			peakMu.Unlock()
			for i, conn := range slow {
				if ce, ok := closedWith(t, conn); ok && (ce.Code != websocket.StatusPolicyViolation || !strings.HasPrefix(ce.Reason, "slow consumer")) {
					t.Errorf("slow browser %d closed with %d %q, want 1008 slow consumer", i, ce.Code, ce.Reason)
				}
			}
			if n := refusedMetric(t, rt, tt.reason); n == 0 {
				t.Errorf("refused_total{reason=%q} is 0", tt.reason)
			}
			// Everything the slow browsers held is given back.
			tc.Eventually(t, budgetWait, func() error {
				if st := rt.Stats(); st.QueuedBytes != 0 || st.Sessions != 2 {
					return fmt.Errorf("%d sessions hold %d queued bytes; want the writer and the reader, and 0", st.Sessions, st.QueuedBytes)
				}
				return nil
			})
			for _, cl := range []*chatclient.Client{writer, reader} {
				if cl.IsClosed() {
					t.Fatal("a browser that reads was disconnected")
				}
			}
		})
	}
}

// Many connections of one address that send and never read cannot make
// the router hold more than the address's share of queued bytes, also
// with nothing said in their room: here what piles up is the error frame
// the room answers each bad frame with. Each connection is closed as a
// slow consumer once its next frame does not fit (the close frame waits
// behind what its socket holds, so the refusals are counted instead),
// everything it held is given back, and a browser of another address is
// answered as before.
func TestQueuedBytesPerAddressErrorFrames(t *testing.T) {
	// The share is small: each error frame is the room's answer to one
	// frame, and a room under -race answers a few thousand a second.
	const share, conns = 32 << 10, 8
	c := tc.New(t, 3, tc.Options{})
	rt := startBudgetRouter(t, c, "router-errors", 0, share)
	base := "http://" + rt.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), budgetWait)
	defer cancel()

	var peakMu sync.Mutex
	peak := int64(0)
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond) // sampling a gauge, not waiting for an event
		defer tick.Stop()
		for {
			q := rt.QueuedFrom("127.0.0.1")
			peakMu.Lock()
			peak = max(peak, q)
			peakMu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	// Each sends binary frames (refused, each with an error frame), and
	// reads nothing, until every one is gone from the router.
	const maxFrames = 1000000
	ends, stopWriting := make(chan error, conns), make(chan struct{})
	var slow []*websocket.Conn
	for i := 0; i < conns; i++ {
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?room=budget&name=slow"+strconv.Itoa(i),
			&websocket.DialOptions{HTTPClient: clientFrom(dialerFrom("127.0.0.1", 4<<10))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.CloseNow() })
		slow = append(slow, conn)
		go func() {
			for n := 0; n < maxFrames; n++ {
				select {
				case <-stopWriting:
					ends <- nil
					return
				default:
				}
				if err := conn.Write(ctx, websocket.MessageBinary, []byte{1}); err != nil {
					ends <- nil // the router closed it
					return
				}
			}
			ends <- fmt.Errorf("%d frames written and the connection still open", maxFrames)
		}()
	}
	tc.Eventually(t, budgetWait, func() error {
		if n := rt.Stats().Sessions; n != 0 {
			return fmt.Errorf("%d of the %d slow connections still open", n, conns)
		}
		return nil
	})
	close(stopWriting)
	for _, conn := range slow {
		conn.CloseNow() // a write may wait on a socket the router no longer reads
	}
	for range conns {
		if err := <-ends; err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-sampled
	peakMu.Lock()
	t.Logf("peak queued bytes for 127.0.0.1: %d", peak)
	if peak > share {
		t.Errorf("the router held %d bytes for the connections of 127.0.0.1; want at most %d", peak, share)
	}
	peakMu.Unlock()
	if n := refusedMetric(t, rt, "queued_bytes_per_addr"); n != conns {
		t.Errorf("%d connections closed for their address's share, want %d", n, conns)
	}

	// In a room of its own: the flooded room may still be answering what
	// its closed connections sent.
	other, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws?room=budget-other&name=other",
		&websocket.DialOptions{HTTPClient: clientFrom(dialerFrom("127.0.0.2", 0))})
	if err != nil {
		t.Fatal(err)
	}
	defer other.CloseNow()
	if err := other.Write(ctx, websocket.MessageBinary, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, data, err := other.Read(ctx); err != nil || !bytes.Contains(data, []byte("binary frames are not supported")) {
		t.Fatalf("a browser of another address read %q, %v; want its error frame", data, err)
	}
	tc.Eventually(t, budgetWait, func() error {
		if st := rt.Stats(); st.QueuedBytes != 0 || st.Sessions != 1 {
			return fmt.Errorf("%d sessions hold %d queued bytes; want one, and 0", st.Sessions, st.QueuedBytes)
		}
		return nil
	})
}
