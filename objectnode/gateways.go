package objectnode

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/durable"
	"hellochat/objectclient"
	pb "hellochat/proto/roompb"
)

// The browsers' WebSockets live on routers; the objects that accepted
// them live here. What an object sends to a socket is queued for the
// socket's router (its gateway, named in the socket's id) and leaves on
// the Gateway stream that router keeps open to every node. A router that
// has no stream open (it is reconnecting, or just started) finds its
// sends waiting for the grace period (Config.GatewayGrace); after that it is taken for gone: its
// sends are dropped, and each object that sent to one of its sockets is
// told that socket closed (WebSocketClose, 1006), so the object stops
// listing a socket whose browser is gone. A socket of a gone router that
// is never sent to stays listed: nothing tells the node about it.

const (
	// DefaultGatewayGrace is how long a node keeps what objects send to a
	// router that has no Gateway stream open (Config.GatewayGrace).
	DefaultGatewayGrace = 10 * time.Second
	// MaxGatewayQueueBytes bounds the frames a node keeps for one router
	// (streamed, or waiting for its stream). A send past it is dropped and
	// its socket closed (1013, try again later): the browser sees the gap
	// as a reconnect, never as silence.
	MaxGatewayQueueBytes = 16 << 20
	// maxGatewayQueueOps bounds the operations kept for one router,
	// closes and auto-responses included; a frame sent to many of the
	// router's sockets is one.
	maxGatewayQueueOps = 1 << 16
	// maxGatewayBatchOps and maxGatewayBatchBytes bound one stream
	// message (a GatewayBatch) of what waits for a router: one message per
	// frame cost a busy node's stream most of its time, and the router's.
	maxGatewayBatchOps   = 512
	maxGatewayBatchBytes = 1 << 20
	// goneGatewayKept is how long a gone router's entry is kept (its
	// sockets reported closed once each), in grace periods, before it is
	// forgotten.
	goneGatewayKept = 10
)

// Close codes the node sends or reports.
const (
	closeTryAgainLater = 1013
	closeAbnormal      = 1006
)

// GatewayFaults decides, for tests, which operations a node loses on
// their way to a router (Config.GatewayFaults): one dropped is as if the
// node had died with it queued.
type GatewayFaults interface {
	Drop(gateway string, op *pb.GatewayOp) bool
}

// GatewayDropFunc is a GatewayFaults from a function.
type GatewayDropFunc func(gateway string, op *pb.GatewayOp) bool

// Drop calls f.
func (f GatewayDropFunc) Drop(gateway string, op *pb.GatewayOp) bool { return f(gateway, op) }

// objectRef is the object an operation came from, to tell it a socket
// is gone.
type objectRef struct {
	id        durable.ID
	newObject func() durable.Object
}

// gatewayHub queues objects' socket operations per router. mu guards the
// queues: they are written by every actor's goroutine (Sockets is called
// on it, and must not block) and drained by each router's stream, so one
// owner goroutine would add a hand-off per frame without saving a lock.
type gatewayHub struct {
	// report tells an object its socket is gone; it must not block (it is
	// called with mu held, maybe on the object's own goroutine).
	report   func(from objectRef, socket string)
	log      *slog.Logger
	stopping <-chan struct{}
	now      func() time.Time
	grace    time.Duration
	faults   GatewayFaults // nil: none

	mu         sync.Mutex
	gws        map[string]*gatewayQueue
	nextStream uint64
	held       uint64 // awaitRoom's waits (holds)
	// detachedSome is signalled when a queue is made or loses its
	// stream: sweep sleeps without a timer while every router's stream
	// is attached.
	detachedSome chan struct{}
}

