package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"hellochat/apps"
	"hellochat/durable"
	"hellochat/limits"
	"hellochat/objectclient"
	pb "hellochat/proto/roompb"
)

// Close codes the gateway sends or reports.
const (
	closeGoingAway     = int(websocket.StatusGoingAway)
	closeInternal      = int(websocket.StatusInternalError)
	closeAbnormal      = int(websocket.StatusAbnormalClosure)
	closeTryAgainLater = int(websocket.StatusTryAgainLater)
	closePolicy        = int(websocket.StatusPolicyViolation)
)

// gatewaySocket is one browser's WebSocket that an object holds. Its read
// loop owns the connection's reads and the socket's end; its write loop
// owns the writes, fed by the queue that the node streams and the read
// loop's auto-responses fill.
type gatewaySocket struct {
	g      *gateway
	id     string
	object durable.ID
	addr   string // the browser's, for the connection limits
	// class, objectID and name are object's, as each message names it.
	class, objectID, name string

	mu      sync.Mutex
	queue   []outFrame
	spare   []outFrame // the last batch written, emptied (recycle)
	bytes   int
	closing bool // a close frame is queued: nothing more is
	// writing is the bytes the write loop took and has not finished
	// writing, since takenAt: with bytes, what the socket holds against
	// shares (the router's budget and its address's share).
	writing int
	takenAt time.Time
	shares  queueShares
	// flow is its object's sockets here (nil in tests of one socket);
	// behind says this one is counted behind in it (HeldQueueBytes).
	flow   *objectFlow
	behind bool
	auto   *pb.AutoResponse
	// A writer goroutine runs only while frames wait, so that an idle
	// browser holds none: wctx is the writers' context, set once the
	// handshake is done (nil: frames wait for it); writerOn says one
	// runs, writerOff that none starts again (the socket is done
	// writing); writers is waited on before the connection is let go.
	wctx      context.Context
	writerOn  bool
	writerOff bool
	writers   sync.WaitGroup
	// shown is the number of the last numbered frame queued
	// (durable.WebSocket.SendNumbered): a numbered frame not above it is
	// a repeat, sent again by an object that could not know the browser
	// had it, and is dropped.
	shown uint64

	// The browser's messages sent to the object and not yet answered, in
	// order (guarded by mu): numbered from 1 (nextN is the last number
	// given), streamed to the object's node as they come, and sent again
	// one at a time by Socket (resyncing) after any failure.
	nextN        uint64
	unacked      []unackedEvent
	unackedBytes int
	resyncing    bool
	room         chan struct{} // cap 1: unacked shrank

	// target caches the node its messages stream to, for a placement
	// version (owned by the read loop).
	target struct {
		addr    string
		version uint64
	}

	// pace holds the browser to the router's frame rate (Config.FrameRate,
	// FrameBurst): by reading it no faster, so that nothing is dropped and
	// the browser's own socket fills instead, or, if the Worker's policy
	// says how to refuse (OverBudget), by dropping what is past it. Nil:
	// unbounded. flood counts the refusals (owned by the read loop).
	pace   *rate.Limiter
	policy apps.SocketPolicy
	flood  flood

	// raw is the browser's connection under the WebSocket library: a
	// frame begun must be read within Config.FrameReadTimeout, and the
	// frames written together leave in one write (browserConn's batch).
	raw *browserConn

	conn        *websocket.Conn // set by accept, before the loops start
	cancelWrite context.CancelFunc
}

type unackedEvent struct {
	n    uint64
	data []byte
	text bool
}

type outFrame struct {
	data   []byte
	text   bool
	number uint64 // 0: not numbered
	drain  bool   // not a frame: tell the object once the ones before are written
	close  bool
	code   int
	reason string
}

func newGatewaySocket(g *gateway, id string, object durable.ID, addr string, shares queueShares, p apps.SocketPolicy) *gatewaySocket {
	s := &gatewaySocket{g: g, id: id, object: object, addr: addr, shares: shares, class: object.Namespace(), objectID: object.String(), name: object.TravellingName(), policy: p,
		room: make(chan struct{}, 1)}
	if cfg := g.rt.cfg; cfg.FrameRate > 0 {
		s.pace = rate.NewLimiter(rate.Limit(cfg.FrameRate), cfg.FrameBurst)
	}
	return s
}

