package router

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"hellochat/apps/chat/wire"
	"hellochat/cluster"
	"hellochat/fifo"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

const (
	// RelayInbox bounds requests from browser sessions waiting for a relay.
	RelayInbox = 1024
	// RelayStreamQueue bounds events from the node waiting for a relay; a
	// full queue stops reading the stream, and gRPC flow control pushes
	// back on the node.
	RelayStreamQueue = 4096
	// RelayLinger is how long a relay whose browsers have all left keeps
	// trying to deliver their unacknowledged messages.
	RelayLinger = 30 * time.Second
	// MaxReadPause is the longest a relay keeps its browsers' read loops
	// paused (window full, or its browsers not keeping up with the room).
	// After it a browser's frames are read again, and sends the relay
	// cannot take are refused with `overloaded`: a stuck room answers out
	// loud instead of hanging its senders.
	MaxReadPause = 3 * time.Second
	// maxQueuedTyping: a typing notice is dropped when this many requests
	// already wait to be written to the node.
	maxQueuedTyping = 64
	// Reconnect backoff bounds. The backoff restarts from backoffMin only
	// after a stream stayed up for stableStream, so a node that keeps
	// dropping a relay is not redialled twenty times a second.
	backoffMin   = 50 * time.Millisecond
	backoffMax   = time.Second
	stableStream = 5 * time.Second
)

// relayReq is one input from a browser session. Exactly one of join,
// leave, or from+req is set.
type relayReq struct {
	join  *session
	leave *session
	from  *session
	req   *pb.AttachRequest
}

// streamEvent is what a stream's receive goroutine reports, tagged with the
// stream generation so late events of an old stream are ignored.
type streamEvent struct {
	gen uint64
	ev  *pb.AttachEvent
	err error
}

// gate pauses the read loops of a relay's browsers while it is closed.
type gate struct{ open chan struct{} }

// relay holds one room for this router: one Attach stream to the node that
// leads the room, multiplexing every browser in the room. When the stream
// breaks it keeps the browsers connected, finds the leader again, resends
// what was not acknowledged and reads what its browsers missed in pages.
// One goroutine (run) owns all of its state; it never waits on anything but
// its own select, so its stream's events and its browsers' requests can
// never block each other.
type relay struct {
	rt      *Router
	room    string
	inbox   *fifo.Queue[relayReq]
	events  *fifo.Queue[streamEvent]
	drained chan struct{} // a session's queue fell low (see session.wantDrain)
	done    chan struct{}
	gate    atomic.Pointer[gate] // nil while browsers may send

	// Owned by run.
	sessions  map[uint64]*relaySession
	users     []string
	head      uint64 // highest committed seq this relay knows of
	headKnown bool   // a stream has been opened
	sends     *sendWindow
	history                   // pages in flight, lagging sessions
	congested bool            // the room's browsers are not keeping up with it
	gen       uint64          // stream generation
	stream    *relayStream    // nil while disconnected
	ready     bool            // Opened seen on the current stream
	openedAt  time.Time       // when it was
	target    cluster.Meta    // node of the current or next stream
	attempt   int             // dials so far, to rotate among replicas
	claims    map[string]bool // nodes that claimed the shard at the last look
	waiting   bool            // a redial is scheduled
	hint      *pb.Redirect    // where the last node told us to go
	degraded  bool            // browsers were told "reconnecting" and not yet "ready"
	backoff   time.Duration
	redial    *time.Timer
	lingering time.Time // when the last browser left, if unacked remain

	pendingJoins int // joins handed over but not yet handled; guarded by rt.mu
}

// relayStream is the write side of one Attach stream: a queue its writer
// goroutine drains, so queueing a request never blocks the relay. What it
// holds is bounded by the relay: sends by the send window, pages by
// MaxPagesInFlight, the rest by the number of sessions.
type relayStream struct {
	gen    uint64
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	queue []*pb.AttachRequest
	wake  chan struct{}
}

func (st *relayStream) push(req *pb.AttachRequest) {
	st.mu.Lock()
	st.queue = append(st.queue, req)
	st.mu.Unlock()
	fifo.Signal(st.wake)
}

func (st *relayStream) len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.queue)
}

func (st *relayStream) take() []*pb.AttachRequest {
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queue
	st.queue = nil
	return q
}

func newRelay(rt *Router, room string) *relay {
	rl := &relay{
		rt:       rt,
		room:     room,
		inbox:    fifo.New[relayReq](RelayInbox),
		events:   fifo.New[streamEvent](RelayStreamQueue),
		drained:  make(chan struct{}, 1),
		done:     make(chan struct{}),
		sessions: map[uint64]*relaySession{},
		sends:    newSendWindow(),
		history:  newHistory(),
		backoff:  backoffMin,
		redial:   time.NewTimer(time.Hour),
	}
	rl.redial.Stop()
	return rl
}

