package router

import (
	"context"
	"fmt"
	"time"

	"github.com/coder/websocket"

	"hellochat/apps/chat/wire"
	"hellochat/limits"
)

// read runs the read loop, and the session's end unless it parked.
func (s *session) read(rl *relay, resumed bool) {
	if s.readLoop(rl, resumed) {
		return
	}
	rl.submit(relayReq{leave: s})
	rl.rt.untrack(s)
}

// readLoop reads and checks frames until the browser goes away, or, when
// everything the browser sent is read, parks the session and reports true:
// the parker calls resume when there is more, and the loop, resumed,
// reads before it thinks of parking again. Bad input is answered with an
// error frame and the connection carries on. While the room's relay is
// saturated it stops reading (see waitGate).
//
// Reads take no context: a context that can end costs the WebSocket library
// a callback registration per read. A session ends when its socket closes,
// which kill (and so the router's shutdown) does.
func (s *session) readLoop(rl *relay, resumed bool) (parked bool) {
	for {
		if s.isClosed() || !s.waitGate(rl) {
			return false
		}
		if !resumed && s.tryPark(rl) {
			return true
		}
		resumed = false
		// Reading starts when bytes are there (the session parks
		// otherwise), so the whole frame has this long to come.
		deadline := s.parker != nil && rl.rt.cfg.FrameReadTimeout > 0
		if deadline {
			s.out.SetReadDeadline(time.Now().Add(rl.rt.cfg.FrameReadTimeout))
		}
		typ, data, err := s.conn.Read(context.Background())
		if err != nil {
			s.kill(websocket.StatusNormalClosure, "")
			return false
		}
		if deadline {
			s.out.SetReadDeadline(time.Time{})
		}
		if !s.frames.take(rl.rt.cfg.FrameRate, rl.rt.cfg.FrameBurst) {
			tell, isFlood := s.flood.refuse()
			if isFlood {
				rl.rt.metrics.refuse(reasonFlood)
				s.kill(websocket.StatusPolicyViolation, fmt.Sprintf("flood: %d frames over the limit within %v", FloodRefusals, FloodWindow))
				return false
			}
			if tell {
				s.enqueue(wire.Error(s.proto, limits.CodeRateLimited,
					fmt.Sprintf("too many frames (max %g/s); frames are being dropped", rl.rt.cfg.FrameRate), ""))
			}
			rl.rt.metrics.refuse(limits.CodeRateLimited)
			continue
		}
		if typ != websocket.MessageText {
			rl.refuse(s, limits.CodeBinary, wire.Error(s.proto, limits.CodeBinary, "binary frames are not supported; send JSON text", ""))
			continue
		}
		s.handleFrame(rl, data)
	}
}

// tryPark parks the session if nothing it was sent waits unread.
func (s *session) tryPark(rl *relay) bool {
	c := s.out
	if s.parker == nil || c == nil {
		return false
	}
	c.parkMu.Lock()
	defer c.parkMu.Unlock()
	if s.isClosed() || !c.idle() {
		return false
	}
	if err := s.parker.park(c, s.id, func() { s.resume(rl) }); err != nil {
		return false // the read will say why, if it is the socket
	}
	c.parked = true
	return true
}

// resume is the parker's call: the browser sent something, or hung up.
func (s *session) resume(rl *relay) {
	c := s.out
	c.parkMu.Lock()
	parked := c.parked
	c.parked = false
	c.parkMu.Unlock()
	if parked { // else kill took it first
		s.read(rl, true)
	}
}

// waitGate waits while the relay's gate is closed, up to MaxReadPause for
// one closing; after that the session reads again until the gate opens and
// closes anew, and whatever the relay cannot take is refused. It reports
// false when the session is over.
func (s *session) waitGate(rl *relay) bool {
	g := rl.gate.Load()
	if g == nil || g == s.pastGate {
		return true
	}
	t := time.NewTimer(MaxReadPause)
	defer t.Stop()
	select {
	case <-g.open:
		return true
	case <-t.C:
		s.pastGate = g
		return true
	case <-s.closed:
		return false
	}
}
