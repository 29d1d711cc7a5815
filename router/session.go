package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

const (
	// SessionQueue and SessionQueueBytes bound what waits to be written to
	// one browser. A browser that falls this far behind while the others of
	// its room keep up is disconnected (1008) rather than slowing its room
	// or growing the router's memory; it reconnects and resumes. The bound
	// is generous because one commit of a busy room's batch arrives as a
	// burst of frames at once.
	SessionQueue      = 16384
	SessionQueueBytes = 8 << 20
	// SessionQueueSoftBytes: when even the least loaded browser of a room
	// has this much waiting, the router is what cannot keep up, and the
	// room's relay stops reading its browsers until one drains below
	// SessionQueueLowBytes. A browser catching up on history gets its next
	// page only below SessionQueueLowBytes too.
	SessionQueueSoftBytes = 2 << 20
	SessionQueueLowBytes  = 256 << 10
	// WriteTimeout bounds writing what was queued for a browser at once.
	WriteTimeout = 10 * time.Second
	// TypingInterval is the least time between two typing notices relayed
	// for one session.
	TypingInterval = 500 * time.Millisecond
	// MaxLinesBytes bounds one WebSocket message of a v2 session that asked
	// for frames as lines (lines=1): frames waiting together go out as one
	// message, one frame per line, up to this size. A busy room's commit
	// reaches each browser as one write instead of one per message.
	MaxLinesBytes = 64 << 10
)

// linesBufs recycles the buffers frames are joined in, so an idle session
// holds none.
var linesBufs = sync.Pool{New: func() any { return new([]byte) }}

// session is one browser WebSocket. Its read loop (serve) parses and checks
// frames and hands them to the room's relay. A writer goroutine exists only
// while frames wait: an idle session costs one goroutine, its reader.
type session struct {
	id         uint64
	proto      protocol
	lines      bool // several frames per WebSocket message, one per line
	room       string
	name       string
	after      uint64 // v2 resume point from ?after=
	seedPrefix string // of the ids the router gives this session's seed messages
	key        string // v2: the browser's secret that scopes its ids (see limits.ClientKey)
	conn       *websocket.Conn
	out        *browserConn          // conn's socket, written a batch at a time
	parker     *parker               // where the idle session waits; nil: in its read
	rl         atomic.Pointer[relay] // set before the relay sees the session
	closed     chan struct{}
	killOnce   sync.Once

	// The outgoing queue: a slice that grows only while frames wait, so an
	// idle connection holds no buffer (a channel would allocate its whole
	// capacity up front, per connection).
	qmu        sync.Mutex
	queue      [][]byte
	qbytes     int
	writing    int       // bytes taken by the writer and not yet written
	takenAt    time.Time // when the writer took them
	drainWatch bool      // tell the relay when the queue falls low
	writerOn   bool      // a writer goroutine runs, and will see what is queued
	overflowed bool      // the queue overflowed (counted once; the session is killed)
	gone       bool      // killed: its bytes are given back, and it queues no more

	addr   string      // the client address its connection counts against
	shares queueShares // what its queued bytes count against besides itself

	// Owned by the read loop.
	sends      bucket // messages (Config.SendRate)
	frames     bucket // frames of any type (Config.FrameRate)
	flood      flood
	lastTyping time.Time
	seedSeq    uint64
	pastGate   *gate // a closed gate this session stopped waiting for
}

// enqueue queues a frame without blocking and returns the bytes now
// waiting. A session that cannot keep up is closed as a slow consumer:
// when its own queue is full, and as well when its frame does not fit
// what its address, or the router, may hold (see queuebudget.go). The
// frame is never dropped from a session that goes on, so what a browser
// is shown has no gaps.
func (s *session) enqueue(frame []byte) int {
	s.qmu.Lock()
	if s.gone {
		s.qmu.Unlock()
		return SessionQueueBytes
	}
	if len(s.queue) >= SessionQueue || s.qbytes+s.writing+len(frame) > SessionQueueBytes {
		return s.overflow(reasonSlowConsumer, fmt.Sprintf("slow consumer: %d frames queued", len(s.queue)))
	}
	keepsUp := func() bool {
		return s.qbytes+len(frame) <= QueuedBytesFloor && (s.writing == 0 || time.Since(s.takenAt) < StuckWriteAfter)
	}
	if reason, why := s.shares.reserve(int64(len(frame)), keepsUp); reason != "" {
		return s.overflow(reason, why)
	}
	s.queue = append(s.queue, frame)
	s.qbytes += len(frame)
	n := s.qbytes + s.writing
	start := !s.writerOn
	s.writerOn = true
	s.qmu.Unlock()
	if start {
		go s.writeLoop()
	}
	return n
}

