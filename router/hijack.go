package router

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
)

// ReadBufferBytes sizes the buffer a browser's socket is read through. The
// HTTP server's is 4 KiB, which the WebSocket library would keep for the
// connection's life; browsers send small frames, and a larger one is read
// straight into its destination, so most of that would sit idle in every
// session.
const ReadBufferBytes = 512

// smallReads hands the WebSocket library a hijacked connection that reads
// through a ReadBufferBytes buffer instead of the server's.
type smallReads struct{ http.ResponseWriter }

func (w smallReads) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("router: %T cannot hijack its connection", w.ResponseWriter)
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	// What the server read past the request (a client that did not wait
	// for the upgrade's answer) comes first.
	if n := brw.Reader.Buffered(); n > 0 {
		p, _ := brw.Reader.Peek(n)
		c = &prefixedConn{Conn: c, pending: bytes.Clone(p)}
	}
	return c, bufio.NewReadWriter(bufio.NewReaderSize(c, ReadBufferBytes), brw.Writer), nil
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
