package router

import "sync"

// fifoKeep is the most capacity an empty fifo keeps; a burst's larger
// backing array is let go once the burst is through.
const fifoKeep = 64

// fifo is a bounded queue with a buffered channel's semantics (push waits
// while full, one item taken at a time) whose memory follows what waits in
// it. A channel of the same bound allocates all of it up front: for a
// relay's two queues that was about 160 KiB in every room, busy or idle.
type fifo[T any] struct {
	max   int
	ready chan struct{} // capacity 1: an item waits
	room  chan struct{} // capacity 1: a push that found the queue full may retry

	mu      sync.Mutex
	items   []T
	head    int // items before head are taken
	waiting int // pushes waiting for room
}

func newFIFO[T any](max int) *fifo[T] {
	return &fifo[T]{max: max, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// tryPush adds v unless the queue is full.
func (q *fifo[T]) tryPush(v T) bool {
	q.mu.Lock()
	if len(q.items)-q.head >= q.max {
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
	signal(q.ready)
	return true
}

// push adds v, waiting while the queue is full; false if done closed first.
func (q *fifo[T]) push(v T, done <-chan struct{}) bool {
	if q.tryPush(v) {
		return true
	}
	q.mu.Lock()
	q.waiting++
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.waiting--
		more := q.waiting > 0 && len(q.items)-q.head < q.max
		q.mu.Unlock()
		if more {
			signal(q.room) // the next waiter may fit too
		}
	}()
	for {
		select {
		case <-q.room:
		case <-done:
			return false
		}
		if q.tryPush(v) {
			return true
		}
	}
}

// pop takes the oldest item, if any; ready is signalled again while more
// wait, so a select loop takes them one per turn, as from a channel.
func (q *fifo[T]) pop() (T, bool) {
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
		if cap(q.items) > fifoKeep {
			q.items = nil
		}
	}
	waiters := q.waiting > 0
	q.mu.Unlock()
	if more {
		signal(q.ready)
	}
	if waiters {
		signal(q.room)
	}
	return v, true
}

// len is how many items wait.
func (q *fifo[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) - q.head
}

// signal marks a capacity-1 channel without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
