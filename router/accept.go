package router

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/coder/websocket"

	"hellochat/apps/chat/wire"
	"hellochat/limits"
)

// handleWS upgrades a browser connection and hands it to its own goroutine,
// so the HTTP server's goroutine, its stack and the request are let go.
func (rt *Router) handleWS(w http.ResponseWriter, req *http.Request) {
	addr := clientAddr(req)
	from, ok := rt.admit(w, addr)
	if !ok {
		return
	}
	hj := &leanHijack{ResponseWriter: w}
	conn, err := websocket.Accept(hj, req, &websocket.AcceptOptions{
		Subprotocols:       []string{SubprotocolV2},
		InsecureSkipVerify: rt.cfg.AllowAnyOrigin,
	})
	if err != nil {
		rt.release(addr)
		return // Accept has answered the request
	}
	conn.SetReadLimit(limits.MaxFrameBytes)
	q := req.URL.Query()
	id := rt.nextSession.Add(1)
	s := &session{
		id:         id,
		conn:       conn,
		out:        hj.conn,
		parker:     rt.parker,
		seedPrefix: rt.idPrefix + strconv.FormatUint(id, 36) + "-",
		closed:     make(chan struct{}),
		addr:       addr,
		shares:     queueShares{router: &rt.queued, addr: &from.queued},
		sends:      newBucket(rt.cfg.SendBurst),
		frames:     newBucket(rt.cfg.FrameBurst),
	}
	if conn.Subprotocol() == SubprotocolV2 {
		s.proto = wire.V2
		s.lines = q.Get("lines") == "1"
	}

	room, rerr := limits.Room(q.Get("room"))
	name, nerr := limits.Name(q.Get("name"))
	var after uint64
	if a := q.Get("after"); a != "" && s.proto == wire.V2 {
		after, err = strconv.ParseUint(a, 10, 64)
		if err != nil {
			rerr = &limits.Error{Code: limits.CodeBadJSON, Message: "after must be a seq number"}
		}
	}
	var kerr error
	if s.proto == wire.V2 {
		s.key = q.Get("key")
		kerr = limits.ClientKey(s.key)
	}
	for _, err := range []error{rerr, nerr, kerr} {
		var le *limits.Error
		if errors.As(err, &le) {
			// The error frame first, then the close: written here, in order.
			wctx, wcancel := context.WithTimeout(rt.ctx, WriteTimeout)
			rt.metrics.refuse(le.Code)
			conn.Write(wctx, websocket.MessageText, wire.Error(s.proto, le.Code, le.Message, ""))
			wcancel()
			conn.Close(websocket.StatusPolicyViolation, le.Message)
			rt.release(addr)
			return
		}
	}
	s.room, s.name, s.after = room, name, after
	go rt.serve(s)
}

// serve runs a session from its join to its leave.
func (rt *Router) serve(s *session) {
	if !rt.track(s) {
		s.kill(websocket.StatusGoingAway, "router shutting down")
		rt.release(s.addr)
		return
	}
	if s.proto == wire.V2 {
		s.enqueue(wire.Welcome(s.room, s.name))
	}
	s.read(rt.join(s), false)
}
