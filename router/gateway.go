package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"

	"hellochat/apps"
	"hellochat/durable"
	"hellochat/objectclient"
	"hellochat/partition"
	pb "hellochat/proto/roompb"
)

// The router is the gateway of the WebSockets that apps' objects accept
// (durable.State.AcceptWebSocket): the browser's connection ends here and
// stays here while the object is evicted or moves to another node. The
// router names each socket (objectclient.SocketID) and hands the upgrade
// to the object's Fetch. It keeps a Gateway stream open to every object
// node: on it, the browsers' messages go numbered to the node that leads
// their object, their results come back, and so does what objects send
// to the router's sockets. After a failure a socket sends its unanswered
// messages again by Objects.Socket (gatewaysocket.go).

const (
	// MaxGatewayMessageBytes bounds a message a browser sends on an
	// object's socket (Cloudflare's 1 MiB).
	MaxGatewayMessageBytes = durable.MaxSocketMessageBytes
	// MaxGatewaySocketQueueBytes bounds what waits to be written to one
	// browser; a browser that lets more pile up is closed (1013) rather
	// than sent to with a gap.
	MaxGatewaySocketQueueBytes = 8 << 20
	// WriteTimeout bounds writing one batch of what waits for a browser:
	// a browser that takes longer is cut off.
	WriteTimeout = 10 * time.Second
	// eventAnswerTimeout is how long a message sent on a Gateway stream
	// waits for its result before its socket sends it again by Socket,
	// if its node answered nothing else meanwhile; maxAnswerWait bounds
	// the wait for a node that keeps answering others. Sent again, a
	// socket's messages go one round trip at a time, so a busy room's
	// slow answers must not send all its sockets down that path.
	eventAnswerTimeout = 3 * time.Second
	maxAnswerWait      = 10 * eventAnswerTimeout
	// maxUnackedEvents and maxUnackedBytes bound the messages of one
	// socket sent to its object and not yet answered; past them the
	// router stops reading that browser until answers come, or refuses
	// (apps.SocketPolicy.Overloaded).
	maxUnackedEvents = 1024
	maxUnackedBytes  = 4 << 20
	// MaxLinesBytes bounds one WebSocket message of frames joined one
	// per line (apps.SocketPolicy.JoinLines); a single frame longer than
	// that goes alone.
	MaxLinesBytes = 64 << 10
	// gatewayRetryMin and gatewayRetryMax bound the wait before a Gateway
	// stream to a node is opened again.
	gatewayRetryMin = 50 * time.Millisecond
	gatewayRetryMax = 2 * time.Second
)

// gateway is the router's side of objects' sockets. It is the apps.Stub
// the routes get, so that apps.Forward can hand it an upgrade.
type gateway struct {
	*objectclient.Client
	rt *Router
	id string

	// ctx ends the streams and the sockets' reads and writes; reportCtx
	// the sockets' last word to their objects. Both end at close.
	ctx, reportCtx       context.Context
	cancel, cancelReport context.CancelFunc

	mu      sync.Mutex
	next    uint64
	sockets map[string]*gatewaySocket
	flows   map[objectKey]*objectFlow // of the objects with sockets here
	closed  bool
	// streams by node address, while open; pending the messages sent on
	// them and not yet answered, by seq.
	nodes   map[string]*nodeStream
	seq     uint64
	pending map[uint64]pendingEvent
	// heard is when each node last answered a message on its stream: a
	// node that answers others is busy, not stuck, and its slow answers
	// are waited for (expire).
	heard map[string]time.Time
	// anyPending is signalled when pending stops being empty: expire
	// sleeps without a timer while nothing waits for an answer.
	anyPending chan struct{}

	streams sync.WaitGroup
	wg      sync.WaitGroup // sockets, until their objects were told they ended
}

var _ apps.Upgrader = (*gateway)(nil)

