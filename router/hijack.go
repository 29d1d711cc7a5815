package router

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// ReadBufferBytes sizes the buffer a browser's socket is read through. The
// HTTP server's is 4 KiB, which the WebSocket library would keep for the
// connection's life; browsers send small frames, and a larger one is read
// straight into its destination, so most of that would sit idle in every
// session.
const ReadBufferBytes = 512

// Writes go through a buffer the session holds only while it writes (see
// browserConn). The WebSocket library still wants a bufio.Writer of its own
// for each connection; writeStageBytes sizes that one, which only passes
// bytes on: a frame's header and a short payload are copied into it, and a
// longer payload goes past it.
const (
	writeStageBytes = 64
	// batchFlushBytes: a batch that has gathered this much is written
	// out before it takes more, so a long backlog is written in pieces of
	// this size rather than held whole.
	batchFlushBytes = 32 << 10
)

// writeBufs recycles batch buffers between sessions, so an idle session
// holds none.
var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// linesBufs recycles the buffers frames are joined in (joinLines), so a
// socket holds none between batches.
var linesBufs = sync.Pool{New: func() any { return new([]byte) }}

// leanHijack hands the WebSocket library a hijacked connection that reads
// through a ReadBufferBytes buffer instead of the server's, and writes
// through a browserConn. Use it as a pointer: after the upgrade, conn is
// the browserConn the session writes its batches through.
type leanHijack struct {
	http.ResponseWriter
	conn *browserConn
}

func (w *leanHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("router: %T cannot hijack its connection", w.ResponseWriter)
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// What the server read past the request (a client that did not wait
	// for the upgrade's answer) comes first. The library reads the
	// connection it is handed, so that connection must return them.
	bc := &browserConn{Conn: c}
	if n := brw.Reader.Buffered(); n > 0 {
		p, _ := brw.Reader.Peek(n)
		bc.pre = &prefixedConn{Conn: c, pending: bytes.Clone(p)}
		bc.Conn = bc.pre
	}
	bc.br = bufio.NewReaderSize(bc, ReadBufferBytes)
	w.conn = bc
	return bc, bufio.NewReadWriter(bc.br, bufio.NewWriterSize(bc, writeStageBytes)), nil
}

// prefixedConn reads pending before the connection itself.
type prefixedConn struct {
	net.Conn
	pending []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// browserConn is the router's end of a browser's TCP connection. What is
// written between begin and end is gathered into one buffer, borrowed from
// writeBufs for the batch, and written with one syscall: the frames that
// wait for a browser together cost one write, and an idle connection holds
// no write buffer. Outside a batch (the library's pongs and close frames)
// writes go straight through.
type browserConn struct {
	net.Conn
	pre *prefixedConn // when the server had read past the request
	br  *bufio.Reader // what the library reads through

	mu    sync.Mutex
	open  bool
	batch *[]byte // nil when empty
}

func (c *browserConn) begin() {
	c.mu.Lock()
	c.open = true
	c.mu.Unlock()
}

// end writes what the batch gathered and closes it.
func (c *browserConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = false
	return c.flushLocked()
}

func (c *browserConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open {
		return c.Conn.Write(p)
	}
	if c.batch == nil {
		c.batch = writeBufs.Get().(*[]byte)
	}
	*c.batch = append(*c.batch, p...)
	if len(*c.batch) >= batchFlushBytes {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *browserConn) flushLocked() error {
	if c.batch == nil {
		return nil
	}
	b := c.batch
	c.batch = nil
	_, err := c.Conn.Write(*b)
	// A buffer a backlog grew far past the flush size is not kept.
	if cap(*b) <= 2*batchFlushBytes {
		*b = (*b)[:0]
		writeBufs.Put(b)
	}
	return err
}
