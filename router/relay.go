package router

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

const (
	// RelayInbox bounds requests from browser sessions waiting for a relay.
	RelayInbox = 1024
	// RelayStreamQueue bounds requests waiting to be written to the node.
	RelayStreamQueue = 4096
	// MaxUnacked bounds the messages a relay holds for resending while the
	// room's node is unreachable; beyond it, sends are refused.
	MaxUnacked = 10000
	// RelayLinger is how long a relay whose browsers have all left keeps
	// trying to deliver their unacknowledged messages.
	RelayLinger = 30 * time.Second
	// Reconnect backoff bounds.
	backoffMin = 50 * time.Millisecond
	backoffMax = time.Second
)

var errRelayStopped = errors.New("router: relay stopped")

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

type relaySession struct {
	s              *session
	historyPending bool
}

// relay holds one room for this router: one Attach stream to the node that
// owns the room, multiplexing every browser in the room. When the stream
// breaks it keeps the browsers connected, finds the owner again, resumes
// after the last seq it saw and resends what was not acknowledged.
// One goroutine (run) owns all of its state.
type relay struct {
	rt     *Router
	room   string
	inbox  chan relayReq
	events chan streamEvent
	done   chan struct{}

	// Owned by run.
	sessions  map[uint64]*relaySession
	users     []string
	lastSeq   uint64
	haveSeq   bool
	unacked   []*pb.Send      // in send order; may still hold acked ones (see acked)
	unackedID map[string]bool // the sends not yet acked
	gen       uint64
	stream    *relayStream    // nil while disconnected
	ready     bool            // Opened seen on the current stream
	target    cluster.Meta    // node of the current or next stream
	attempt   int             // dials so far, to rotate among replicas
	claims    map[string]bool // nodes that claimed the shard at the last look
	waiting   bool            // a redial is scheduled
	hint      *pb.Redirect    // where the last node told us to go
	degraded  bool            // browsers were told "reconnecting" and not yet "ready"
	backoff   time.Duration
	redial    *time.Timer
	lingering time.Time // when the last browser left, if unacked remain
}

// relayStream is the write side of one Attach stream.
type relayStream struct {
	gen    uint64
	sendc  chan *pb.AttachRequest
	ctx    context.Context
	cancel context.CancelFunc
}

func newRelay(rt *Router, room string) *relay {
	rl := &relay{
		rt:        rt,
		room:      room,
		inbox:     make(chan relayReq, RelayInbox),
		events:    make(chan streamEvent, RelayStreamQueue),
		done:      make(chan struct{}),
		sessions:  map[uint64]*relaySession{},
		unackedID: map[string]bool{},
		backoff:   backoffMin,
		redial:    time.NewTimer(time.Hour),
	}
	rl.redial.Stop()
	return rl
}

// submit hands the relay a request, waiting while its inbox is full.
func (rl *relay) submit(q relayReq) {
	select {
	case rl.inbox <- q:
	case <-rl.done:
	}
}

func (rl *relay) run() {
	defer close(rl.done)
	defer rl.closeStream()
	rl.dial()
	linger := time.NewTicker(time.Second)
	defer linger.Stop()
	changed := rl.rt.members.Changed()
	for {
		select {
		case q := <-rl.inbox:
			rl.handle(q)
		case e := <-rl.events:
			rl.event(e)
		case <-rl.redial.C:
			rl.dial()
		case <-changed:
			changed = rl.rt.members.Changed()
			rl.placementChanged()
		case <-linger.C:
			if !rl.lingering.IsZero() && time.Since(rl.lingering) > RelayLinger {
				rl.rt.log.Warn("giving up on unacknowledged messages", "room", rl.room, "count", len(rl.unackedID))
				rl.unacked, rl.unackedID = nil, map[string]bool{}
			}
		case <-rl.rt.ctx.Done():
			return
		}
		if len(rl.sessions) == 0 && len(rl.unackedID) == 0 && rl.rt.retire(rl) {
			return
		}
	}
}

