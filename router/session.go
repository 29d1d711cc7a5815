package router

import (
	"fmt"
	"hellochat/apps/chat/wire"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
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
	proto      wire.Protocol
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
	return s.proto == wire.Seed && strings.HasPrefix(clientID, s.seedPrefix)
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