func newGateway(rt *Router, client *objectclient.Client, instance string) (*gateway, error) {
	g := &gateway{Client: client, rt: rt, id: objectclient.GatewayID(rt.cfg.ID, instance),
		sockets: map[string]*gatewaySocket{}, flows: map[objectKey]*objectFlow{}, nodes: map[string]*nodeStream{}, pending: map[uint64]pendingEvent{}, heard: map[string]time.Time{},
		anyPending: make(chan struct{}, 1)}
	if _, err := objectclient.ParseGateway(g.id); err != nil {
		return nil, fmt.Errorf("router: id %q cannot name sockets: %w", rt.cfg.ID, err)
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.reportCtx, g.cancelReport = context.WithCancel(context.Background())
	g.streams.Add(2)
	go g.run(g.ctx)
	go g.expire(g.ctx)
	return g, nil
}

// run keeps a Gateway stream open to every object node gossip knows,
// until the router stops.
func (g *gateway) run(ctx context.Context) {
	defer g.streams.Done()
	streams := map[string]context.CancelFunc{} // by node gRPC address
	defer func() {
		for _, cancel := range streams {
			cancel()
		}
	}()
	for {
		changed := g.rt.members.Changed()
		want := map[string]bool{}
		for _, m := range g.rt.members.Placement().Nodes() {
			if m.GRPC != "" {
				want[m.GRPC] = true
			}
		}
		for addr, cancel := range streams {
			if !want[addr] {
				cancel()
				delete(streams, addr)
			}
		}
		for addr := range want {
			if streams[addr] == nil {
				sctx, cancel := context.WithCancel(ctx)
				streams[addr] = cancel
				g.streams.Add(1)
				go g.stream(sctx, addr)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// stream receives what the node at addr sends to the gateway's sockets,
// opening the stream again after it breaks, until ctx ends.
func (g *gateway) stream(ctx context.Context, addr string) {
	defer g.streams.Done()
	backoff := gatewayRetryMin
	for ctx.Err() == nil {
		start := time.Now()
		err := g.receive(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > gatewayRetryMax {
			backoff = gatewayRetryMin
		}
		g.rt.log.Debug("gateway stream ended", "node", addr, "err", err)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, gatewayRetryMax)
	}
}

func (g *gateway) receive(ctx context.Context, addr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := g.Client.Gateway(ctx, addr, g.id)
	if err != nil {
		return err
	}
	ns := &nodeStream{addr: addr, st: st}
	g.mu.Lock()
	g.nodes[addr] = ns
	g.mu.Unlock()
	defer g.lost(ns)
	for {
		op, err := st.Recv()
		if err != nil {
			return err
		}
		if b := op.GetBatch(); b != nil {
			for _, op := range b.GetOps() {
				if op.GetBatch() != nil {
					continue // a batch holds no batch
				}
				ops, err := resolveFrame(op, b.GetFrames())
				if err != nil {
					g.rt.log.Error("bad operation from a node: its sockets closed", "node", addr, "socket", op.GetSocket(), "err", err)
				}
				for _, op := range ops {
					g.take(addr, op)
				}
			}
			continue
		}
		g.take(addr, op)
	}
}

// resolveFrame gives a send that names one of its batch's shared frames
// that frame's bytes (the sockets share them: nothing writes to a queued
// frame). A send naming a frame its batch lacks (a node's bug) becomes a
// close of each socket it was for, and an error to log: the browsers
// reconnect and resume, and never read on past a gap.
func resolveFrame(op *pb.GatewayOp, frames [][]byte) ([]*pb.GatewayOp, error) {
	s := op.GetSend()
	if s == nil || s.GetFrame() == 0 {
		return []*pb.GatewayOp{op}, nil
	}
	if int(s.GetFrame()) > len(frames) || len(s.GetData()) > 0 {
		var closes []*pb.GatewayOp
		for _, socket := range append([]string{op.GetSocket()}, s.GetAlso()...) {
			closes = append(closes, &pb.GatewayOp{Socket: socket, Op: &pb.GatewayOp_Close{Close: &pb.SocketClose{
				Code: int32(closeInternal), Reason: "the object's node sent a bad frame"}}})
		}
		return closes, fmt.Errorf("a send names frame %d of a batch of %d, with %d bytes of its own", s.GetFrame(), len(frames), len(s.GetData()))
	}
	s.Data = frames[s.GetFrame()-1]
	return []*pb.GatewayOp{op}, nil
}

// take applies one operation a node sent: an answer to an event, or
// something an object did to one of the router's sockets.
func (g *gateway) take(addr string, op *pb.GatewayOp) {
	if r := op.GetResult(); r != nil {
		g.answered(addr, r)
		return
	}
	also := op.GetSend().GetAlso()
	g.mu.Lock()
	s := g.sockets[op.GetSocket()]
	var more []*gatewaySocket
	for _, id := range also {
		if o := g.sockets[id]; o != nil {
			more = append(more, o)
		}
	}
	g.mu.Unlock()
	if s != nil { // else it ended here; the object has been told
		s.apply(op)
	}
	for _, o := range more { // a broadcast: the same frame for each
		o.apply(op)
	}
}

// nodeStream is the sending side of a Gateway stream to one node.
type nodeStream struct {
	addr string
	mu   sync.Mutex // one Send at a time
	st   grpc.BidiStreamingClient[pb.GatewayUp, pb.GatewayOp]
}

// pendingEvent is a message sent on a stream and not yet answered.
type pendingEvent struct {
	s    *gatewaySocket
	n    uint64
	addr string
	sent time.Time
}

// streamTo is the open stream to the node that leads s's object's shard
// as gossip has it, if any. The node is looked up again only when the
// placement changed (on s's read loop, which owns s.target).
func (g *gateway) streamTo(s *gatewaySocket) *nodeStream {
	p := g.rt.members.Placement()
	if s.target.addr == "" || s.target.version != p.Version() {
		attempt := 0
		target, ok := p.Target(partition.Of(s.object.StorageObject()), "", "", &attempt)
		if !ok {
			return nil
		}
		s.target.addr, s.target.version = target.GRPC, p.Version()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nodes[s.target.addr]
}

// send sends a socket's message on ns, to be answered by seq; false: the
// stream failed it (the socket sends again by Socket).
func (g *gateway) send(ns *nodeStream, s *gatewaySocket, ev *pb.SocketEvent) bool {
	g.mu.Lock()
	g.seq++
	ev.Seq = g.seq
	g.pending[ev.Seq] = pendingEvent{s: s, n: ev.GetN(), addr: ns.addr, sent: time.Now()}
	if len(g.pending) == 1 {
		select {
		case g.anyPending <- struct{}{}:
		default:
		}
	}
	g.mu.Unlock()
	ns.mu.Lock()
	err := ns.st.Send(&pb.GatewayUp{Up: &pb.GatewayUp_Event{Event: ev}})
	ns.mu.Unlock()
	if err != nil {
		g.mu.Lock()
		delete(g.pending, ev.Seq)
		g.mu.Unlock()
		return false
	}
	return true
}

// answered takes a node's result for a message sent on its stream.
func (g *gateway) answered(addr string, r *pb.SocketEventResult) {
	g.mu.Lock()
	g.heard[addr] = time.Now()
	p, ok := g.pending[r.GetSeq()]
	delete(g.pending, r.GetSeq())
	g.mu.Unlock()
	if !ok {
		return // given up on already: sent again by Socket
	}
	if r.GetUnavailable() != "" {
		p.s.resync()
		return
	}
	p.s.taken(p.n, r.GetResponse())
}

// lost gives up on what was sent on a stream that ended: those sockets
// send again by Socket.
func (g *gateway) lost(ns *nodeStream) {
	g.mu.Lock()
	if g.nodes[ns.addr] == ns {
		delete(g.nodes, ns.addr)
		delete(g.heard, ns.addr)
	}
	var resync []*gatewaySocket
	for seq, p := range g.pending {
		if p.addr == ns.addr {
			delete(g.pending, seq)
			resync = append(resync, p.s)
		}
	}
	g.mu.Unlock()
	for _, s := range resync {
		s.resync()
	}
}

// expire gives up on messages unanswered for eventAnswerTimeout by a node
// that answered nothing else for as long (it stopped answering without
// its stream breaking), or for maxAnswerWait: their sockets
// send them again by Socket, which finds the shard's leader. It ticks
// only while some message waits for its answer.
func (g *gateway) expire(ctx context.Context) {
	defer g.streams.Done()
	for {
		select {
		case <-g.anyPending:
		case <-ctx.Done():
			return
		}
		t := time.NewTicker(eventAnswerTimeout / 3)
		for waiting := true; waiting; {
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			var resync []*gatewaySocket
			g.mu.Lock()
			for seq, p := range g.pending {
				age, quiet := time.Since(p.sent), time.Since(g.heard[p.addr])
				if age >= eventAnswerTimeout && (quiet >= eventAnswerTimeout || age >= maxAnswerWait) {
					delete(g.pending, seq)
					resync = append(resync, p.s)
				}
			}
			waiting = len(g.pending) > 0
			g.mu.Unlock()
			for _, s := range resync {
				s.resync()
			}
		}
		t.Stop()
	}
}

// Upgrade hands the WebSocket upgrade r to the object id's Fetch. If the
// object accepts it (101), the router completes the handshake and keeps
// the browser's connection; otherwise the object's answer is the
// router's.
func (g *gateway) Upgrade(w http.ResponseWriter, r *http.Request, id durable.ID, p apps.SocketPolicy) {
	rt := g.rt
	addr := clientAddr(r)
	a, ok := rt.admit(w, addr)
	if !ok {
		return
	}
	s, ok := g.open(id, addr, queueShares{router: &rt.queued, addr: &a.queued}, p)
	if !ok {
		rt.release(addr)
		http.Error(w, "router shutting down", http.StatusServiceUnavailable)
		return
	}
	resp, err := g.FetchSocket(r.Context(), id, r, s.id)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		// The object may have accepted the socket and answered otherwise,
		// or the outcome is unknown: it is told the socket closed.
		s.end(closeAbnormal, "the upgrade was not completed", false)
		if err != nil {
			apps.WriteError(w, apps.HTTPStatus(err), "upgrade: "+err.Error())
			return
		}
		apps.WriteResponse(w, resp)
		return
	}
	s.accept(w, r, resp)
}

// Refuse answers the upgrade r with a socket no object holds: the
// handshake, frame, and a close with code and reason.
func (g *gateway) Refuse(w http.ResponseWriter, r *http.Request, subprotocol string, frame []byte, code int, reason string) {
	opts := &websocket.AcceptOptions{InsecureSkipVerify: g.rt.cfg.AllowAnyOrigin}
	if subprotocol != "" {
		opts.Subprotocols = []string{subprotocol}
	}
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept has answered
	}
	ctx, cancel := context.WithTimeout(g.ctx, WriteTimeout)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, frame); err != nil {
		conn.CloseNow()
		return
	}
	conn.Close(websocket.StatusCode(code), reason)
}

// open registers a socket before its upgrade reaches the object, so that
// what the object sends at once waits for the handshake.
func (g *gateway) open(id durable.ID, addr string, shares queueShares, p apps.SocketPolicy) (*gatewaySocket, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, false
	}
	g.next++
	s := newGatewaySocket(g, objectclient.SocketID(g.id, g.next), id, addr, shares, p)
	g.sockets[s.id] = s
	g.joinFlow(s)
	g.wg.Add(1)
	return s, true
}

// forget takes an ended socket out of the table.
func (g *gateway) forget(s *gatewaySocket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.sockets, s.id)
	g.leaveFlow(s)
}

// close ends every socket with 1001, waits within ctx for their objects
// to be told, then ends the streams.
func (g *gateway) close(ctx context.Context) {
	g.mu.Lock()
	g.closed = true
	all := make([]*gatewaySocket, 0, len(g.sockets))
	for _, s := range g.sockets {
		all = append(all, s)
	}
	g.mu.Unlock()
	for _, s := range all {
		s.shut(closeGoingAway, "router shutting down")
	}
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	g.cancel()
	g.cancelReport()
	<-done
	g.streams.Wait()
}

// count is how many sockets the gateway holds (upgrading or open).
func (g *gateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sockets)
}

// eventError is why a socket event's error ends the socket (nil: it does
// not; the handler refused one message).
func eventError(err error) (code int, reason string, ends bool) {
	var appErr *apps.Error
	switch {
	case errors.Is(err, objectclient.ErrSocketGone):
		return closeInternal, "the object no longer holds this socket", true
	case errors.As(err, &appErr) && appErr.Code == apps.Refused:
		return 0, "", false
	case errors.Is(err, context.Canceled):
		return closeGoingAway, "router shutting down", true
	}
	return closeInternal, "the object is unavailable", true
}