// overflow ends a session whose frame cannot be queued; it is called
// with qmu held, and returns what enqueue does.
func (s *session) overflow(reason, why string) int {
	first := !s.overflowed
	s.overflowed = true
	s.qmu.Unlock()
	if rl := s.rl.Load(); rl != nil && first {
		rl.rt.metrics.refuse(reason)
	}
	s.kill(websocket.StatusPolicyViolation, why)
	return SessionQueueBytes
}

// dropQueue gives back every byte the session holds queued or being
// written, and stops it queueing more: a killed session's frames will not
// be written, so they count against nobody's share. The writer may still
// be finishing a write of bytes given back here; kill closes its socket,
// which ends that write.
func (s *session) dropQueue() {
	s.qmu.Lock()
	n := s.qbytes + s.writing
	s.gone = true
	s.queue, s.qbytes, s.writing = nil, 0, 0
	s.qmu.Unlock()
	s.shares.release(int64(n))
}

// take empties the queue into the writer's hands; when nothing waits, the
// writer is done (the next enqueue starts another).
func (s *session) take() [][]byte {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	q := s.queue
	if len(q) == 0 {
		s.writerOn = false
		return nil
	}
	s.writing += s.qbytes
	s.queue, s.qbytes = nil, 0
	s.takenAt = time.Now()
	return q
}

// written records that the writer finished what it took, and tells the
// relay if it asked to know when the queue fell low.
func (s *session) written() {
	s.qmu.Lock()
	n := s.writing
	s.writing = 0
	notify := s.drainWatch && s.qbytes <= SessionQueueLowBytes
	if notify {
		s.drainWatch = false
	}
	s.qmu.Unlock()
	s.shares.release(int64(n))
	if notify {
		s.rl.Load().notifyDrained()
	}
}

// watchDrain reports whether more than low bytes wait for the browser; if
// so, the writer tells the relay once they fall to low or below.
func (s *session) watchDrain(low int) bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.qbytes+s.writing <= low {
		return false
	}
	s.drainWatch = true
	return true
}

// sentIt reports whether a message id is one the router gave a seed
// message of this session.
func (s *session) sentIt(clientID string) bool {
	return s.proto == protoSeed && strings.HasPrefix(clientID, s.seedPrefix)
}

// kill closes the session's socket and takes it out of its room at once,
// without waiting for the close handshake to end its read loop.
func (s *session) kill(code websocket.StatusCode, reason string) {
	s.killOnce.Do(func() {
		// Closed under parkMu, so that a reader either parks before (and
		// is unparked here) or sees it and does not park.
		c := s.out
		if c != nil {
			c.parkMu.Lock()
		}
		close(s.closed)
		parked := c != nil && c.parked
		if c != nil {
			c.parked = false
			c.parkMu.Unlock()
		}
		if parked {
			s.parker.unpark(s.id)
		}
		s.dropQueue()
		rl := s.rl.Load() // nil before the join: serve then leaves itself
		go func() {
			if rl != nil {
				rl.submit(relayReq{leave: s})
			}
			s.conn.Close(code, reason)
			if parked {
				rl.rt.untrack(s) // no reader will come back to do it
			}
		}()
	})
}

