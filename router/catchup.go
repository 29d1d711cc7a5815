package router

import (
	"hellochat/apps/chat/wire"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

// MaxPagesInFlight bounds the history pages one relay has asked its node
// for and not yet received. With limits.MaxPageBytes per page, a relay's
// reads can never fill its stream's queue on the node.
const MaxPagesInFlight = 8

// relaySession is a browser of the relay's room. Every session has a
// position: the highest seq passed to it. A committed message goes to a
// session exactly when it is the one after the session's position, whether
// it comes live from the node or in a page read from the store; a session
// behind the room's head reads pages until it is level, so live messages
// and history join without a gap or a duplicate.
type relaySession struct {
	s         *session
	pos       uint64
	placed    bool   // pos is chosen (it needs the room's head: after the first Opened)
	newest    bool   // a v2 session waiting for the newest page as its history
	newestID  uint64 // that page's request, 0 while not asked on this stream
	started   bool   // its connect-time history is out: notices and presence flow
	announced bool   // the room announced it; later Joins are quiet
	older     *pb.PageRequest
	olderID   uint64 // the request for older, 0 while not asked on this stream
}

type pageKind int

const (
	pageForward pageKind = iota // catch-up: the messages after a position
	pageNewest                  // a v2 browser's history on connect
	pageOlder                   // a v2 browser paging back
)

type pageWait struct {
	kind     pageKind
	req      *pb.PageRequest
	sessions []uint64 // who waits for a newest or older page
}

// history is what a relay has asked its node to read, and who needs it.
type history struct {
	pages    map[uint64]*pageWait // by request id, on the current stream
	forward  map[uint64]uint64    // after -> request id
	newestAt map[uint64]uint64    // before -> request id
	lagging  map[uint64]*relaySession
	nextID   uint64
}

func newHistory() history {
	return history{pages: map[uint64]*pageWait{}, forward: map[uint64]uint64{},
		newestAt: map[uint64]uint64{}, lagging: map[uint64]*relaySession{}}
}

// reset forgets the requests of a stream that is gone; catchUp asks again
// on the next one.
func (h *history) reset() {
	clear(h.pages)
	clear(h.forward)
	clear(h.newestAt)
}

// start places a session once the room's head is known: a seed browser
// gets the whole history (or the newest --seed-history), a v2 browser the
// messages after its resume point, or else the newest page.
func (rl *relay) start(rs *relaySession) {
	rs.placed = true
	switch {
	case rs.s.proto == wire.Seed:
		rs.pos = 0
		if limit := uint64(rl.rt.cfg.SeedHistory); limit > 0 && rl.head > limit {
			rs.pos = rl.head - limit
		}
	case rs.s.after > 0 && rs.s.after+limits.ResumeLimit >= rl.head:
		rs.pos = rs.s.after
		if rs.pos >= rl.head {
			rl.begin(rs, nil, false)
		}
	default:
		rs.newest = true
	}
	rl.settle(rs)
}

// settle records whether a session still needs pages.
func (rl *relay) settle(rs *relaySession) {
	if rs.newest || rs.older != nil || rs.pos < rl.head {
		rl.lagging[rs.s.id] = rs
		return
	}
	delete(rl.lagging, rs.s.id)
	if rs.s.proto == wire.Seed {
		rs.started = true // the seed page gets history and live messages alike
	}
}

// begin sends a v2 browser its connect-time history, then who is here.
func (rl *relay) begin(rs *relaySession, msgs []*pb.ChatMessage, more bool) {
	rs.s.enqueue(historyFrame(msgs, more, 0))
	rs.s.enqueue(wire.Presence(rl.users))
	if rl.degraded {
		rs.s.enqueue(wire.Status("reconnecting"))
	}
	rs.started = true
}

func (rl *relay) forget(id uint64) {
	delete(rl.sessions, id)
	delete(rl.lagging, id)
}

// encoded holds one message's frames, made once however many browsers get it.
type encoded struct{ seed, v2 []byte }

func (e *encoded) seedFrame(m *pb.ChatMessage) []byte {
	if e.seed == nil {
		e.seed = wire.SeedMessage(toWire(m))
	}
	return e.seed
}

func (e *encoded) v2Frame(m *pb.ChatMessage) []byte {
	if e.v2 == nil {
		e.v2 = wire.V2Message(toWire(m))
	}
	return e.v2
}

// deliver passes committed messages (ascending, no gaps) to every session
// whose position they continue. Sessions further behind read pages. When
// even the most caught-up browser of a live fan-out has SessionQueueSoftBytes
// waiting, the router itself is not keeping up with the room: the relay
// stops reading its browsers until one of them drains.
func (rl *relay) deliver(msgs []*pb.ChatMessage, live bool) {
	if len(msgs) == 0 {
		return
	}
	first, last := msgs[0].Seq, msgs[len(msgs)-1].Seq
	rl.head = max(rl.head, last)
	enc := make([]encoded, len(msgs))
	least, delivered := -1, 0
	for _, rs := range rl.sessions {
		if !rs.placed || rs.newest || rs.pos >= last {
			continue
		}
		if rs.pos+1 < first {
			rl.lagging[rs.s.id] = rs // it missed some: catchUp reads them
			continue
		}
		if !live && rs.s.watchDrain(SessionQueueLowBytes) {
			// A page read for another browser at the same position: one
			// still busy with the last page waits for its own.
			rl.lagging[rs.s.id] = rs
			continue
		}
		i := int(rs.pos + 1 - first)
		n, passed := rl.pass(rs, msgs[i:], enc[i:])
		if live && n >= 0 && (least < 0 || n < least) {
			least = n
		}
		delivered += passed
		rs.pos = last
		rl.settle(rs)
	}
	rl.rt.metrics.delivered.Add(float64(delivered))
	if live && least > SessionQueueSoftBytes && !rl.congested {
		rl.congested = true
		rl.recheckCongestion()
	}
}

// pass queues messages for one session and returns its queue's bytes after
// (-1 when it was given nothing) and how many it queued.
func (rl *relay) pass(rs *relaySession, msgs []*pb.ChatMessage, enc []encoded) (n, passed int) {
	s := rs.s
	if s.proto == wire.V2 && !rs.started {
		rl.begin(rs, msgs, false)
		return -1, 0
	}
	n = -1
	for i, m := range msgs {
		switch {
		case s.proto == wire.V2:
			n = s.enqueue(enc[i].v2Frame(m))
			passed++
		case !s.sentIt(m.ClientId): // the seed page does not echo a sender's own message
			n = s.enqueue(enc[i].seedFrame(m))
			passed++
		}
	}
	return n, passed
}

// recheckCongestion ends a congestion as soon as one browser of the room
// has little waiting, and otherwise asks each to say when it drains.
func (rl *relay) recheckCongestion() {
	if !rl.congested {
		return
	}
	for _, rs := range rl.sessions {
		// Only a browser level with the room says the router keeps up; one
		// catching up got nothing from the live fan-out.
		if rs.started && rs.pos >= rl.head && !rs.s.watchDrain(SessionQueueLowBytes) {
			rl.congested = false
			return
		}
	}
	if len(rl.sessions) == 0 {
		rl.congested = false
	}
}

// catchUp asks for the pages that lagging sessions need, at most
// MaxPagesInFlight at a time, and for a session only once its queue has
// drained: a browser reading a long history slowly holds one page here at
// a time, never the whole history.
func (rl *relay) catchUp() {
	if !rl.ready {
		return
	}
	for id, rs := range rl.lagging {
		if rl.sessions[id] != rs {
			delete(rl.lagging, id)
			continue
		}
		if rs.older != nil && rs.olderID == 0 && rs.started {
			if len(rl.pages) >= MaxPagesInFlight {
				return
			}
			// Older than what it was shown: never past its position, or it
			// would see messages that later arrive again live.
			before := rs.older.Before
			if before == 0 || before > rs.pos+1 {
				before = rs.pos + 1
			}
			rs.olderID = rl.ask(&pb.PageRequest{Before: before, Limit: rs.older.Limit}, pageOlder, id)
		}
		switch {
		case !rs.placed:
		case rs.newest:
			if rs.newestID != 0 {
				continue
			}
			before := rl.head + 1
			if pid, ok := rl.newestAt[before]; ok {
				rl.pages[pid].sessions = append(rl.pages[pid].sessions, id)
				rs.newestID = pid
				continue
			}
			if len(rl.pages) >= MaxPagesInFlight {
				return
			}
			rs.newestID = rl.ask(&pb.PageRequest{Before: before, Limit: limits.HistoryLimit}, pageNewest, id)
		case rs.pos < rl.head:
			if _, asked := rl.forward[rs.pos]; asked || rs.s.watchDrain(SessionQueueLowBytes) {
				continue
			}
			if len(rl.pages) >= MaxPagesInFlight {
				return
			}
			rl.ask(&pb.PageRequest{Forward: true, After: rs.pos, Limit: limits.HistoryLimit}, pageForward, 0)
		}
	}
}

func (rl *relay) ask(req *pb.PageRequest, kind pageKind, session uint64) uint64 {
	rl.nextID++
	req.Id = rl.nextID
	w := &pageWait{kind: kind, req: req}
	switch kind {
	case pageForward:
		rl.forward[req.After] = req.Id
	case pageNewest:
		rl.newestAt[req.Before] = req.Id
		w.sessions = []uint64{session}
	case pageOlder:
		w.sessions = []uint64{session}
	}
	rl.pages[req.Id] = w
	rl.write(&pb.AttachRequest{Kind: &pb.AttachRequest_Page{Page: req}})
	return req.Id
}

// older takes a v2 browser's request to page back through history.
func (rl *relay) older(from *session, req *pb.PageRequest) {
	rs := rl.sessions[from.id]
	if rs == nil {
		return
	}
	if rs.older != nil {
		rl.refuse(from, limits.CodeRateLimited, wire.Error(from.proto, limits.CodeRateLimited, "one history request at a time", ""))
		return
	}
	rs.older, rs.olderID = req, 0
	rl.lagging[rs.s.id] = rs
	rl.catchUp()
}

// page takes a page the node read.
func (rl *relay) page(p *pb.Page) {
	w := rl.pages[p.Id]
	if w == nil {
		return // asked on a stream that is gone
	}
	delete(rl.pages, p.Id)
	switch w.kind {
	case pageForward:
		delete(rl.forward, w.req.After)
		if len(p.Messages) == 0 || p.Messages[0].Seq != w.req.After+1 {
			if w.req.After < rl.head {
				// Its store is behind what the room committed: this node
				// no longer leads the room. Find the one that does.
				rl.retryLater("history page came back short")
				return
			}
			break
		}
		rl.deliver(p.Messages, false)
	case pageNewest:
		delete(rl.newestAt, w.req.Before)
		if want := w.req.Before - 1; want > 0 && (len(p.Messages) == 0 || p.Messages[len(p.Messages)-1].Seq != want) {
			for _, id := range w.sessions {
				if rs := rl.sessions[id]; rs != nil && rs.newestID == p.Id {
					rs.newestID = 0 // asked again on the next stream
				}
			}
			rl.retryLater("history page came back short")
			return
		}
		for _, id := range w.sessions {
			rs := rl.sessions[id]
			if rs == nil || !rs.newest || rs.newestID != p.Id {
				continue
			}
			rs.newest, rs.newestID = false, 0
			rs.pos = w.req.Before - 1
			rl.begin(rs, p.Messages, p.More)
			rl.settle(rs)
		}
	case pageOlder:
		if rs := rl.sessions[w.sessions[0]]; rs != nil && rs.olderID == p.Id {
			rs.older, rs.olderID = nil, 0
			rs.s.enqueue(historyFrame(p.Messages, p.More, w.req.Before))
			rl.settle(rs)
		}
	}
	rl.catchUp()
}
