package router

import (
	"context"
	"time"

	"github.com/coder/websocket"
)

// writeLoop writes what is queued until the queue is empty, then ends.
func (s *session) writeLoop() {
	for {
		frames := s.take()
		if frames == nil {
			return
		}
		if s.isClosed() {
			return // writerOn stays set: a killed session writes no more
		}
		// One watchdog per batch, not a deadline context per frame: a
		// context with a deadline costs the WebSocket library a callback
		// registration on every write (BenchmarkSocketWrite: 3.3 µs and 11
		// allocations a frame, against 1.7 µs and 2). A write stuck past
		// WriteTimeout fails once the watchdog closes the socket, and so
		// does one pending when the session is killed (kill closes the
		// socket).
		watchdog := time.AfterFunc(WriteTimeout, func() { s.conn.CloseNow() })
		err := s.writeFrames(frames)
		watchdog.Stop()
		if err != nil {
			s.kill(websocket.StatusGoingAway, "write failed")
			return
		}
		s.written()
	}
}

// writeFrames writes frames to the browser: each as its own message, or,
// for a session that takes lines, runs of them joined by newlines (JSON
// frames hold no raw newline) up to MaxLinesBytes. The messages go out
// together, in one syscall when they fit batchFlushBytes.
func (s *session) writeFrames(frames [][]byte) (err error) {
	var buf *[]byte
	s.out.begin()
	defer func() {
		if ferr := s.out.end(); err == nil {
			err = ferr
		}
		if buf != nil {
			linesBufs.Put(buf)
		}
	}()
	for i := 0; i < len(frames); {
		msg := frames[i]
		i++
		if s.lines && i < len(frames) && len(msg)+1+len(frames[i]) <= MaxLinesBytes {
			if buf == nil {
				buf = linesBufs.Get().(*[]byte)
			}
			b := append((*buf)[:0], msg...)
			for i < len(frames) && len(b)+1+len(frames[i]) <= MaxLinesBytes {
				b = append(append(b, '\n'), frames[i]...)
				i++
			}
			*buf, msg = b, b
		}
		if err := s.conn.Write(context.Background(), websocket.MessageText, msg); err != nil {
			return err
		}
	}
	return nil
}
