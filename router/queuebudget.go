package router

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Bounds on the bytes a router holds for browsers that read slower than
// their objects send. MaxGatewaySocketQueueBytes bounds one browser; these
// bound the sum, so that many slow connections cannot hold the router's
// memory between them: DefaultMaxConnsPerAddr connections of one address
// at MaxGatewaySocketQueueBytes each would be 2 GiB. Each is a default of a Config
// field and a flag; docs/protocol.md lists them.
const (
	// DefaultQueuedBytesBudget bounds the bytes waiting to be written to
	// all of a router's browsers together (--queued-bytes-budget). Browsers
	// that keep up hold a few KiB each between writes, so a router reaches
	// it only when many of its browsers stop reading at once.
	DefaultQueuedBytesBudget = 1 << 30
	// DefaultQueuedBytesPerAddr is the share of the budget the browsers
	// of one client address may hold together (--queued-bytes-per-addr;
	// raise it behind a proxy that hides addresses).
	DefaultQueuedBytesPerAddr = 64 << 20
	// QueuedBytesFloor and StuckWriteAfter say which browsers keep up:
	// those whose writer has taken all but QueuedBytesFloor of their
	// queue (the new frame included) and has not been on one batch for
	// StuckWriteAfter. Their frames are queued even when the router's
	// budget is spent. A browser that reads has its frames taken as they
	// come, a few at a time or one commit's burst, and each batch written
	// in moments; one that does not read has its writer stuck on a batch
	// while the rest piles up. So browsers that read are not closed for
	// those that do not, and the slow ones are closed as their next
	// frames come and give the budget back. The router's total may pass
	// its budget by what browsers that keep up hold: at most twice the
	// floor each (what waits, and the batch being written). An address's
	// share has no floor: its browsers are its own.
	QueuedBytesFloor = 256 << 10
	StuckWriteAfter  = time.Second
)

// maxReserveTries bounds the compare-and-swap retries of one reservation.
// A retry means another reservation or release changed the count in
// between, so running out takes a hundred others landing in the few
// nanoseconds of each try; the frame is then refused as if it did not
// fit, which errs on the side of the router's memory.
const maxReserveTries = 100

// queueBudget counts the bytes queued for a set of browsers (all of a
// router's, or those of one address) against a limit. Streams from nodes
// queue and sockets' writers release concurrently, so it is an atomic,
// never a lock every frame would take. A reservation that does not fit is never
// counted, not even for a moment, so the count passes the limit only by
// what was forced past it (QueuedBytesFloor).
type queueBudget struct {
	limit int64 // 0: unbounded
	used  atomic.Int64
}

// reserve counts n more bytes if they fit, and reports whether they did;
// with force it counts them whether or not.
func (b *queueBudget) reserve(n int64, force bool) bool {
	if b.limit <= 0 || force {
		b.used.Add(n)
		return true
	}
	for range maxReserveTries {
		cur := b.used.Load()
		if cur+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
	return false
}

// release uncounts n bytes reserve counted.
func (b *queueBudget) release(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// addrState is what a router keeps per client address: its connections,
// and the bytes queued for them.
type addrState struct {
	conns  int // guarded by Router.mu
	queued queueBudget
}

// queueShares are the budgets a socket's queued bytes count against; nil
// ones (sockets made by hand in tests) count nowhere.
type queueShares struct {
	router, addr *queueBudget
}

// reserve counts a frame of n bytes against the address's share and the
// router's budget, or against neither; when they do not fit it returns
// the refusal reason (for the metric) and what to tell the browser.
// keepsUp, asked only when the router's budget is spent, says whether the
// socket may go past it (see QueuedBytesFloor).
func (q queueShares) reserve(n int64, keepsUp func() bool) (reason, why string) {
	if q.addr != nil && !q.addr.reserve(n, false) {
		return reasonQueuedPerAddr, fmt.Sprintf("slow consumer: %d bytes queued for your address (max %d)",
			q.addr.used.Load(), q.addr.limit)
	}
	if q.router != nil && !q.router.reserve(n, false) && !q.router.reserve(n, keepsUp()) {
		if q.addr != nil {
			q.addr.release(n)
		}
		return reasonQueuedBudget, fmt.Sprintf("slow consumer: router has %d bytes queued for browsers (max %d)",
			q.router.used.Load(), q.router.limit)
	}
	return "", ""
}

func (q queueShares) release(n int64) {
	if q.addr != nil {
		q.addr.release(n)
	}
	if q.router != nil {
		q.router.release(n)
	}
}
