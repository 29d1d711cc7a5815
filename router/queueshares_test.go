package router

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// stalledSession is a session on a real socket whose writer never runs,
// so what it is sent stays queued: a browser that does not read.
func stalledSession(t *testing.T, shares queueShares) (*session, *websocket.Conn) {
	t.Helper()
	s, client := sessionPair(t)
	s.writerOn = true
	s.shares = shares
	return s, client
}

// closeOf reads the client end until the server closes it.
func closeOf(t *testing.T, client *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := client.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("the connection ended with %v, not a close", err)
		}
		return ce
	}
}

func wantUsed(t *testing.T, what string, b *queueBudget, want int64) {
	t.Helper()
	if got := b.used.Load(); got != want {
		t.Fatalf("%s: %d bytes counted, want %d", what, got, want)
	}
}

// Queued bytes count against the address's share and the router's budget
// from enqueue until they are written or their session is killed; a frame
// that does not fit its address's share closes its session (1008), and
// counts nowhere.
func TestQueuedBytesSharePerAddress(t *testing.T) {
	rtq, addr := &queueBudget{limit: 1 << 20}, &queueBudget{limit: 10000}
	shares := queueShares{router: rtq, addr: addr}
	frame := bytes.Repeat([]byte("a"), 3000)

	s1, c1 := stalledSession(t, shares)
	for range 3 {
		s1.enqueue(frame)
	}
	wantUsed(t, "address, three frames queued", addr, 9000)
	wantUsed(t, "router, three frames queued", rtq, 9000)

	s2, c2 := stalledSession(t, shares)
	s2.enqueue(frame)
	ce := closeOf(t, c2)
	if ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "for your address (max 10000)") {
		t.Fatalf("the session past its address's share closed with %d %q", ce.Code, ce.Reason)
	}
	wantUsed(t, "address, after the refused frame", addr, 9000)
	wantUsed(t, "router, after the refused frame", rtq, 9000)
	if s2.enqueue(frame); s2.qbytes != 0 {
		t.Fatalf("a killed session queued %d bytes", s2.qbytes)
	}

	s1.kill(websocket.StatusNormalClosure, "")
	wantUsed(t, "address, its session killed", addr, 0)
	wantUsed(t, "router, its session killed", rtq, 0)
	closeOf(t, c1)

	// A session that reads gives its bytes back as they are written.
	s3, msgs := socketPair(t)
	s3.shares = shares
	for range 3 {
		s3.enqueue(frame)
	}
	readN(t, msgs, 3)
	// The writer gives them back just after its write returns.
	deadline := time.Now().Add(10 * time.Second)
	for addr.used.Load() != 0 || rtq.used.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("written, and still counted: %d for the address, %d for the router", addr.used.Load(), rtq.used.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// When the router's budget is spent, a browser that keeps up (its writer
// has taken all but QueuedBytesFloor of its queue, and is not stuck on a
// batch) still gets its frames; the others are closed as slow consumers.
func TestQueuedBytesRouterBudget(t *testing.T) {
	rtq := &queueBudget{limit: 5000}
	shares := queueShares{router: rtq}
	frame := bytes.Repeat([]byte("b"), 3000)

	slow, slowClient := stalledSession(t, shares)
	slow.enqueue(frame)
	keeping, keepingClient := stalledSession(t, shares)
	keeping.enqueue(frame) // past the budget, but little waits for it
	wantUsed(t, "router, a frame each", rtq, 6000)

	slow.enqueue(bytes.Repeat([]byte("c"), QueuedBytesFloor))
	ce := closeOf(t, slowClient)
	if ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, "router has 6000 bytes queued for browsers (max 5000)") {
		t.Fatalf("the slow session closed with %d %q", ce.Code, ce.Reason)
	}
	wantUsed(t, "router, the slow session killed", rtq, 3000)
	if keeping.isClosed() {
		t.Fatal("the session with little waiting was closed")
	}

	// A browser whose writer has been stuck on a batch for
	// StuckWriteAfter does not keep up, however little waits besides.
	stuck, stuckClient := stalledSession(t, shares)
	stuck.enqueue(frame)
	stuck.take()
	stuck.qmu.Lock()
	stuck.takenAt = time.Now().Add(-StuckWriteAfter)
	stuck.qmu.Unlock()
	stuck.enqueue([]byte("small"))
	if ce := closeOf(t, stuckClient); ce.Code != websocket.StatusPolicyViolation {
		t.Fatalf("the stuck session closed with %d %q", ce.Code, ce.Reason)
	}
	wantUsed(t, "router, the stuck session killed", rtq, 3000)

	keeping.kill(websocket.StatusNormalClosure, "")
	closeOf(t, keepingClient)
	wantUsed(t, "router, all killed", rtq, 0)
}

// A reservation never shows in the count unless it fits, also while many
// race for the last bytes of a budget.
func TestQueueBudgetNeverOverLimit(t *testing.T) {
	b := &queueBudget{limit: 1000}
	const workers, tries = 8, 2000
	done := make(chan int, workers)
	for range workers {
		go func() {
			got := 0
			for range tries {
				if b.reserve(7, false) {
					if u := b.used.Load(); u > b.limit {
						t.Errorf("count %d past the limit", u)
					}
					b.release(7)
					got++
				}
			}
			done <- got
		}()
	}
	for range workers {
		<-done
	}
	wantUsed(t, "after every release", b, 0)
}

// BenchmarkEnqueue is what counting queued bytes costs a relay's fan-out:
// a frame queued and taken, counted against nothing or against an
// address's share and the router's budget.
func BenchmarkEnqueue(b *testing.B) {
	frame := bytes.Repeat([]byte("m"), 200)
	for _, bb := range []struct {
		name   string
		shares queueShares
	}{
		{"uncounted", queueShares{}},
		{"counted", queueShares{router: &queueBudget{limit: 1 << 30}, addr: &queueBudget{limit: 64 << 20}}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			s := &session{writerOn: true, closed: make(chan struct{}), shares: bb.shares}
			for b.Loop() {
				s.enqueue(frame)
				s.take()
				s.written()
			}
		})
	}
}
