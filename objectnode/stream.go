package objectnode

import (
	"sync"

	pb "hellochat/proto/roompb"
)

// Defaults for what may wait to be sent on one Attach stream (Config
// StreamQueue and StreamQueueBytes). A router that falls this far behind is
// dropped and comes back for what it missed by pages, so the room never
// waits for it and never holds more than this for it. A router's own sends
// can put at most two events each here (the message and its ack), and it
// keeps at most router.MaxUnacked of them in flight, so the bound is only
// reached by a router that stopped reading.
const (
	DefaultStreamQueue      = 16384
	DefaultStreamQueueBytes = 16 << 20
)

// stream is the node's side of one router's Attach stream for one room. The
// room actor and the stream's request reader queue events on it; the
// stream's handler goroutine sends them. Nobody ever waits on the queue.
type stream struct {
	router    string
	maxEvents int
	maxBytes  int

	mu     sync.Mutex
	queue  []*pb.AttachEvent
	bytes  int
	ended  bool
	slow   bool // ended because the router did not keep up
	final  *pb.AttachEvent
	wake   chan struct{} // capacity 1: "the queue is not empty"
	closed chan struct{} // closed by end
}

func newStream(router string, maxEvents, maxBytes int) *stream {
	return &stream{router: router, maxEvents: maxEvents, maxBytes: maxBytes,
		wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

// push queues an event. It reports false when the queue is full: the
// caller then ends the stream. Events pushed after the end are dropped,
// since the router re-reads what it missed when it comes back.
func (st *stream) push(ev *pb.AttachEvent) bool {
	n := eventBytes(ev)
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return true
	}
	if len(st.queue) >= st.maxEvents || st.bytes+n > st.maxBytes {
		st.mu.Unlock()
		return false
	}
	st.queue = append(st.queue, ev)
	st.bytes += n
	st.mu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return true
}

// take empties the queue.
func (st *stream) take() []*pb.AttachEvent {
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queue
	st.queue, st.bytes = nil, 0
	return q
}

// end tells the stream's handler to send what is queued, then the
// redirect, and finish.
func (st *stream) end(redirect *pb.Redirect) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.endLocked(redirect)
}

func (st *stream) endLocked(redirect *pb.Redirect) bool {
	if st.ended {
		return false
	}
	st.ended = true
	st.final = &pb.AttachEvent{Kind: &pb.AttachEvent_Redirect{Redirect: redirect}}
	close(st.closed)
	return true
}

// endSlow ends the stream because its router fell behind; false when it
// had already ended.
func (st *stream) endSlow(redirect *pb.Redirect) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.slow = st.slow || !st.ended
	return st.endLocked(redirect)
}

// droppedSlow reports whether the stream was ended by endSlow.
func (st *stream) droppedSlow() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.slow
}

// queued is how many events wait.
func (st *stream) queued() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.queue)
}

// eventBytes estimates what an event holds, to bound a queue in bytes
// without encoding every event twice.
func eventBytes(ev *pb.AttachEvent) int {
	const overhead = 32
	switch k := ev.Kind.(type) {
	case *pb.AttachEvent_Message:
		return messageBytes(k.Message)
	case *pb.AttachEvent_Page:
		n := overhead
		for _, m := range k.Page.Messages {
			n += messageBytes(m)
		}
		return n
	case *pb.AttachEvent_Presence:
		n := overhead + len(k.Presence.Name)
		for _, u := range k.Presence.Users {
			n += len(u) + 2
		}
		return n
	default:
		return overhead
	}
}

func messageBytes(m *pb.ChatMessage) int {
	return 32 + len(m.Name) + len(m.Text) + len(m.ClientId)
}