// isClosed reports whether the session was killed.
func (s *session) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

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
		s.proto = protoV2
		s.lines = q.Get("lines") == "1"
	}

	room, rerr := limits.Room(q.Get("room"))
	name, nerr := limits.Name(q.Get("name"))
	var after uint64
	if a := q.Get("after"); a != "" && s.proto == protoV2 {
		after, err = strconv.ParseUint(a, 10, 64)
		if err != nil {
			rerr = &limits.Error{Code: limits.CodeBadJSON, Message: "after must be a seq number"}
		}
	}
	var kerr error
	if s.proto == protoV2 {
		s.key = q.Get("key")
		kerr = limits.ClientKey(s.key)
	}
	for _, err := range []error{rerr, nerr, kerr} {
		var le *limits.Error
		if errors.As(err, &le) {
			// The error frame first, then the close: written here, in order.
			wctx, wcancel := context.WithTimeout(rt.ctx, WriteTimeout)
			rt.metrics.refuse(le.Code)
			conn.Write(wctx, websocket.MessageText, errorFrame(s.proto, le.Code, le.Message, ""))
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
	if s.proto == protoV2 {
		s.enqueue(welcomeFrame(s.room, s.name))
	}
	s.read(rt.join(s), false)
}

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
				s.enqueue(errorFrame(s.proto, limits.CodeRateLimited,
					fmt.Sprintf("too many frames (max %g/s); frames are being dropped", rl.rt.cfg.FrameRate), ""))
			}
			rl.rt.metrics.refuse(limits.CodeRateLimited)
			continue
		}
		if typ != websocket.MessageText {
			rl.refuse(s, limits.CodeBinary, errorFrame(s.proto, limits.CodeBinary, "binary frames are not supported; send JSON text", ""))
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

// clientOp is one checked frame from a browser.
type clientOp struct {
	kind   string // "send", "typing" or "history"
	id     string // client message id (v2 send); seed sends get one from the router
	text   string // trimmed and checked
	before uint64
	limit  uint32
}

// parseFrame decodes and checks one text frame of either protocol. Any
// error is one the client can be told about; nothing here panics on any
// input (FuzzParseFrame).
func parseFrame(p protocol, data []byte) (clientOp, *limits.Error) {
	if p == protoSeed {
		var in seedIn
		if err := json.Unmarshal(data, &in); err != nil || in.Message == nil {
			return clientOp{}, &limits.Error{Code: limits.CodeBadJSON, Message: `invalid frame: expected {"message":"..."}`}
		}
		return checkedSend("", *in.Message)
	}
	var in v2In
	if err := json.Unmarshal(data, &in); err != nil {
		return clientOp{}, &limits.Error{Code: limits.CodeBadJSON, Message: "invalid JSON frame"}
	}
	switch in.Type {
	case "send":
		if err := limits.ClientID(in.ID); err != nil {
			return clientOp{id: in.ID}, err.(*limits.Error)
		}
		if strings.HasPrefix(in.ID, limits.RouterIDMark) {
			return clientOp{id: in.ID}, &limits.Error{Code: limits.CodeBadID,
				Message: fmt.Sprintf("message ids beginning with %q are the router's", limits.RouterIDMark)}
		}
		return checkedSend(in.ID, in.Text)
	case "typing":
		return clientOp{kind: "typing"}, nil
	case "history":
		return clientOp{kind: "history", before: in.Before, limit: in.Limit}, nil
	default:
		return clientOp{id: in.ID}, &limits.Error{Code: limits.CodeUnknownType, Message: fmt.Sprintf("unknown frame type %q", in.Type)}
	}
}

func checkedSend(id, raw string) (clientOp, *limits.Error) {
	text, err := limits.Message(raw)
	if err != nil {
		return clientOp{id: id}, err.(*limits.Error)
	}
	return clientOp{kind: "send", id: id, text: text}, nil
}

// handleFrame acts on one text frame.
func (s *session) handleFrame(rl *relay, data []byte) {
	op, lerr := parseFrame(s.proto, data)
	if lerr != nil {
		rl.refuse(s, lerr.Code, errorFrame(s.proto, lerr.Code, lerr.Message, op.id))
		return
	}
	switch op.kind {
	case "send":
		if s.proto == protoSeed {
			// The router names seed messages itself so a resend after a
			// failover is still stored once.
			s.seedSeq++
			op.id = s.seedPrefix + strconv.FormatUint(s.seedSeq, 36)
		}
		if !s.sends.take(rl.rt.cfg.SendRate, rl.rt.cfg.SendBurst) {
			rl.refuse(s, limits.CodeRateLimited, errorFrame(s.proto, limits.CodeRateLimited,
				fmt.Sprintf("too many messages (max %g/s); message not sent", rl.rt.cfg.SendRate), op.id))
			return
		}
		rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: &pb.Send{
			Session: s.id, ClientId: op.id, Text: op.text, Name: s.name, Key: s.key}}}})
	case "typing":
		if now := time.Now(); now.Sub(s.lastTyping) >= TypingInterval {
			s.lastTyping = now
			rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Typing{Typing: &pb.TypingRequest{Session: s.id}}}})
		}
	case "history":
		rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Page{Page: &pb.PageRequest{
			Before: op.before, Limit: op.limit}}}})
	}
}