// submit hands the relay a request, waiting while its inbox is full.
func (rl *relay) submit(q relayReq) {
	rl.inbox.Push(q, rl.done, nil)
}

// notifyDrained is called by a session's writer when its queue fell low
// after the relay asked to hear of it.
func (rl *relay) notifyDrained() { fifo.Signal(rl.drained) }

func (rl *relay) run() {
	defer close(rl.done)
	defer rl.closeStream()
	defer rl.openGate()
	rl.dial()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	changed := rl.rt.members.Changed()
	for {
		select {
		case <-rl.inbox.Ready:
			if q, ok := rl.inbox.Pop(); ok {
				rl.handle(q)
			}
		case <-rl.events.Ready:
			if e, ok := rl.events.Pop(); ok {
				rl.event(e)
			}
		case <-rl.drained:
			rl.recheckCongestion()
			rl.catchUp()
		case <-rl.redial.C:
			rl.dial()
		case <-changed:
			changed = rl.rt.members.Changed()
			rl.placementChanged()
		case <-tick.C:
			if !rl.lingering.IsZero() && time.Since(rl.lingering) > RelayLinger {
				rl.rt.log.Warn("giving up on unacknowledged messages", "room", rl.room, "count", rl.sends.len())
				rl.sends.clear()
			}
			// A session that left or was closed does not say it drained.
			rl.recheckCongestion()
			rl.catchUp()
		case <-rl.rt.ctx.Done():
			return
		}
		rl.updateGate()
		if len(rl.sessions) == 0 {
			if rl.sends.len() == 0 && rl.rt.retire(rl) {
				return
			}
			if rl.lingering.IsZero() {
				rl.lingering = time.Now()
			}
		}
	}
}

// updateGate pauses the browsers' reading while the send window is full or
// the room's browsers are behind, and resumes it when neither holds.
func (rl *relay) updateGate() {
	if rl.sends.full() || rl.congested {
		if rl.gate.Load() == nil {
			rl.gate.Store(&gate{open: make(chan struct{})})
		}
		return
	}
	rl.openGate()
}

func (rl *relay) openGate() {
	if g := rl.gate.Swap(nil); g != nil {
		close(g.open)
	}
}

func (rl *relay) handle(q relayReq) {
	switch {
	case q.join != nil:
		s := q.join
		rl.rt.joined(rl)
		rs := &relaySession{s: s}
		rl.sessions[s.id] = rs
		rl.lingering = time.Time{}
		rl.write(rl.joinReq(rs))
		if rl.ready {
			rs.announced = true
			rl.start(rs)
			rl.catchUp()
		}
	case q.leave != nil:
		if _, ok := rl.sessions[q.leave.id]; !ok {
			return
		}
		rl.forget(q.leave.id)
		rl.write(&pb.AttachRequest{Kind: &pb.AttachRequest_Leave{Leave: &pb.Leave{Session: q.leave.id}}})
	case q.req != nil:
		switch k := q.req.Kind.(type) {
		case *pb.AttachRequest_Send:
			rl.send(q.from, k.Send)
		case *pb.AttachRequest_Page:
			rl.older(q.from, k.Page)
		case *pb.AttachRequest_Typing:
			// Typing is ephemeral: with no stream, or one not draining, the
			// notice is dropped rather than queued.
			if rl.ready && rl.stream.len() < maxQueuedTyping {
				rl.write(q.req)
			}
		}
	}
}

// send takes a browser's message: it goes out when the send window allows,
// is resent on every new stream until the room answers, and is refused out
// loud when the relay holds too much already.
func (rl *relay) send(from *session, s *pb.Send) {
	if rl.sends.has(sendKey{s.Session, s.ClientId}) {
		return // the same message is already on its way; its ack answers both
	}
	if !rl.sends.add(s) {
		rl.rt.refused.Add(1)
		rl.refuse(from, limits.CodeOverloaded, wire.Refusal(from.proto, limits.CodeOverloaded, "server overloaded; message not sent", s.ClientId, s.Text))
		return
	}
	rl.rt.metrics.received.Inc()
	rl.sends.pump(rl.writeSend)
}

func (rl *relay) writeSend(s *pb.Send) {
	rl.write(&pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: s}})
}

func (rl *relay) joinReq(rs *relaySession) *pb.AttachRequest {
	return &pb.AttachRequest{Kind: &pb.AttachRequest_Join{Join: &pb.Join{
		Session: rs.s.id, Name: rs.s.name, Quiet: rs.announced}}}
}

// write queues a request on the current stream. With no stream it is
// dropped: joins, unacknowledged sends and history reads are made again on
// the next one.
func (rl *relay) write(req *pb.AttachRequest) {
	if rl.stream != nil {
		rl.stream.push(req)
	}
}