// gatewayQueue is what waits for one router.
type gatewayQueue struct {
	ops   []queuedOp
	bytes int
	// sendingOps and sendingBytes are what the stream took from ops and
	// has not sent; roomy, when not nil, is closed once the queue is no
	// longer crowded (gatewaypressure.go).
	sendingOps, sendingBytes int
	roomy                    chan struct{}
	// spare is the slice the stream emptied last, for ops to grow into
	// again: a busy node queues a dozen operations per chat message.
	spare []queuedOp
	// wake is signalled when ops grow or the stream is superseded.
	wake chan struct{}
	// stream is the attached stream's number (0: none), since when none
	// is attached, and whether the router was taken for gone.
	stream   uint64
	detached time.Time
	gone     bool
	// closed are the sockets closed for an overflow, or reported closed
	// to their objects for a gone router: nothing more is queued for them.
	closed map[string]bool
}

type queuedOp struct {
	op   *pb.GatewayOp
	from objectRef
}

func newGatewayHub(report func(objectRef, string), log *slog.Logger, stopping <-chan struct{}, grace time.Duration) *gatewayHub {
	return &gatewayHub{report: report, log: log, stopping: stopping, now: time.Now, grace: grace,
		gws: map[string]*gatewayQueue{}, detachedSome: make(chan struct{}, 1)}
}

// queue is gateway's queue, made (detached) on first use; mu is held.
func (h *gatewayHub) queue(gateway string) *gatewayQueue {
	q := h.gws[gateway]
	if q == nil {
		q = &gatewayQueue{wake: make(chan struct{}, 1), detached: h.now(), closed: map[string]bool{}}
		h.noteDetached()
		h.gws[gateway] = q
	}
	return q
}

