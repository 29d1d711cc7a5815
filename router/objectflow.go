package router

import (
	"context"
	"sync"
	"sync/atomic"

	"hellochat/durable"
)

// HeldQueueBytes: when every browser of an object on this router has
// this much waiting to be written to it, it is the router, or the machine
// it shares, that cannot keep up, not one slow browser. The router then
// stops reading that object's browsers, so that they slow down instead
// of being closed at MaxGatewaySocketQueueBytes, until one of them is
// down to QueuedBytesFloor. One browser that falls behind while others
// of its object keep up is still closed: it must not slow the rest.
const HeldQueueBytes = 1 << 20

// objectFlow is what the router knows of one object's sockets: how many
// are here and how many are behind (HeldQueueBytes waiting, not yet back
// to QueuedBytesFloor). The gateway keeps one per object with sockets
// here; mu guards the counts, which each socket's queue moves.
type objectFlow struct {
	mu      sync.Mutex
	sockets int
	behind  int
	// clear, when not nil, is closed once not every socket is behind.
	clear chan struct{}
}

// join counts a new socket, which is not behind; g.mu is held.
func (f *objectFlow) join() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sockets++
	f.release()
}

// leave uncounts an ended socket (no longer behind), and reports whether
// none is left; g.mu is held.
func (f *objectFlow) leave() (empty bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sockets--
	f.release()
	return f.sockets == 0
}

// mark counts a socket falling behind or catching up.
func (f *objectFlow) mark(behind bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if behind {
		f.behind++
		return
	}
	f.behind--
	f.release()
}

// release wakes the held readers once not every socket is behind; mu is
// held.
func (f *objectFlow) release() {
	if f.clear != nil && f.behind < f.sockets {
		close(f.clear)
		f.clear = nil
	}
}

// wait returns once not every socket of the object is behind, or ctx
// ends; held counts the waits.
func (f *objectFlow) wait(ctx context.Context, held *atomic.Uint64) {
	f.mu.Lock()
	if f.behind < f.sockets {
		f.mu.Unlock()
		return
	}
	if f.clear == nil {
		f.clear = make(chan struct{})
	}
	clear := f.clear
	f.mu.Unlock()
	held.Add(1)
	select {
	case <-clear:
	case <-ctx.Done():
	}
}

// objectKey names an object whichever way its ID was made.
type objectKey struct{ class, id string }

func keyOf(id durable.ID) objectKey { return objectKey{id.Namespace(), id.String()} }

// joinFlow counts s in its object's flow, made for its first socket;
// g.mu is held.
func (g *gateway) joinFlow(s *gatewaySocket) {
	k := keyOf(s.object)
	f := g.flows[k]
	if f == nil {
		f = &objectFlow{}
		g.flows[k] = f
	}
	f.join()
	s.flow = f
}

// leaveFlow uncounts s, which ended and is no longer behind (discardQueue),
// and forgets its object's flow with its last socket; g.mu is held.
func (g *gateway) leaveFlow(s *gatewaySocket) {
	if s.flow != nil && s.flow.leave() {
		delete(g.flows, keyOf(s.object))
	}
}