// apply takes one operation the object's node sent.
func (s *gatewaySocket) apply(op *pb.GatewayOp) {
	switch o := op.GetOp().(type) {
	case *pb.GatewayOp_Send:
		s.push(outFrame{data: o.Send.GetData(), text: o.Send.GetText(), number: o.Send.GetNumber()})
	case *pb.GatewayOp_Close:
		s.push(outFrame{close: true, code: int(o.Close.GetCode()), reason: o.Close.GetReason()})
	case *pb.GatewayOp_Drain:
		s.push(outFrame{drain: true})
	case *pb.GatewayOp_AutoResponse:
		s.mu.Lock()
		s.auto = o.AutoResponse
		s.mu.Unlock()
	}
}

// push queues a frame for the browser, unless it is a numbered repeat.
// A frame that does not fit what the socket may hold
// (MaxGatewaySocketQueueBytes), or what its address or the router may
// hold (queueShares), closes the socket instead: a browser that goes on
// is never sent to with a gap.
func (s *gatewaySocket) push(f outFrame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	if f.number > 0 {
		if f.number <= s.shown {
			return
		}
		s.shown = f.number
	}
	if !f.close {
		f = s.reserve(f)
	}
	s.closing = f.close
	s.queue = append(s.queue, f)
	s.bytes += len(f.data)
	if s.flow != nil && !s.behind && s.bytes+s.writing >= HeldQueueBytes {
		s.behind = true
		s.flow.mark(true)
	}
	s.startWriter()
}

// reserve counts f's bytes against the socket's shares and returns it, or
// returns the close frame that ends a socket that cannot hold it; called
// with mu held.
func (s *gatewaySocket) reserve(f outFrame) outFrame {
	n := len(f.data)
	if s.bytes+s.writing+n > MaxGatewaySocketQueueBytes {
		s.g.rt.metrics.refuse(reasonSlowConsumer)
		return outFrame{close: true, code: closeTryAgainLater, reason: "the browser reads too slowly"}
	}
	keepsUp := func() bool {
		return s.bytes+n <= QueuedBytesFloor && (s.writing == 0 || time.Since(s.takenAt) < StuckWriteAfter)
	}
	if reason, why := s.shares.reserve(int64(n), keepsUp); reason != "" {
		s.g.rt.metrics.refuse(reason)
		return outFrame{close: true, code: closePolicy, reason: why}
	}
	return f
}

// startWriter starts a writer for what is queued, unless one runs or
// none may; mu is held.
func (s *gatewaySocket) startWriter() {
	if s.writerOn || s.writerOff || s.wctx == nil || len(s.queue) == 0 {
		return
	}
	s.writerOn = true
	s.writers.Add(1)
	go s.writeLoop()
}

// startWriting lets writers start, with ctx, from now on.
func (s *gatewaySocket) startWriting(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wctx = ctx
	s.startWriter()
}

// stopWriting lets no writer start again, and waits for the one running.
func (s *gatewaySocket) stopWriting() {
	s.mu.Lock()
	s.writerOff = true
	s.mu.Unlock()
	s.writers.Wait()
}

// take hands the writer what is queued; nil when nothing is, and then
// the writer is done (the next push starts another).
func (s *gatewaySocket) take() []outFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		s.writerOn = false
		return nil
	}
	frames := s.queue
	s.writing += s.bytes
	s.queue, s.spare, s.bytes = s.spare, nil, 0
	s.takenAt = time.Now()
	return frames
}

// recycle keeps a written batch's slice for the queue to grow into again:
// a busy room queues a frame per message for every socket.
func (s *gatewaySocket) recycle(frames []outFrame) {
	clear(frames) // let the frames' bytes go
	s.mu.Lock()
	s.spare = frames[:0]
	s.mu.Unlock()
}

// written gives back the bytes of a batch the write loop is done with,
// written or not.
func (s *gatewaySocket) written(n int) {
	s.mu.Lock()
	s.writing -= n
	if s.behind && s.bytes+s.writing <= QueuedBytesFloor {
		s.behind = false
		s.flow.mark(false)
	}
	s.mu.Unlock()
	s.shares.release(int64(n))
}

// discardQueue drops what the ended write loop left queued, and takes
// nothing more.
func (s *gatewaySocket) discardQueue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	s.shares.release(int64(s.bytes))
	s.queue, s.bytes = nil, 0
	if s.behind {
		s.behind = false
		s.flow.mark(false)
	}
}

// shut closes the socket with code: a close frame after what is queued.
func (s *gatewaySocket) shut(code int, reason string) {
	s.push(outFrame{close: true, code: code, reason: reason})
}

