// Package fifo is a bounded queue for one consumer goroutine that holds
// memory only for what waits in it.
package fifo

import "sync"

// Keep is the most capacity an empty queue keeps; a burst's larger backing
// array is let go once the burst is through.
const Keep = 64

// Queue is a bounded queue with a buffered channel's semantics (Push waits
// while full, one item taken at a time) whose memory follows what waits in
// it. A channel of the same bound allocates all of it up front: a room's
// queues, busy or idle, cost hundreds of KiB that way.
//
// The consumer selects on Ready and then calls Pop.
type Queue[T any] struct {
	// Ready holds a token while items wait.
	Ready chan struct{}

	max  int
	room chan struct{} // capacity 1: a push that found the queue full may retry

	mu      sync.Mutex
	items   []T
	head    int  // items before head are taken
	waiting int  // pushes waiting for room
	closed  bool // no push succeeds any more
}

// New returns an empty queue that holds at most max items.
func New[T any](max int) *Queue[T] {
	return &Queue[T]{max: max, Ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// TryPush adds v unless the queue is full or closed.
func (q *Queue[T]) TryPush(v T) bool {
	q.mu.Lock()
	if q.closed || len(q.items)-q.head >= q.max {
		q.mu.Unlock()
		return false
	}
	if q.head > 0 && len(q.items) == cap(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	Signal(q.Ready)
	return true
}

// Push adds v, waiting while the queue is full; false if stop or cancel (a
// nil one never fires) closed first, or the queue is closed.
func (q *Queue[T]) Push(v T, stop, cancel <-chan struct{}) bool {
	if q.TryPush(v) {
		return true
	}
	q.mu.Lock()
	q.waiting++
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.waiting--
		more := q.waiting > 0 && (q.closed || len(q.items)-q.head < q.max)
		q.mu.Unlock()
		if more {
			Signal(q.room) // the next waiter may fit too
		}
	}()
	// Try again once counted among the waiters: a Pop between the first
	// try and the count did not signal room, but has made it.
	for !q.TryPush(v) {
		if q.isClosed() {
			return false
		}
		select {
		case <-q.room:
		case <-stop:
			return false
		case <-cancel:
			return false
		}
	}
	return true
}

// Close makes every later push fail, so that the consumer, once it has
// taken what is left, knows nothing more arrives. Waiting pushes give up.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	Signal(q.room)
}

func (q *Queue[T]) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// Pop takes the oldest item, if any; Ready is signalled again while more
// wait, so a select loop takes them one per turn, as from a channel.
func (q *Queue[T]) Pop() (T, bool) {
	var zero T
	q.mu.Lock()
	if q.head == len(q.items) {
		q.mu.Unlock()
		return zero, false
	}
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	more := q.head < len(q.items)
	if !more {
		q.items, q.head = q.items[:0], 0
		if cap(q.items) > Keep {
			q.items = nil
		}
	}
	waiters := q.waiting > 0
	q.mu.Unlock()
	if more {
		Signal(q.Ready)
	}
	if waiters {
		Signal(q.room)
	}
	return v, true
}

// Len is how many items wait.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// Signal puts a token in a capacity-1 wake-up channel such as Ready,
// unless one is there already.
func Signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