func (rl *relay) handle(q relayReq) {
	switch {
	case q.join != nil:
		s := q.join
		rl.sessions[s.id] = &relaySession{s: s, historyPending: true}
		rl.lingering = time.Time{}
		rl.write(rl.joinReq(s, false))
	case q.leave != nil:
		if _, ok := rl.sessions[q.leave.id]; !ok {
			return
		}
		delete(rl.sessions, q.leave.id)
		rl.write(&pb.AttachRequest{Kind: &pb.AttachRequest_Leave{Leave: &pb.Leave{Session: q.leave.id}}})
		if len(rl.sessions) == 0 && len(rl.unackedID) > 0 {
			rl.lingering = time.Now()
		}
	case q.req != nil:
		if send := q.req.GetSend(); send != nil {
			if rl.unackedID[send.ClientId] {
				return // the same id is already on its way
			}
			if len(rl.unackedID) >= MaxUnacked {
				q.from.enqueue(errorFrame(q.from.proto, limits.CodeUnavailable, "room unavailable; message not sent", send.ClientId))
				return
			}
			rl.unacked = append(rl.unacked, send)
			rl.unackedID[send.ClientId] = true
		}
		rl.write(q.req)
	}
}

func (rl *relay) joinReq(s *session, quiet bool) *pb.AttachRequest {
	return &pb.AttachRequest{Kind: &pb.AttachRequest_Join{Join: &pb.Join{
		Session: s.id, Name: s.name, Quiet: quiet, HistoryAfter: s.after, HistoryLimit: limits.HistoryLimit}}}
}

// write queues a request on the current stream. With no stream it is
// dropped: joins and unacknowledged sends are replayed on the next one.
func (rl *relay) write(req *pb.AttachRequest) {
	st := rl.stream
	if st == nil {
		return
	}
	select {
	case st.sendc <- req:
	case <-st.ctx.Done():
	}
}

