package router

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// echoServer upgrades through leanHijack and echoes every message.
func echoServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(&leanHijack{ResponseWriter: w}, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		for {
			typ, data, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, data); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A client may send its first frame right behind the upgrade request,
// before the answer: the server has read it along with the request, and
// the smaller buffer must not lose it.
func TestSmallReadsKeepsPipelinedFrame(t *testing.T) {
	srv := echoServer(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	payload := []byte(`{"type":"typing"}`)
	mask := []byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(payload))}
	frame = append(frame, mask...)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), frame...)); err != nil { // one write: request and frame
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	head := make([]byte, 2)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatalf("no echo of the pipelined frame: %v", err)
	}
	got := make([]byte, head[1]&0x7f)
	if _, err := io.ReadFull(br, got); err != nil || head[0] != 0x81 || !bytes.Equal(got, payload) {
		t.Fatalf("echo = %x %q (%v), want text %q", head, got, err, payload)
	}
}

// Messages far larger than the read buffer arrive whole.
func TestSmallReadsLargeMessages(t *testing.T) {
	srv := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	for _, n := range []int{1, ReadBufferBytes - 1, ReadBufferBytes, ReadBufferBytes + 1, 100_000} {
		msg := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%d-byte message: echo of %d bytes, %v", n, len(got), err)
		}
	}
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// Frames that wait together reach the socket in one write, each still its
// own message; a batch larger than batchFlushBytes goes in pieces of about
// that size, whole and in order.
func TestBatchWritesOnce(t *testing.T) {
	s, client := socketPair(t, queueShares{})
	msgs := messages(client)
	sock := &countingConn{Conn: s.raw.Conn}
	s.raw.Conn = sock
	frames := make([][]byte, 16)
	for i := range frames {
		frames[i] = []byte(fmt.Sprintf(`{"type":"message","seq":%d,"text":"%s"}`, i, strings.Repeat("x", 100)))
	}
	if !s.write(context.Background(), textFrames(frames...)) {
		t.Fatal("the write failed")
	}
	for i, m := range readN(t, msgs, len(frames)) {
		if !bytes.Equal(m, frames[i]) {
			t.Fatalf("message %d = %s, want %s", i, m, frames[i])
		}
	}
	if n := sock.writes.Load(); n != 1 {
		t.Fatalf("16 frames took %d writes, want 1", n)
	}

	sock.writes.Store(0)
	big := make([][]byte, 5)
	for i := range big {
		big[i] = bytes.Repeat([]byte{'a' + byte(i)}, batchFlushBytes/2+100)
	}
	if !s.write(context.Background(), textFrames(big...)) {
		t.Fatal("the write failed")
	}
	for i, m := range readN(t, msgs, len(big)) {
		if !bytes.Equal(m, big[i]) {
			t.Fatalf("large message %d: %d bytes, want %d", i, len(m), len(big[i]))
		}
	}
	if n := sock.writes.Load(); n < 2 || n > 4 {
		t.Fatalf("%d KiB in one batch took %d writes, want it cut at about %d KiB", 5*len(big[0])>>10, n, batchFlushBytes>>10)
	}
}

// The library answers pings outside any batch, from the reading goroutine,
// while batches are being written: both reach the client whole.
func TestBatchPingsWhileWriting(t *testing.T) {
	s, client := socketPair(t, queueShares{})
	go s.conn.Read(context.Background()) // answers pings until the client goes
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const batches, perBatch = 200, 8
	got := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			_, m, err := client.Read(ctx) // also takes the pongs
			if i < batches*perBatch && err != nil {
				got <- fmt.Errorf("message %d: %w", i, err)
				return
			}
			if err != nil {
				return
			}
			if want := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", i%700)); string(m) != want {
				got <- fmt.Errorf("message %d = %.40s..., want %.40s...", i, m, want)
				return
			}
			if i == batches*perBatch-1 {
				got <- nil
			}
		}
	}()
	pings := make(chan error, 1)
	go func() {
		for i := 0; i < 50; i++ {
			if err := client.Ping(ctx); err != nil {
				pings <- err
				return
			}
		}
		pings <- nil
	}()
	for b := 0; b < batches; b++ {
		frames := make([][]byte, perBatch)
		for j := range frames {
			i := b*perBatch + j
			frames[j] = []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", i%700)))
		}
		if !s.write(ctx, textFrames(frames...)) {
			t.Fatal("the write failed")
		}
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if err := <-pings; err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// Under apps.SocketPolicy.JoinLines the text frames that wait together
// reach the browser as one message, one per line, cut at MaxLinesBytes;
// a frame with a newline of its own, and a binary frame, go alone, and
// the frames around them join as before. Every frame arrives once, in
// order.
func TestJoinLines(t *testing.T) {
	s, client := socketPair(t, queueShares{})
	s.policy.JoinLines = true
	msgs := messages(client)
	big := func(c byte) []byte { return bytes.Repeat([]byte{c}, MaxLinesBytes/2-10) }
	frames := textFrames([]byte("f0"), []byte("f1"), []byte("f2"), []byte("two\nlines"), []byte("f3"),
		big('a'), big('b'), big('c'), []byte("f4"))
	frames = slices.Insert(frames, 5, outFrame{data: []byte{0, 1}})
	if !s.write(context.Background(), frames) {
		t.Fatal("the write failed")
	}
	want := []string{"f0\nf1\nf2", "two\nlines", "f3", "\x00\x01",
		string(big('a')) + "\n" + string(big('b')), string(big('c')) + "\nf4"}
	for i, m := range readN(t, msgs, len(want)) {
		if string(m) != want[i] {
			t.Fatalf("message %d: %.40q (%d bytes), want %.40q (%d bytes)", i, m, len(m), want[i], len(want[i]))
		}
	}
	// A lone frame needs no joining, nor any buffer.
	if !s.write(context.Background(), textFrames([]byte("alone"))) {
		t.Fatal("the write failed")
	}
	if m := readN(t, msgs, 1)[0]; string(m) != "alone" {
		t.Fatalf("a lone frame arrived as %q", m)
	}
}
