package testcluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/internal/chatclient"
)

// Frame is any server frame, seed or v2.
type Frame = chatclient.Frame

// Client is a real WebSocket client of the router, seed or v2, with
// helpers that fail the test.
type Client struct {
	*chatclient.Client
	t      testing.TB
	frames chan Frame
	closed chan struct{}
}

// Dial connects to the router. v2 selects the hellochat.v2 subprotocol;
// extra adds query parameters (e.g. "after=5").
func Dial(t testing.TB, base, room, name string, v2 bool, extra ...string) *Client {
	t.Helper()
	c, err := TryDial(base, room, name, v2, extra...)
	if err != nil {
		t.Fatalf("dial %s room %q as %q: %v", base, room, name, err)
	}
	c.t = t
	t.Cleanup(func() { c.Conn.CloseNow() })
	return c
}

// TryDial is Dial returning the error.
func TryDial(base, room, name string, v2 bool, extra ...string) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, err := chatclient.Dial(ctx, base, room, name, v2, extra...)
	if err != nil {
		return nil, err
	}
	return &Client{Client: cc, frames: cc.Frames, closed: cc.Closed}, nil
}

// SendJSON sends v as a text frame.
func (c *Client) SendJSON(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	c.SendRaw(websocket.MessageText, b)
}

// SendRaw sends one frame as it is.
func (c *Client) SendRaw(typ websocket.MessageType, b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Say sends a seed chat message.
func (c *Client) Say(text string) { c.SendJSON(map[string]string{"message": text}) }

// Post sends a v2 message with a client id.
func (c *Client) Post(id, text string) {
	c.t.Helper()
	c.SendJSON(map[string]string{"type": "send", "id": id, "text": text})
}

// Next returns the next frame, failing the test after timeout.
func (c *Client) Next(timeout time.Duration) Frame {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-time.After(timeout):
		c.t.Fatalf("no frame within %v", timeout)
	case <-c.closed:
		select {
		case f := <-c.frames:
			return f
		default:
		}
		c.t.Fatalf("connection closed: %v", c.CloseErr())
	}
	return Frame{}
}

// Expect skips frames until one satisfies match.
func (c *Client) Expect(timeout time.Duration, what string, match func(Frame) bool) Frame {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("no %s within %v", what, timeout)
		}
		select {
		case f := <-c.frames:
			if match(f) {
				return f
			}
		case <-time.After(left):
			c.t.Fatalf("no %s within %v", what, timeout)
		case <-c.closed:
			// Frames that arrived before the close are still buffered
			// (select picks at random between ready cases), and no more
			// come once the connection has closed.
			for len(c.frames) > 0 {
				if f := <-c.frames; match(f) {
					return f
				}
			}
			c.t.Fatalf("connection closed while waiting for %s: %v", what, c.CloseErr())
		}
	}
}

// Quiet asserts that no frame matching match arrives within d.
func (c *Client) Quiet(d time.Duration, what string, match func(Frame) bool) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if match(f) {
				c.t.Fatalf("unexpected %s: %s", what, f.Raw)
			}
		case <-deadline:
			return
		}
	}
}

// WaitClosed waits for the server to close the connection and returns the
// close status.
func (c *Client) WaitClosed(timeout time.Duration) websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.closed:
		return websocket.CloseStatus(c.CloseErr())
	case <-time.After(timeout):
		c.t.Fatalf("connection still open after %v", timeout)
	}
	return 0
}

// Closed reports whether the connection has closed.
func (c *Client) Closed() bool { return c.IsClosed() }

// IsMessage matches a v2 chat message.
func IsMessage(f Frame) bool { return f.Type == "message" }

// IsType matches a v2 frame type.
func IsType(t string) func(Frame) bool { return func(f Frame) bool { return f.Type == t } }

// IsSeedText matches a seed frame carrying this message text.
func IsSeedText(text string) func(Frame) bool {
	return func(f Frame) bool { return f.Type == "" && f.Message == text }
}
