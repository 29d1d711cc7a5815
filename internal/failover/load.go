package failover

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"hellochat/internal/chatclient"
)

// sent is one message a client sent, with what happened to it.
type sent struct {
	at    time.Time
	acked time.Time
	seq   uint64
	ts    int64 // the ack's server timestamp
	// refused is the code of the error frame the server answered the
	// message with instead of an ack: the one way it may go unacknowledged.
	refused string
}

// client is one simulated browser: it sends at a steady rate and records
// every ack and every message it is shown.
type client struct {
	room, name string
	cc         *chatclient.Client

	mu    sync.Mutex
	sends map[string]*sent // by client id
	order []string         // ids in send order
	seen  []seenMsg        // messages shown, in arrival order
	// stray are error frames about nothing the client sent (or about a
	// message it already had acknowledged): a browser would show them, so
	// the load must not pass over them.
	stray    []string
	closedAt time.Time
}

type seenMsg struct {
	seq uint64
	id  string
	ts  int64
}

// sendTimeout bounds one message's write.
const sendTimeout = 5 * time.Second

// send sends until ctx ends. Ending ctx stops new sends only: the write
// under way finishes under its own timeout, because the WebSocket library
// closes a connection whose write's context ends, and a browser never
// gives up a frame half written.
func (cl *client) send(ctx context.Context, rate float64) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if ctx.Err() != nil {
			return // both were ready, and select took the tick
		}
		id := fmt.Sprintf("%s-%d", cl.name, n)
		cl.mu.Lock()
		cl.sends[id] = &sent{at: time.Now()}
		cl.order = append(cl.order, id)
		cl.mu.Unlock()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
		err := cl.cc.Post(wctx, id, "load "+id)
		cancel()
		if err != nil {
			return
		}
	}
}

func (cl *client) read() {
	for {
		select {
		case f := <-cl.cc.Frames:
			cl.take(f)
		case <-cl.cc.Closed:
			// The connection queues every frame before it closes: take
			// those still queued, or the last messages would look missed.
			for more := true; more; {
				select {
				case f := <-cl.cc.Frames:
					cl.take(f)
				default:
					more = false
				}
			}
			cl.mu.Lock()
			cl.closedAt = time.Now()
			cl.mu.Unlock()
			return
		}
	}
}

// take records one frame from the server.
func (cl *client) take(f chatclient.Frame) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch f.Type {
	case "ack":
		if s := cl.sends[f.ID]; s != nil && s.acked.IsZero() {
			s.acked, s.seq, s.ts = time.Now(), f.Seq, f.TS
		}
	case "message":
		cl.seen = append(cl.seen, seenMsg{seq: f.Seq, id: f.ID, ts: f.TS})
	case "error":
		if s := cl.sends[f.ID]; f.ID != "" && s != nil && s.acked.IsZero() && s.refused == "" {
			s.refused = f.Code
			return
		}
		cl.stray = append(cl.stray, fmt.Sprintf("%s/%s got %s", cl.room, cl.name, f.Raw))
	}
}

// lastSeen is the highest seq the client was shown.
func (cl *client) lastSeen() uint64 {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.seen) == 0 {
		return 0
	}
	return cl.seen[len(cl.seen)-1].seq
}

func (cl *client) firstAckAfter(t0 time.Time) time.Time {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var first time.Time
	for i := len(cl.order) - 1; i >= 0; i-- {
		s := cl.sends[cl.order[i]]
		if s.at.Before(t0) {
			break
		}
		if !s.acked.IsZero() && (first.IsZero() || s.acked.Before(first)) {
			first = s.acked
		}
	}
	return first
}

// acks counts the client's acknowledged messages.
func (cl *client) acks() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	n := 0
	for _, s := range cl.sends {
		if !s.acked.IsZero() {
			n++
		}
	}
	return n
}

func unacked(clients []*client) int {
	return unackedBefore(clients, time.Time{})
}

// unackedBefore counts messages sent before t (any time, if t is zero)
// that have no ack yet and were not refused either.
func unackedBefore(clients []*client, t time.Time) int {
	n := 0
	for _, cl := range clients {
		cl.mu.Lock()
		for _, s := range cl.sends {
			if s.acked.IsZero() && s.refused == "" && (t.IsZero() || s.at.Before(t)) {
				n++
			}
		}
		cl.mu.Unlock()
	}
	return n
}

// waitSteady waits until every client has had a few messages acknowledged:
// the load is flowing everywhere.
func waitSteady(ctx context.Context, clients []*client, acks int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		slow := ""
		for _, cl := range clients {
			if cl.acks() < acks {
				slow = cl.name
				break
			}
		}
		if slow == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("failover: client %s had fewer than %d messages acknowledged within %v", slow, acks, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitWritable waits until each affected room has acked a message that
// was sent after t0, and returns the time the last of them took.
func waitWritable(byRoom map[string][]*client, rooms []string, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := t0.Add(timeout)
	for {
		worst, missing := time.Duration(0), ""
		for _, room := range rooms {
			first := time.Time{}
			for _, cl := range byRoom[room] {
				if at := cl.firstAckAfter(t0); !at.IsZero() && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			if first.IsZero() {
				missing = room
				break
			}
			worst = max(worst, first.Sub(t0))
		}
		if missing == "" {
			return worst, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("room %s accepted no write within %v", missing, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stall is the longest pause of writes some room saw during a step.
type stall struct {
	gap     time.Duration // longest time between two consecutive acks of a room
	gapRoom string
	lat     time.Duration // longest a message sent during the step waited for its ack
	latRoom string
}

// worst is the larger of the two figures.
func (s stall) worst() time.Duration { return max(s.gap, s.lat) }

// measureStall measures writes during [t0, t1]. A room's gaps count from
// its last ack before t0 to t1, so a room that stopped being acknowledged
// shows the whole silence; a message sent in the window and not acked by
// the time of the measurement counts as waiting until now. Call it once
// the messages sent before t1 had a chance to be acknowledged
// (waitAcked).
func measureStall(byRoom map[string][]*client, t0, t1 time.Time) stall {
	now := time.Now()
	var st stall
	for room, cls := range byRoom {
		var acks []time.Time
		var lastBefore time.Time
		for _, cl := range cls {
			cl.mu.Lock()
			for _, s := range cl.sends {
				if !s.acked.IsZero() {
					switch {
					case s.acked.Before(t0):
						if s.acked.After(lastBefore) {
							lastBefore = s.acked
						}
					case !s.acked.After(t1):
						acks = append(acks, s.acked)
					}
				}
				if s.at.Before(t0) || s.at.After(t1) {
					continue
				}
				lat := now.Sub(s.at)
				if !s.acked.IsZero() {
					lat = s.acked.Sub(s.at)
				}
				if lat > st.lat {
					st.lat, st.latRoom = lat, room
				}
			}
			cl.mu.Unlock()
		}
		sort.Slice(acks, func(i, j int) bool { return acks[i].Before(acks[j]) })
		prev := lastBefore
		if prev.IsZero() {
			prev = t0
		}
		for _, a := range append(acks, t1) {
			if g := a.Sub(prev); g > st.gap {
				st.gap, st.gapRoom = g, room
			}
			prev = a
		}
	}
	return st
}

// waitAcked waits (up to timeout) until every message sent before t has
// its ack.
func waitAcked(clients []*client, t time.Time, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for unackedBefore(clients, t) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}