// accept completes the handshake the object agreed to and starts the
// socket's loops.
func (s *gatewaySocket) accept(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	opts := &websocket.AcceptOptions{InsecureSkipVerify: s.g.rt.cfg.AllowAnyOrigin}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		opts.Subprotocols = []string{p}
	}
	hj := &leanHijack{ResponseWriter: w}
	conn, err := websocket.Accept(hj, r, opts)
	if err != nil {
		s.end(closeAbnormal, "the WebSocket handshake failed", false)
		return // Accept has answered
	}
	limit := MaxGatewayMessageBytes
	if n := s.policy.MaxMessageBytes; n > 0 && n < limit {
		limit = n
	}
	conn.SetReadLimit(int64(limit))
	s.conn, s.raw = conn, hj.conn
	wctx, cancel := context.WithCancel(s.g.ctx)
	s.cancelWrite = cancel
	s.startWriting(wctx)
	go s.readLoop()
}

// readLoop hands each message to the object in order (forward), answers
// the auto-response itself, and reports the socket's end.
func (s *gatewaySocket) readLoop() {
	for {
		typ, data, err := s.read()
		if err != nil {
			code, reason, clean := closeAbnormal, "", false
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				code, reason, clean = int(ce.Code), ce.Reason, true
			}
			// The object hears of the end after the messages before it.
			s.awaitAnswers(objectclient.CallTimeout + eventAnswerTimeout)
			s.cancelWrite()
			s.stopWriting()
			s.conn.CloseNow()
			s.end(code, reason, clean)
			return
		}
		if s.overBudget() {
			continue
		}
		s.mu.Lock()
		auto, closing := s.auto, s.closing
		s.mu.Unlock()
		switch {
		case closing:
			continue // the socket is ending: the object hears only that
		case typ == websocket.MessageText && auto != nil && auto.GetRequest() != "" && string(data) == auto.GetRequest():
			s.push(outFrame{data: []byte(auto.GetResponse()), text: true})
			continue
		}
		if s.flow != nil {
			s.flow.wait(s.g.ctx, &s.g.rt.held)
		}
		s.forward(data, typ == websocket.MessageText)
	}
}

// read reads the browser's next message. Once its first frame's header
// has come, the rest must come within Config.FrameReadTimeout: a browser
// trickling a frame is cut off, a quiet one waits as long as it likes.
func (s *gatewaySocket) read() (websocket.MessageType, []byte, error) {
	typ, rd, err := s.conn.Reader(s.g.ctx)
	if err != nil {
		return typ, nil, err
	}
	timeout := s.g.rt.cfg.FrameReadTimeout
	if s.raw != nil && timeout > 0 {
		s.raw.SetReadDeadline(time.Now().Add(timeout))
		defer s.raw.SetReadDeadline(time.Time{})
	}
	data, err := io.ReadAll(rd)
	return typ, data, err
}

// overBudget applies the frame budget to the message just read, and
// reports whether it is dropped: past the budget, the read loop waits
// until the message fits, or, under a policy that can refuse, drops it,
// tells the browser at most once a second, and closes a flood (1008).
func (s *gatewaySocket) overBudget() bool {
	switch {
	case s.pace == nil:
		return false
	case s.policy.OverBudget == nil:
		// An error means the router is stopping: the next read ends the loop.
		return s.pace.Wait(s.g.ctx) != nil
	case s.pace.Allow():
		return false
	}
	rt := s.g.rt
	tell, isFlood := s.flood.refuse()
	switch {
	case isFlood:
		rt.metrics.refuse(reasonFlood)
		s.shut(closePolicy, fmt.Sprintf("flood: %d frames over the limit within %v", FloodRefusals, FloodWindow))
	case tell:
		s.push(outFrame{data: s.policy.OverBudget(rt.cfg.FrameRate), text: true})
	}
	rt.metrics.refuse(limits.CodeRateLimited)
	return true
}

