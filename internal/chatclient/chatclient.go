// Package chatclient is a WebSocket client of the router for tests and
// tools (the failover experiment, load generators): it speaks the seed
// protocol or hellochat.v2 and delivers every server frame, decoded.
package chatclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// Frame is any server frame, seed or v2, decoded loosely.
type Frame struct {
	Type      string   `json:"type"`
	Room      string   `json:"room"`
	Name      string   `json:"name"`
	Message   string   `json:"message"`
	Timestamp int64    `json:"timestamp"`
	Seq       uint64   `json:"seq"`
	ID        string   `json:"id"`
	Text      string   `json:"text"`
	TS        int64    `json:"ts"`
	Code      string   `json:"code"`
	State     string   `json:"state"`
	Users     []string `json:"users"`
	More      bool     `json:"more"`
	Before    uint64   `json:"before"`
	Messages  []Frame  `json:"messages"`
	Raw       string   `json:"-"`
}

func (f Frame) String() string { return f.Raw }

// Client is one WebSocket connection to the router.
type Client struct {
	Conn   *websocket.Conn
	Frames chan Frame    // every frame received, in order
	Closed chan struct{} // closed when the connection ends

	mu       sync.Mutex
	closeErr error
}

// QueueSize bounds the frames a client buffers for its reader; a reader
// that falls this far behind stalls the connection (and the router then
// closes it as a slow consumer), as a real browser would.
const QueueSize = 100000

// Dial connects to base (http://host:port) for room as name. v2 selects
// the hellochat.v2 subprotocol, taking frames as lines (lines=1) as our
// web page does; extra adds or overrides query parameters ("after=5",
// "lines=0").
func Dial(ctx context.Context, base, room, name string, v2 bool, extra ...string) (*Client, error) {
	return DialVia(ctx, nil, base, room, name, v2, extra...)
}

// DialVia is Dial through hc's transport (nil: the default), for a
// router that only some network namespace reaches.
func DialVia(ctx context.Context, hc *http.Client, base, room, name string, v2 bool, extra ...string) (*Client, error) {
	return start(dialConn(ctx, hc, base, room, name, v2, extra...))
}

// DialAt is Dial to another path than /ws (an app's route, such as
// /chat/ws).
func DialAt(ctx context.Context, base, path, room, name string, v2 bool, extra ...string) (*Client, error) {
	return start(dialPath(ctx, nil, base, path, room, name, v2, extra...))
}

func start(conn *websocket.Conn, err error) (*Client, error) {
	if err != nil {
		return nil, err
	}
	c := &Client{Conn: conn, Frames: make(chan Frame, QueueSize), Closed: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// DialConn opens the bare WebSocket, for callers (load generators) that
// read it themselves (see EachFrame).
func DialConn(ctx context.Context, base, room, name string, v2 bool, extra ...string) (*websocket.Conn, error) {
	return dialConn(ctx, nil, base, room, name, v2, extra...)
}

// DialConnAt is DialConn to another path than /ws (an app's route that
// speaks the seed protocol, such as /hello/ws).
func DialConnAt(ctx context.Context, base, path, room, name string, v2 bool, extra ...string) (*websocket.Conn, error) {
	return dialPath(ctx, nil, base, path, room, name, v2, extra...)
}

func dialConn(ctx context.Context, hc *http.Client, base, room, name string, v2 bool, extra ...string) (*websocket.Conn, error) {
	return dialPath(ctx, hc, base, "/ws", room, name, v2, extra...)
}

func dialPath(ctx context.Context, hc *http.Client, base, path, room, name string, v2 bool, extra ...string) (*websocket.Conn, error) {
	q := url.Values{}
	if room != "" {
		q.Set("room", room)
	}
	if name != "" {
		q.Set("name", name)
	}
	if v2 {
		q.Set("lines", "1")
	}
	for _, e := range extra {
		k, v, _ := strings.Cut(e, "=")
		q.Set(k, v)
	}
	u := "ws" + strings.TrimPrefix(base, "http") + path + "?" + q.Encode()
	opts := &websocket.DialOptions{HTTPClient: hc}
	if v2 {
		opts.Subprotocols = []string{"hellochat.v2"}
	}
	conn, _, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		return nil, fmt.Errorf("chatclient: dial %s: %w", u, err)
	}
	conn.SetReadLimit(1 << 20)
	return conn, nil
}

func (c *Client) readLoop() {
	defer close(c.Closed)
	for {
		_, data, err := c.Conn.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.mu.Unlock()
			return
		}
		EachFrame(data, func(line []byte) {
			var f Frame
			if err := json.Unmarshal(line, &f); err != nil {
				f = Frame{Type: "undecodable"}
			}
			f.Raw = string(line)
			c.Frames <- f
		})
	}
}

// EachFrame calls fn for each frame of a WebSocket message: a v2 session
// with lines=1 gets several frames per message, one per line.
func EachFrame(data []byte, fn func(frame []byte)) {
	for len(data) > 0 {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		fn(line)
		data = rest
	}
}

// Write sends one frame as it is.
func (c *Client) Write(ctx context.Context, typ websocket.MessageType, b []byte) error {
	return c.Conn.Write(ctx, typ, b)
}

// WriteJSON sends v as a text frame.
func (c *Client) WriteJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageText, b)
}

// Post sends a v2 message with a client id.
func (c *Client) Post(ctx context.Context, id, text string) error {
	return c.WriteJSON(ctx, map[string]string{"type": "send", "id": id, "text": text})
}

// CloseErr is why the connection ended (nil while open).
func (c *Client) CloseErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// IsClosed reports whether the connection has ended.
func (c *Client) IsClosed() bool {
	select {
	case <-c.Closed:
		return true
	default:
		return false
	}
}