// dial opens a new stream to the room's node and queues, in order, the
// Open (resuming after the last seq seen), a Join for every browser and
// every unacknowledged send.
func (rl *relay) dial() {
	rl.closeStream()
	rl.waiting = false
	rl.redial.Stop()
	target, ok := rl.pickTarget()
	if !ok {
		rl.retryLater("no object node known")
		return
	}
	conn, err := rl.rt.conn(target.GRPC)
	if err != nil {
		rl.retryLater(err.Error())
		return
	}
	rl.gen++
	ctx, cancel := context.WithCancel(rl.rt.ctx)
	st := &relayStream{gen: rl.gen, sendc: make(chan *pb.AttachRequest, RelayStreamQueue), ctx: ctx, cancel: cancel}
	rl.stream, rl.target, rl.ready = st, target, false

	client := pb.NewRoomsClient(conn)
	gen, events := st.gen, rl.events
	go func() {
		stream, err := client.Attach(ctx)
		if err != nil {
			select {
			case events <- streamEvent{gen: gen, err: err}:
			case <-ctx.Done():
			}
			return
		}
		go func() {
			for {
				select {
				case req := <-st.sendc:
					if err := stream.Send(req); err != nil {
						cancel() // Recv reports the cause
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
		for {
			ev, err := stream.Recv()
			if err != nil {
				select {
				case events <- streamEvent{gen: gen, err: err}:
				case <-ctx.Done():
				}
				return
			}
			select {
			case events <- streamEvent{gen: gen, ev: ev}:
			case <-ctx.Done():
				return
			}
		}
	}()
	// The stream goroutines are running, so these cannot wait forever.
	rl.write(&pb.AttachRequest{Kind: &pb.AttachRequest_Open{Open: &pb.Open{
		Room: rl.room, RouterId: rl.rt.instance, Resume: rl.haveSeq, ResumeAfter: rl.lastSeq}}})
	for _, rs := range rl.sessions {
		rl.write(rl.joinReq(rs.s, !rs.historyPending))
	}
	for _, send := range rl.unacked {
		if rl.unackedID[send.ClientId] {
			rl.write(&pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: send}})
		}
	}
}

// pickTarget chooses where to attach: the node a redirect named, else the
// live node that gossips leadership of the room's shard, else the ring's
// first live replica (which answers with a redirect if it is not leader).
func (rl *relay) pickTarget() (cluster.Meta, bool) {
	p := rl.rt.members.Placement()
	if h := rl.hint; h != nil && h.OwnerAddr != "" && (h.OwnerId == "" || p.Alive(h.OwnerId)) {
		return cluster.Meta{ID: h.OwnerId, GRPC: h.OwnerAddr}, true
	}
	shard := cluster.Shard(rl.room)
	if leaders := p.Leaders(shard); len(leaders) > 0 {
		return leaders[0], true
	}
	replicas, err := p.Replicas(shard, 3)
	if err != nil {
		return cluster.Meta{}, false
	}
	// Rotate through the replicas on retries, so a dead first replica
	// does not hide the others.
	live := replicas[:0:0]
	for _, r := range replicas {
		if p.Alive(r.ID) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return replicas[0], replicas[0].GRPC != ""
	}
	rl.attempt++
	return live[rl.attempt%len(live)], true
}

func (rl *relay) closeStream() {
	if rl.stream != nil {
		rl.stream.cancel()
		rl.stream = nil
	}
	rl.ready = false
}

func (rl *relay) retryLater(why string) {
	if rl.ready || rl.backoff == backoffMin {
		rl.rt.log.Info("room relay reconnecting", "room", rl.room, "node", rl.target.ID, "why", why)
	}
	rl.closeStream()
	if !rl.degraded {
		rl.degraded = true
		for _, rs := range rl.sessions {
			if rs.s.proto == protoV2 && !rs.historyPending {
				rs.s.enqueue(statusFrame("reconnecting"))
			}
		}
	}
	d := rl.backoff/2 + rand.N(rl.backoff/2+1)
	rl.backoff = min(rl.backoff*2, backoffMax)
	rl.redial.Reset(d)
	rl.waiting = true
}

// placementChanged re-targets the stream when gossip shows a node newly
// claiming leadership of the room's shard, or says the current node died.
// A new claim wins over an old one: that is how a relay leaves a paused
// leader, whose stream stays open but silent while its claim lingers until
// gossip declares it dead.
func (rl *relay) placementChanged() {
	p := rl.rt.members.Placement()
	leaders := p.Leaders(cluster.Shard(rl.room))
	var fresh *cluster.Meta
	claims := make(map[string]bool, len(leaders))
	for i, l := range leaders {
		claims[l.ID] = true
		if !rl.claims[l.ID] && l.ID != rl.target.ID && fresh == nil {
			fresh = &leaders[i]
		}
	}
	rl.claims = claims
	if rl.stream == nil && rl.waiting {
		// Waiting out a backoff: a new leader is worth dialing now.
		if fresh == nil {
			return
		}
	} else if rl.stream == nil {
		return
	}
	switch {
	case fresh != nil:
		rl.rt.log.Info("room leader changed", "room", rl.room, "from", rl.target.ID, "to", fresh.ID)
	case rl.target.ID != "" && !p.Alive(rl.target.ID):
		rl.rt.log.Info("room's node is down", "room", rl.room, "node", rl.target.ID)
	default:
		return
	}
	rl.hint = nil
	if fresh != nil {
		rl.hint = &pb.Redirect{OwnerId: fresh.ID, OwnerAddr: fresh.GRPC}
	}
	rl.backoff = backoffMin
	rl.dial()
}

func (rl *relay) event(e streamEvent) {
	if rl.stream == nil || e.gen != rl.stream.gen {
		return // a stream we already gave up on
	}
	if e.err != nil {
		why := e.err.Error()
		if s, ok := status.FromError(e.err); ok {
			why = s.Code().String() + ": " + s.Message()
		}
		if errors.Is(e.err, io.EOF) || status.Code(e.err) == codes.Canceled {
			why = "stream closed by node"
		}
		rl.retryLater(why)
		return
	}
	switch k := e.ev.Kind.(type) {
	case *pb.AttachEvent_Opened:
		rl.ready = true
		rl.backoff = backoffMin
		if k.Opened.LastSeq > rl.lastSeq {
			rl.lastSeq = k.Opened.LastSeq
		}
		rl.haveSeq = true
		if rl.degraded {
			rl.degraded = false
			for _, rs := range rl.sessions {
				if rs.s.proto == protoV2 && !rs.historyPending {
					rs.s.enqueue(statusFrame("ready"))
				}
			}
		}
	case *pb.AttachEvent_Redirect:
		r := k.Redirect
		if r.OwnerAddr != "" && r.OwnerAddr != rl.target.GRPC {
			rl.hint = r
			rl.rt.log.Info("room redirected", "room", rl.room, "from", rl.target.ID, "to", r.OwnerId, "why", r.Reason)
			rl.backoff = backoffMin
			rl.dial()
			return
		}
		rl.hint = nil
		rl.retryLater("redirected: " + r.Reason)
	case *pb.AttachEvent_Message:
		rl.message(k.Message)
	case *pb.AttachEvent_Ack:
		rl.acked(k.Ack.ClientId)
		if rs := rl.sessions[k.Ack.Session]; rs != nil && rs.s.proto == protoV2 {
			rs.s.enqueue(ackFrame(k.Ack))
		}
	case *pb.AttachEvent_History:
		rl.history(k.History)
	case *pb.AttachEvent_Presence:
		rl.presence(k.Presence)
	case *pb.AttachEvent_Typing:
		frame := mustJSON(v2Out{Type: "typing", Name: k.Typing.Name})
		for id, rs := range rl.sessions {
			if rs.s.proto == protoV2 && !rs.historyPending && !(k.Typing.OriginRouter == rl.rt.instance && k.Typing.OriginSession == id) {
				rs.s.enqueue(frame)
			}
		}
	case *pb.AttachEvent_Reject:
		rj := k.Reject
		if rj.ClientId != "" {
			rl.acked(rj.ClientId)
		}
		if rs := rl.sessions[rj.Session]; rs != nil {
			rs.s.enqueue(errorFrame(rs.s.proto, rj.Code, rj.Message, rj.ClientId))
		}
	}
}

// acked forgets an acknowledged send. Acks come nearly in send order, so
// the ordered list is trimmed from its head, which keeps this O(1) per ack
// instead of a search through thousands of sends in flight.
func (rl *relay) acked(id string) {
	if !rl.unackedID[id] {
		return
	}
	delete(rl.unackedID, id)
	i := 0
	for i < len(rl.unacked) && !rl.unackedID[rl.unacked[i].ClientId] {
		i++
	}
	rl.unacked = rl.unacked[i:]
	if len(rl.unackedID) == 0 {
		rl.unacked = nil
	}
}

// message fans a committed message out to the browsers in seq order. A
// resume can replay messages this relay already passed on; those are
// dropped here so no browser sees one twice.
func (rl *relay) message(m *pb.ChatMessage) {
	if rl.haveSeq && m.Seq <= rl.lastSeq {
		return
	}
	if rl.haveSeq && m.Seq != rl.lastSeq+1 {
		rl.rt.log.Warn("gap in room sequence", "room", rl.room, "after", rl.lastSeq, "got", m.Seq)
	}
	rl.lastSeq, rl.haveSeq = m.Seq, true
	mine := m.OriginRouter == rl.rt.instance
	if mine {
		rl.acked(m.ClientId)
	}
	var seed, v2 []byte // encoded once, for the first browser that needs each
	for id, rs := range rl.sessions {
		if rs.historyPending {
			continue // its history, still to come, includes this message
		}
		switch rs.s.proto {
		case protoSeed:
			if !(mine && m.OriginSession == id) {
				if seed == nil {
					seed = seedMessageFrame(m)
				}
				rs.s.enqueue(seed)
			}
		case protoV2:
			if v2 == nil {
				v2 = v2MessageFrame(m)
			}
			rs.s.enqueue(v2)
		}
	}
}

func (rl *relay) history(h *pb.History) {
	rs := rl.sessions[h.Session]
	if rs == nil {
		return
	}
	s := rs.s
	if h.Before > 0 { // a page requested by a v2 browser
		if s.proto == protoV2 {
			s.enqueue(historyFrame(h.Messages, h.More, h.Before))
		}
		return
	}
	if !rs.historyPending {
		return
	}
	rs.historyPending = false
	if s.proto == protoSeed {
		for _, m := range h.Messages {
			s.enqueue(seedMessageFrame(m))
		}
		return
	}
	s.enqueue(historyFrame(h.Messages, h.More, 0))
	s.enqueue(presenceFrame(rl.users))
	if rl.degraded {
		s.enqueue(statusFrame("reconnecting"))
	}
}

func (rl *relay) presence(p *pb.Presence) {
	rl.users = p.Users
	var seed, v2 []byte
	switch p.Change {
	case pb.Presence_JOINED:
		seed = mustJSON(seedFrame{Name: p.Name, Message: "joined the chat"})
		v2 = mustJSON(v2Out{Type: "joined", Name: p.Name})
	case pb.Presence_LEFT:
		seed = mustJSON(seedFrame{Name: p.Name, Message: "Disconnected"})
		v2 = mustJSON(v2Out{Type: "left", Name: p.Name})
	}
	users := presenceFrame(p.Users)
	for id, rs := range rl.sessions {
		if rs.historyPending {
			continue
		}
		subject := p.OriginRouter == rl.rt.instance && p.OriginSession == id
		switch rs.s.proto {
		case protoSeed:
			if seed != nil && !subject {
				rs.s.enqueue(seed)
			}
		case protoV2:
			if v2 != nil && !subject {
				rs.s.enqueue(v2)
			}
			rs.s.enqueue(users)
		}
	}
}