// forward numbers a message and streams it to the node that leads the
// object, or leaves it to the resend after a failure; it waits while too
// many of the socket's messages are unanswered.
func (s *gatewaySocket) forward(data []byte, text bool) {
	s.mu.Lock()
	for len(s.unacked) >= maxUnackedEvents || len(s.unacked) > 0 && s.unackedBytes+len(data) > maxUnackedBytes {
		s.mu.Unlock()
		if s.policy.Overloaded != nil {
			if frame := s.policy.Overloaded(data, text); frame != nil {
				s.g.rt.refused.Add(1)
				s.g.rt.metrics.refuse(limits.CodeOverloaded)
				s.push(outFrame{data: frame, text: true})
				return
			}
		}
		select {
		case <-s.room:
		case <-s.g.ctx.Done():
			return
		}
		s.mu.Lock()
	}
	s.nextN++
	ev := unackedEvent{n: s.nextN, data: data, text: text}
	s.unacked = append(s.unacked, ev)
	s.unackedBytes += len(data)
	resyncing := s.resyncing
	s.mu.Unlock()
	if resyncing {
		return // the resend takes it in its turn
	}
	if ns := s.g.streamTo(s); ns == nil || !s.g.send(ns, s, s.event(ev)) {
		s.resync()
	}
}

func (s *gatewaySocket) event(ev unackedEvent) *pb.SocketEvent {
	return &pb.SocketEvent{Class: s.class, Id: s.objectID, Name: s.name, Socket: s.id,
		Kind: pb.SocketEvent_MESSAGE, Data: ev.data, Text: ev.text, N: ev.n}
}

// taken records that the object took the socket's messages up to n (it
// takes them in order), and what it answered.
func (s *gatewaySocket) taken(n uint64, resp *pb.SocketEventResponse) {
	s.mu.Lock()
	i := 0
	for i < len(s.unacked) && s.unacked[i].n <= n {
		s.unackedBytes -= len(s.unacked[i].data)
		i++
	}
	s.unacked = s.unacked[i:]
	s.mu.Unlock()
	select {
	case s.room <- struct{}{}:
	default:
	}
	switch {
	case resp.GetGone():
		s.shut(closeInternal, "the object no longer holds this socket")
	case resp.GetError() != nil:
		s.g.rt.log.Debug("object's handler refused a socket message", "socket", s.id, "err", resp.GetError().GetMessage())
	}
}

// resync sends the unanswered messages again, one at a time, by Socket
// (which finds the shard's leader and retries), until none is left; the
// stream carries the socket's messages again after that.
func (s *gatewaySocket) resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resyncing || len(s.unacked) == 0 {
		return
	}
	s.resyncing = true
	s.g.wg.Add(1)
	go s.resend()
}

func (s *gatewaySocket) resend() {
	defer s.g.wg.Done()
	for {
		s.mu.Lock()
		if len(s.unacked) == 0 {
			s.resyncing = false
			s.mu.Unlock()
			return
		}
		ev := s.unacked[0]
		s.mu.Unlock()
		err := s.g.SocketEvent(s.g.ctx, s.object, s.event(ev))
		if err == nil {
			s.taken(ev.n, nil)
			continue
		}
		code, reason, ends := eventError(err)
		if !ends {
			s.taken(ev.n, &pb.SocketEventResponse{Error: &pb.ObjectError{Message: err.Error()}})
			continue
		}
		// The socket ends: nothing more goes to the object but its end.
		s.shut(code, reason)
		s.taken(s.lastN(), nil)
		s.mu.Lock()
		s.resyncing = false
		s.mu.Unlock()
		return
	}
}

func (s *gatewaySocket) lastN() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextN
}

// awaitAnswers waits, at most limit, until every message the browser sent
// is answered.
func (s *gatewaySocket) awaitAnswers(limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		s.mu.Lock()
		left := len(s.unacked)
		s.mu.Unlock()
		if left == 0 {
			return
		}
		select {
		case <-s.room:
		case <-t.C:
			return
		case <-s.g.ctx.Done():
			return
		}
	}
}

// writeLoop writes what is queued until nothing is, or until a close
// frame, an error or the end of wctx, after which no writer starts again.
func (s *gatewaySocket) writeLoop() {
	defer s.writers.Done()
	for {
		frames := s.take()
		if frames == nil {
			return
		}
		if !s.write(s.wctx, frames) {
			s.mu.Lock()
			s.writerOff, s.writerOn = true, false
			s.mu.Unlock()
			return
		}
		s.recycle(frames)
	}
}