func (q *gatewayQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// forObject is the durable.Sockets of one object's actor.
func (h *gatewayHub) forObject(id durable.ID, newObject func() durable.Object) durable.Sockets {
	return objectSockets{h: h, from: objectRef{id, newObject}}
}

type objectSockets struct {
	h    *gatewayHub
	from objectRef
}

func (s objectSockets) Send(sockets []string, msg []byte, text bool, number uint64) {
	s.h.putSend(s.from, sockets, msg, text, number)
}

// sendOp is a send's three messages in one allocation: a broadcast
// queues one per socket.
type sendOp struct {
	op    pb.GatewayOp
	oneof pb.GatewayOp_Send
	send  pb.SocketSend
}

func newSendOp(socket string, data []byte, text bool, number uint64, frame uint32) *pb.GatewayOp {
	o := &sendOp{}
	o.send.Data, o.send.Text, o.send.Number, o.send.Frame = data, text, number, frame
	o.oneof.Send = &o.send
	o.op.Socket, o.op.Op = socket, &o.oneof
	return &o.op
}

func (s objectSockets) Close(socket string, code int, reason string) {
	s.h.put(s.from, &pb.GatewayOp{Socket: socket, Op: &pb.GatewayOp_Close{Close: &pb.SocketClose{Code: int32(code), Reason: reason}}}, 0)
}

func (s objectSockets) Drain(socket string) {
	s.h.put(s.from, &pb.GatewayOp{Socket: socket, Op: &pb.GatewayOp_Drain{Drain: &pb.SocketDrain{}}}, 0)
}

func (s objectSockets) AutoResponse(socket, request, response string) {
	s.h.put(s.from, &pb.GatewayOp{Socket: socket, Op: &pb.GatewayOp_AutoResponse{AutoResponse: &pb.AutoResponse{Request: request, Response: response}}}, 0)
}

// put queues op for its socket's router. It never blocks: a router that
// is gone, or whose queue is full, has the socket closed instead.
func (h *gatewayHub) put(from objectRef, op *pb.GatewayOp, size int) {
	gateway, ok := h.gatewayOf(op.Socket)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queue(gateway)
	h.touch(q)
	if !h.admit(q, gateway, from, op.Socket, size) {
		return
	}
	if _, isClose := op.Op.(*pb.GatewayOp_Close); isClose {
		q.closed[op.Socket] = true
	}
	q.ops = append(q.ops, queuedOp{op: op, from: from})
	q.bytes += size
}

// putSend queues msg for each of sockets, as one send per router (the
// router writes it to each of its sockets named): a broadcast queued
// once, not once per socket. Each socket is admitted on its own, as put
// admits it.
func (h *gatewayHub) putSend(from objectRef, sockets []string, msg []byte, text bool, number uint64) {
	// A room's sockets are on a few routers, in any order: this call's
	// send queued for each, found by a look down a short list.
	type queued struct {
		gateway string
		q       *gatewayQueue
		op      *pb.GatewayOp // nil until a socket of the router is admitted
	}
	var mine [4]queued
	to := mine[:0]
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, socket := range sockets {
		gateway, ok := h.gatewayOf(socket)
		if !ok {
			continue
		}
		k := 0
		for k < len(to) && to[k].gateway != gateway {
			k++
		}
		if k == len(to) {
			to = append(to, queued{gateway: gateway, q: h.queue(gateway)})
			h.touch(to[k].q)
		}
		g := &to[k]
		if !h.admit(g.q, gateway, from, socket, len(msg)) {
			continue
		}
		g.q.bytes += len(msg)
		if g.op == nil {
			g.op = newSendOp(socket, msg, text, number, 0)
			g.q.ops = append(g.q.ops, queuedOp{op: g.op, from: from})
			continue
		}
		// No stream holds g.op yet: it was queued under this hold of mu.
		send := g.op.GetSend()
		if send.Also == nil {
			send.Also = make([]string, 0, len(sockets)-i)
		}
		send.Also = append(send.Also, socket)
	}
}

// gatewayOf is the router a socket lives on.
func (h *gatewayHub) gatewayOf(socket string) (string, bool) {
	gateway, _, err := objectclient.ParseSocket(socket)
	if err != nil {
		// Accepted sockets' ids were checked by the node that took the
		// upgrade; a record that fails now names no router to send to.
		h.log.Warn("object sent to a socket with a bad id", "socket", socket, "err", err)
		return "", false
	}
	return gateway, true
}

// touch wakes q's stream if q is empty, as something is about to be
// queued on it; mu is held. Only a queue that was empty needs it: one
// that holds operations is drained whole by a stream already woken,
// which looks again before it waits (and takes mu first).
func (h *gatewayHub) touch(q *gatewayQueue) {
	if len(q.ops) == 0 {
		q.signal()
	}
}

// admit reports whether an operation of size bytes for socket may be
// queued on q. If not, it has dealt with the socket: one closed stays
// closed, one of a gone router is reported closed to its object, and
// one whose operation would overflow the queue is closed (1013); mu is
// held.
func (h *gatewayHub) admit(q *gatewayQueue, gateway string, from objectRef, socket string, size int) bool {
	switch {
	case q.closed[socket]:
		return false
	case q.gone:
		q.closed[socket] = true
		h.report(from, socket)
		return false
	case len(q.ops) >= maxGatewayQueueOps || size > 0 && q.bytes+size > MaxGatewayQueueBytes:
		q.closed[socket] = true
		if len(q.ops) < maxGatewayQueueOps+maxGatewayQueueOps/4 {
			// Closes may pass the bound a little, so the browser hears why.
			q.ops = append(q.ops, queuedOp{from: from, op: &pb.GatewayOp{Socket: socket,
				Op: &pb.GatewayOp_Close{Close: &pb.SocketClose{Code: closeTryAgainLater, Reason: "the router's queue on the object's node is full"}}}})
		}
		h.log.Warn("gateway queue full: socket closed", "gateway", gateway, "socket", socket, "bytes", q.bytes)
		return false
	}
	return true
}

// gatewaySender is the node's end of a Gateway stream, as serve uses it.
type gatewaySender interface {
	Send(*pb.GatewayOp) error
}

// serve streams gateway's queue to its router until ctx ends, send
// fails, or another stream of the same router takes over; shares says the
// router reads shared frames (GatewayHello.shares_frames).
func (h *gatewayHub) serve(ctx context.Context, gateway string, shares bool, stream gatewaySender) error {
	h.mu.Lock()
	q := h.queue(gateway)
	h.nextStream++
	mine := h.nextStream
	q.stream, q.gone = mine, false
	clear(q.closed)
	h.mu.Unlock()
	q.signal() // a stream it superseded stops
	defer func() {
		h.mu.Lock()
		if q.stream == mine {
			q.stream, q.detached = 0, h.now()
			h.noteDetached()
		}
		h.mu.Unlock()
	}()
	for {
		h.mu.Lock()
		if q.stream != mine {
			h.mu.Unlock()
			return status.Error(codes.Aborted, "another stream of this router took over")
		}
		ops := q.ops
		q.sendingOps, q.sendingBytes = len(ops), q.bytes
		q.ops, q.spare, q.bytes = q.spare, nil, 0
		h.mu.Unlock()
		for i := 0; i < len(ops); {
			msg, n := h.batch(gateway, ops[i:], shares)
			if msg != nil {
				if err := stream.Send(msg); err != nil {
					h.requeue(q, ops[i:])
					return err
				}
			}
			h.mu.Lock()
			q.sent(n, sendBytes(ops[i:i+n]))
			h.mu.Unlock()
			i += n
		}
		if len(ops) > 0 {
			clear(ops) // let what was sent go
			h.mu.Lock()
			q.spare = ops[:0]
			h.mu.Unlock()
			continue
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return ctx.Err()
		case <-h.stopping:
			return status.Error(codes.Unavailable, "node shutting down")
		}
	}
}

// batch takes the operations that lead ops into one stream message, at
// most maxGatewayBatchOps and about maxGatewayBatchBytes, and says how
// many it took; nil if the faults dropped them all. For a router that
// shares frames (shares), a frame sent to many of its sockets (one copy:
// durable's broadcast) goes once: its sends one after another with one
// number become one send with more sockets (SocketSend.also), and others
// name it in the batch's frames. A router that does not is sent a send
// for each socket.
func (h *gatewayHub) batch(gateway string, ops []queuedOp, shares bool) (*pb.GatewayOp, int) {
	var batch []*pb.GatewayOp
	merged := false // the last op in batch is a copy that took more sockets
	n, bytes := 0, 0
	for ; n < len(ops) && n < maxGatewayBatchOps && (n == 0 || bytes < maxGatewayBatchBytes); n++ {
		op := ops[n].op
		if h.faults != nil && h.faults.Drop(gateway, op) {
			continue
		}
		s := op.GetSend()
		switch {
		case s == nil:
		case !shares && len(s.Also) > 0:
			bytes += len(s.Data) * (1 + len(s.Also))
			batch, merged = append(batch, newSendOp(op.Socket, s.Data, s.Text, s.Number, 0)), false
			for _, socket := range s.Also {
				batch = append(batch, newSendOp(socket, s.Data, s.Text, s.Number, 0))
			}
			continue
		case shares && len(batch) > 0 && sameSend(batch[len(batch)-1], op):
			last := batch[len(batch)-1]
			if !merged {
				// The queued send stays as it was queued: a stream that
				// breaks batches it again.
				ls := last.GetSend()
				last = newSendOp(last.Socket, ls.Data, ls.Text, ls.Number, 0)
				last.GetSend().Also = append(make([]string, 0, 2*(len(ls.Also)+len(s.Also)+1)), ls.Also...)
				batch[len(batch)-1], merged = last, true
			}
			send := last.GetSend()
			send.Also = append(append(send.Also, op.Socket), s.Also...)
			continue
		default:
			bytes += len(s.Data)
		}
		batch, merged = append(batch, op), false
	}
	switch len(batch) {
	case 0:
		return nil, n
	case 1:
		return batch[0], n
	}
	b := &pb.GatewayBatch{Ops: batch}
	if shares {
		shareFrames(b)
	}
	return &pb.GatewayOp{Op: &pb.GatewayOp_Batch{Batch: b}}, n
}

// sameSend reports whether op sends what prev sends (the same copy of
// the frame, with the same number), to another socket.
func sameSend(prev, op *pb.GatewayOp) bool {
	a, b := prev.GetSend(), op.GetSend()
	return a != nil && b != nil && len(a.Data) > 0 && len(a.Data) == len(b.Data) && &a.Data[0] == &b.Data[0] &&
		a.Number == b.Number && a.Text == b.Text && a.Frame == 0 && b.Frame == 0
}

// shareFrames moves each frame that more than one of b's sends carry
// into b.Frames, and has those sends name it there. The queued operations
// are left as they are: a stream that fails sends them again, maybe
// batched otherwise.
func shareFrames(b *pb.GatewayBatch) {
	var sends map[*byte]int // how many sends carry each frame
	shared := false
	for _, op := range b.Ops {
		if s := op.GetSend(); s != nil && len(s.Data) > 0 {
			if sends == nil {
				sends = map[*byte]int{}
			}
			sends[&s.Data[0]]++
			shared = shared || sends[&s.Data[0]] > 1
		}
	}
	if !shared {
		return
	}
	index := map[*byte]uint32{}
	for i, op := range b.Ops {
		s := op.GetSend()
		if s == nil || len(s.Data) == 0 || sends[&s.Data[0]] < 2 {
			continue
		}
		first := &s.Data[0]
		k := index[first]
		if k == 0 {
			b.Frames = append(b.Frames, s.Data)
			k = uint32(len(b.Frames))
			index[first] = k
		}
		shared := newSendOp(op.Socket, nil, s.Text, s.Number, k)
		shared.GetSend().Also = s.Also
		b.Ops[i] = shared
	}
}

// putResult queues the result of an event the router sent on its
// stream. Results are small and never dropped for a socket closed; past
// the queue's bound they are, and the router, hearing nothing, sends the
// socket's messages again.
func (h *gatewayHub) putResult(gateway, socket string, r *pb.SocketEventResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queue(gateway)
	if q.gone || len(q.ops) >= maxGatewayQueueOps+maxGatewayQueueOps/4 {
		return
	}
	if len(q.ops) == 0 {
		q.signal() // see put
	}
	q.ops = append(q.ops, queuedOp{op: &pb.GatewayOp{Socket: socket, Op: &pb.GatewayOp_Result{Result: r}}})
}

// requeue puts back, first, the operations a broken stream did not send.
func (h *gatewayHub) requeue(q *gatewayQueue, ops []queuedOp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := sendBytes(ops)
	q.bytes += n
	q.ops = append(ops, q.ops...)
	q.sent(len(ops), n) // not sent but queued again: the same backlog
}

// sweep takes the routers that had no stream for the grace period for gone,
// until the node stops.
// It ticks only while some queue has no stream.
func (h *gatewayHub) sweep() {
	for {
		select {
		case <-h.detachedSome:
		case <-h.stopping:
			return
		}
		t := time.NewTicker(h.grace / 4)
		for detached := true; detached; {
			select {
			case <-t.C:
			case <-h.stopping:
				t.Stop()
				return
			}
			detached = h.expire()
		}
		t.Stop()
	}
}

// noteDetached wakes sweep; mu is held.
func (h *gatewayHub) noteDetached() {
	select {
	case h.detachedSome <- struct{}{}:
	default:
	}
}

// expire takes the routers detached for the grace period for gone: their
// queued operations are dropped and the sockets they were for reported
// closed to their objects. It reports whether some queue is still
// without a stream (and so must be looked at again).
func (h *gatewayHub) expire() (detached bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	for gateway, q := range h.gws {
		if q.stream != 0 {
			continue
		}
		if q.gone && now.Sub(q.detached) >= goneGatewayKept*h.grace {
			delete(h.gws, gateway)
			continue
		}
		detached = true
		if now.Sub(q.detached) < h.grace {
			continue
		}
		if !q.gone {
			h.log.Warn("router has had no gateway stream for the grace period: its sockets are taken for closed",
				"gateway", gateway, "queued", len(q.ops))
		}
		q.gone = true
		for _, op := range q.ops {
			for _, socket := range append([]string{op.op.Socket}, op.op.GetSend().GetAlso()...) {
				if !q.closed[socket] {
					q.closed[socket] = true
					h.report(op.from, socket)
				}
			}
		}
		q.ops, q.bytes = nil, 0
	}
	return detached
}

func isSocketGone(err error) bool { return errors.Is(err, durable.ErrUnknownSocket) }
