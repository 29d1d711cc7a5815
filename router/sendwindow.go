package router

import (
	pb "hellochat/proto/roompb"
)

const (
	// RelayWindow and RelayWindowBytes: while a relay holds this many
	// unacknowledged sends (or bytes of them) for its room, it stops reading
	// from the room's browsers, so TCP pushes back on them.
	RelayWindow      = 1024
	RelayWindowBytes = 1 << 20
	// MaxUnacked and MaxUnackedBytes bound what a relay holds at all; a send
	// beyond them is refused with `overloaded`. Between the two bounds are
	// the frames browsers had already sent when reading paused, and those
	// read after a pause outlasted MaxReadPause.
	MaxUnacked      = 2 * RelayWindow
	MaxUnackedBytes = 2 * RelayWindowBytes
	// minSendWindow is the fewest sends a relay keeps in flight after a node
	// dropped its stream for being too slow.
	minSendWindow = 16
)

// sendKey names one send: client ids are the browser's, so two sessions may
// use the same one.
type sendKey struct {
	session uint64
	id      string
}

// outSend is a send waiting for the room's answer.
type outSend struct {
	send    *pb.Send
	bytes   int
	written bool // written on the current stream
	done    bool // answered; dropped once it reaches the head
}

// sendWindow holds a relay's unanswered sends in order, and decides which go
// out on the stream: at most cwnd at once. A node that dropped the stream
// for being too slow halves cwnd, and acknowledgements grow it back by one
// per cwnd of them (as TCP's congestion avoidance does), so a stream that
// comes back is not flooded by resends and dropped again. Owned by the
// relay's goroutine.
type sendWindow struct {
	entries []*outSend // in send order; answered ones until they reach the head
	byKey   map[sendKey]*outSend
	bytes   int
	next    int // entries before next were considered on the current stream
	written int // written on the current stream and not answered
	cwnd    int
	grown   int // acks since cwnd last grew
}

func newSendWindow() *sendWindow {
	return &sendWindow{byKey: map[sendKey]*outSend{}, cwnd: RelayWindow}
}

func sendBytes(s *pb.Send) int { return 32 + len(s.Text) + len(s.ClientId) + len(s.Name) }

// len is how many sends wait for an answer.
func (w *sendWindow) len() int { return len(w.byKey) }

// full reports whether browsers should stop sending for now.
func (w *sendWindow) full() bool {
	return len(w.byKey) >= RelayWindow || w.bytes >= RelayWindowBytes
}

func (w *sendWindow) has(k sendKey) bool { return w.byKey[k] != nil }

// add takes a send; false when the relay holds too much already.
func (w *sendWindow) add(s *pb.Send) bool {
	n := sendBytes(s)
	if len(w.byKey) >= MaxUnacked || w.bytes+n > MaxUnackedBytes {
		return false
	}
	e := &outSend{send: s, bytes: n}
	w.entries = append(w.entries, e)
	w.byKey[sendKey{s.Session, s.ClientId}] = e
	w.bytes += n
	return true
}

// pump writes sends while fewer than cwnd are in flight.
func (w *sendWindow) pump(write func(*pb.Send)) {
	for w.written < w.cwnd && w.next < len(w.entries) {
		e := w.entries[w.next]
		w.next++
		if e.done {
			continue
		}
		e.written = true
		w.written++
		write(e.send)
	}
}

// answer forgets an acknowledged or refused send and returns it (nil when
// it was not waiting).
func (w *sendWindow) answer(k sendKey) *pb.Send {
	e := w.byKey[k]
	if e == nil {
		return nil
	}
	delete(w.byKey, k)
	e.done = true
	w.bytes -= e.bytes
	if e.written {
		w.written--
		w.grow()
	}
	// Answers come nearly in send order: trimming from the head keeps this
	// O(1) per answer.
	i := 0
	for i < len(w.entries) && w.entries[i].done {
		i++
	}
	w.entries = w.entries[i:]
	w.next = max(0, w.next-i)
	if len(w.entries) == 0 {
		w.entries, w.next = nil, 0
	}
	return e.send
}

func (w *sendWindow) grow() {
	if w.cwnd >= RelayWindow {
		return
	}
	if w.grown++; w.grown >= w.cwnd {
		w.cwnd++
		w.grown = 0
	}
}

// slowDown halves the window after the node dropped the stream as too slow.
func (w *sendWindow) slowDown() {
	w.cwnd, w.grown = max(minSendWindow, w.cwnd/2), 0
}

// restart forgets what went out on the previous stream: everything unanswered
// is sent again on the next one, with the same ids.
func (w *sendWindow) restart() (resent int) {
	for _, e := range w.entries {
		if e.written {
			resent++
		}
		e.written = false
	}
	w.next, w.written = 0, 0
	return resent
}

// clear drops every send (the relay gave up on them).
func (w *sendWindow) clear() {
	*w = sendWindow{byKey: map[sendKey]*outSend{}, cwnd: w.cwnd}
}
