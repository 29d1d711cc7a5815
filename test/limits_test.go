package test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/apps/chat/wire"
	tc "hellochat/internal/testcluster"
	"hellochat/limits"
	"hellochat/router"
)

// dialFrom opens a v2 WebSocket to the router from a given loopback
// address, and returns the HTTP status of a refused upgrade.
func dialFrom(t *testing.T, base, local, room string) (*websocket.Conn, int, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws?room=" + room + "&name=x"
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: client, Subprotocols: []string{wire.SubprotocolV2}})
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	if conn != nil {
		t.Cleanup(func() { conn.CloseNow() })
	}
	return conn, code, err
}

// Connections past the per-address bound are refused with 429, past the
// router's bound with 503; the connections already there are unaffected,
// and a closed one frees its place.
func TestConnectionCaps(t *testing.T) {
	c := tc.New(t, 3, tc.Options{MaxConnsPerAddr: 3, MaxConns: 5})
	var first []*websocket.Conn
	for i := 0; i < 3; i++ {
		conn, code, err := dialFrom(t, c.URL(), "127.0.0.1", "caps")
		if err != nil {
			t.Fatalf("connection %d from 127.0.0.1: %v (%d)", i+1, err, code)
		}
		first = append(first, conn)
	}
	if _, code, err := dialFrom(t, c.URL(), "127.0.0.1", "caps"); err == nil || code != http.StatusTooManyRequests {
		t.Fatalf("a 4th connection from 127.0.0.1: %v (%d), want 429", err, code)
	}
	for i := 0; i < 2; i++ {
		if _, code, err := dialFrom(t, c.URL(), "127.0.0.2", "caps"); err != nil {
			t.Fatalf("connection %d from 127.0.0.2: %v (%d)", i+1, err, code)
		}
	}
	if _, code, err := dialFrom(t, c.URL(), "127.0.0.3", "caps"); err == nil || code != http.StatusServiceUnavailable {
		t.Fatalf("a 6th connection in all: %v (%d), want 503", err, code)
	}
	if got := c.Router.Stats().RefusedConns; got != 2 {
		t.Fatalf("%d refused connections counted, want 2", got)
	}
	// The admitted ones still chat.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := first[0].Write(ctx, websocket.MessageText, []byte(`{"type":"send","id":"c1","text":"still fine"}`)); err != nil {
		t.Fatal(err)
	}
	for {
		_, b, err := first[1].Read(ctx)
		if err != nil {
			t.Fatalf("the message did not arrive: %v", err)
		}
		if strings.Contains(string(b), "still fine") {
			break
		}
	}
	// Closing one frees its place once the router has seen it go.
	first[2].Close(websocket.StatusNormalClosure, "")
	tc.Eventually(t, wait, func() error {
		conn, _, err := dialFrom(t, c.URL(), "127.0.0.1", "caps")
		if err == nil {
			conn.CloseNow()
		}
		return err
	})
}

// A browser past the frame budget has its frames dropped and is told so
// once a second; one that keeps flooding is disconnected. Its room carries
// on for the others.
func TestFrameBudget(t *testing.T) {
	c := tc.New(t, 3, tc.Options{FrameRate: 5, FrameBurst: 5})
	watcher := tc.Dial(t, c.URL(), "budget", "watcher", true)
	noisy := tc.Dial(t, c.URL(), "budget", "noisy", true)
	for i := 0; i < 20; i++ {
		noisy.SendRaw(websocket.MessageText, []byte(`{"type":"typing"}`))
	}
	e := noisy.Expect(wait, "the rate-limit error", tc.IsType("error"))
	if e.Code != limits.CodeRateLimited {
		t.Fatalf("got %s, want %s", e.Raw, limits.CodeRateLimited)
	}
	// Flood: well past FloodRefusals within the window.
	flood := tc.Dial(t, c.URL(), "budget", "flood", true)
	for i := 0; i < router.FloodRefusals+50; i++ {
		if err := flood.Conn.Write(context.Background(), websocket.MessageText, []byte(`{"type":"typing"}`)); err != nil {
			break // already disconnected
		}
	}
	if code := flood.WaitClosed(wait); code != websocket.StatusPolicyViolation {
		t.Fatalf("the flooding client closed with %v, want 1008", code)
	}
	// The room carries on.
	other := tc.Dial(t, c.URL(), "budget", "other", true)
	other.Post("after-flood", "room carries on")
	watcher.Expect(wait, "the message after the flood", func(f tc.Frame) bool { return f.Text == "room carries on" })
}

// A client that starts a frame and trickles the rest is disconnected after
// the frame read timeout; others are not.
func TestTricklingClientDisconnected(t *testing.T) {
	c := tc.New(t, 3, tc.Options{FrameReadTimeout: 500 * time.Millisecond})
	idle := tc.Dial(t, c.URL(), "trickle", "idle", true)
	// Once idle has its list, the slow client's arrival comes as a delta.
	idle.Expect(wait, "idle's presence", tc.IsType("presence"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	req := "GET /ws?room=trickle&name=slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	idle.Expect(wait, "the slow client in the room", func(f tc.Frame) bool { return f.Type == "joined" && f.Name == "slow" })
	// A masked text frame announcing 100 bytes, of which 10 ever come.
	frame := []byte{0x81, 0x80 | 100, 1, 2, 3, 4}
	frame = append(frame, []byte("0123456789")...)
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	idle.Expect(wait, "the trickling client leaving", func(f tc.Frame) bool { return f.Type == "left" && f.Name == "slow" })
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the trickling client's connection was not closed: %v", err)
	}
	if idle.Closed() {
		t.Fatal("the idle client was disconnected too")
	}
}