// write writes frames to the browser, and reports false once the socket
// is done with (closed, or its connection failed). The frames before a
// close or a drain marker leave together, in one write.
func (s *gatewaySocket) write(ctx context.Context, frames []outFrame) bool {
	n := 0
	for _, f := range frames {
		n += len(f.data)
	}
	defer s.written(n)
	// One watchdog bounds the whole batch: a batch flushes whenever it
	// gathers batchFlushBytes, in the middle of a frame's Write, so a
	// deadline set only around the last flush left a browser that never
	// reads holding the writer (and the close queued behind it) for good.
	watchdog := time.AfterFunc(WriteTimeout, func() { s.conn.CloseNow() })
	defer watchdog.Stop()
	// The frames are written without a context: the library watches one
	// per Write (an AfterFunc each, a fifth of the router's allocations
	// in a hot room), so the batch watches ctx once instead.
	stop := context.AfterFunc(ctx, func() { s.conn.CloseNow() })
	defer stop()
	batching := false
	flush := func() bool {
		if !batching {
			return true
		}
		batching = false
		if err := s.raw.end(); err != nil {
			s.conn.CloseNow()
			return false
		}
		return true
	}
	var lines *[]byte // borrowed from linesBufs for this batch, once frames are joined
	defer func() {
		if lines != nil {
			*lines = (*lines)[:0]
			linesBufs.Put(lines)
		}
	}()
	for i := 0; i < len(frames); i++ {
		f := frames[i]
		switch {
		case f.close:
			// Close waits for the browser's close frame, which ends the
			// read loop.
			if flush() {
				s.conn.Close(websocket.StatusCode(f.code), f.reason)
			}
			return false
		case f.drain:
			if !flush() {
				return false
			}
			go s.reportDrained()
			continue
		}
		if !batching && s.raw != nil {
			s.raw.begin()
			batching = true
		}
		typ, data := websocket.MessageBinary, f.data
		if f.text {
			typ = websocket.MessageText
			if s.policy.JoinLines {
				data, i = joinLines(frames, i, &lines)
			}
		}
		// In a batch the write only gathers the frame; flush bounds the
		// connection's write.
		err := s.conn.Write(context.Background(), typ, data)
		if err != nil {
			if batching {
				s.raw.end()
			}
			s.conn.CloseNow()
			return false
		}
	}
	return flush()
}

// joinLines joins frames[i] and the text frames that follow it into one
// message, one per line, as long as they fit MaxLinesBytes, in *buf
// (borrowed from linesBufs when nil), and returns the message and the
// index of the last frame in it. A frame with a newline of its own would
// read as two lines, so it goes alone, and ends the run.
func joinLines(frames []outFrame, i int, buf **[]byte) ([]byte, int) {
	joinable := func(f outFrame) bool {
		return f.text && !f.close && !f.drain && bytes.IndexByte(f.data, '\n') < 0
	}
	first := frames[i].data
	if !joinable(frames[i]) {
		return first, i
	}
	last, size := i, len(first)
	for last+1 < len(frames) && joinable(frames[last+1]) && size+1+len(frames[last+1].data) <= MaxLinesBytes {
		last++
		size += 1 + len(frames[last].data)
	}
	if last == i {
		return first, i
	}
	if *buf == nil {
		*buf = linesBufs.Get().(*[]byte)
	}
	b := append((**buf)[:0], first...)
	for _, f := range frames[i+1 : last+1] {
		b = append(append(b, '\n'), f.data...)
	}
	**buf = b
	return b, last
}

// reportDrained tells the object that asked that what it sent before
// reached the browser's connection (a DRAINED event). Lost, it is lost:
// the object's wish was a hint (durable.WebSocket.NotifyDrained).
func (s *gatewaySocket) reportDrained() {
	ctx, cancel := context.WithTimeout(s.g.ctx, objectclient.CallTimeout)
	defer cancel()
	err := s.g.SocketEvent(ctx, s.object, &pb.SocketEvent{Socket: s.id, Kind: pb.SocketEvent_DRAINED})
	if err != nil && ctx.Err() == nil {
		s.g.rt.log.Debug("could not tell an object its socket drained", "socket", s.id, "err", err)
	}
}

// end tells the object the socket ended and lets go of it; its write
// loop is done or never ran.
func (s *gatewaySocket) end(code int, reason string, clean bool) {
	s.discardQueue() // before its address's share may be forgotten
	go func() {
		defer s.g.wg.Done()
		defer s.g.rt.release(s.addr)
		s.g.forget(s)
		ctx, cancel := context.WithTimeout(s.g.reportCtx, objectclient.CallTimeout)
		defer cancel()
		err := s.g.SocketEvent(ctx, s.object, &pb.SocketEvent{Socket: s.id, Kind: pb.SocketEvent_CLOSE,
			Code: int32(code), Reason: reason, Clean: clean})
		if err != nil && !errors.Is(err, objectclient.ErrSocketGone) {
			s.g.rt.log.Info("could not tell an object its socket closed", "socket", s.id, "err", err)
		}
	}()
}
