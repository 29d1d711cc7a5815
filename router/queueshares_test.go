package router

import (
	"bytes"
	"context"
	"errors"
	"hellochat/apps"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// lastQueued is the newest frame waiting in s's queue.
func lastQueued(t *testing.T, s *gatewaySocket) outFrame {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		t.Fatal("nothing queued")
	}
	return s.queue[len(s.queue)-1]
}

// wantClosedWith checks that s's queue ends with a close frame of code
// whose reason holds reason.
func wantClosedWith(t *testing.T, what string, s *gatewaySocket, code websocket.StatusCode, reason string) {
	t.Helper()
	if f := lastQueued(t, s); !f.close || f.code != int(code) || !strings.Contains(f.reason, reason) {
		t.Fatalf("%s: last queued %+v, want a close %d holding %q", what, f, code, reason)
	}
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
// from push until they are written or their socket ends; a frame that
// does not fit its address's share closes its socket (1008), and counts
// nowhere.
func TestQueuedBytesSharePerAddress(t *testing.T) {
	rtq, addr := &queueBudget{limit: 1 << 20}, &queueBudget{limit: 10000}
	shares := queueShares{router: rtq, addr: addr}
	frame := bytes.Repeat([]byte("a"), 3000)

	s1, _ := socketPair(t, shares) // its writer never runs: a browser that does not read
	for range 3 {
		s1.push(outFrame{data: frame, text: true})
	}
	wantUsed(t, "address, three frames queued", addr, 9000)
	wantUsed(t, "router, three frames queued", rtq, 9000)

	s2, _ := socketPair(t, shares)
	s2.push(outFrame{data: frame, text: true})
	wantClosedWith(t, "past its address's share", s2, websocket.StatusPolicyViolation, "for your address (max 10000)")
	wantUsed(t, "address, after the refused frame", addr, 9000)
	wantUsed(t, "router, after the refused frame", rtq, 9000)
	if s2.push(outFrame{data: frame, text: true}); s2.bytes != 0 {
		t.Fatalf("a closing socket queued %d bytes", s2.bytes)
	}

	s1.discardQueue() // as its end does
	wantUsed(t, "address, its socket ended", addr, 0)
	wantUsed(t, "router, its socket ended", rtq, 0)

	// A socket that reads gives its bytes back as they are written.
	s3, client := socketPair(t, shares)
	msgs := messages(client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s3.startWriting(ctx)
	for range 3 {
		s3.push(outFrame{data: frame, text: true})
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

	slow, _ := socketPair(t, shares)
	slow.push(outFrame{data: frame, text: true})
	keeping, _ := socketPair(t, shares)
	keeping.push(outFrame{data: frame, text: true}) // past the budget, but little waits for it
	wantUsed(t, "router, a frame each", rtq, 6000)
	if f := lastQueued(t, keeping); f.close {
		t.Fatalf("the socket with little waiting was closed: %q", f.reason)
	}

	slow.push(outFrame{data: bytes.Repeat([]byte("c"), QueuedBytesFloor), text: true})
	wantClosedWith(t, "the slow socket", slow, websocket.StatusPolicyViolation, "router has 6000 bytes queued for browsers (max 5000)")
	slow.discardQueue()
	wantUsed(t, "router, the slow socket ended", rtq, 3000)

	// A browser whose writer has been stuck on a batch for
	// StuckWriteAfter does not keep up, however little waits besides.
	stuck, _ := socketPair(t, shares)
	stuck.push(outFrame{data: frame, text: true})
	taken := stuck.take()
	stuck.mu.Lock()
	stuck.takenAt = time.Now().Add(-StuckWriteAfter)
	stuck.mu.Unlock()
	stuck.push(outFrame{data: []byte("small"), text: true})
	wantClosedWith(t, "the stuck socket", stuck, websocket.StatusPolicyViolation, "slow consumer")
	stuck.written(len(taken[0].data)) // as its write loop does when it ends
	stuck.discardQueue()
	wantUsed(t, "router, the stuck socket ended", rtq, 3000)

	keeping.discardQueue()
	wantUsed(t, "router, all ended", rtq, 0)
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

// BenchmarkPush is what counting queued bytes costs each frame a node
// sends a browser: a frame queued, taken and written, counted against
// nothing or against an address's share and the router's budget.
func BenchmarkPush(b *testing.B) {
	frame := bytes.Repeat([]byte("m"), 200)
	for _, bb := range []struct {
		name   string
		shares queueShares
	}{
		{"uncounted", queueShares{}},
		{"counted", queueShares{router: &queueBudget{limit: 1 << 30}, addr: &queueBudget{limit: 64 << 20}}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			s := newGatewaySocket(testGateway(), "r~1.1", testObject, "", bb.shares, apps.SocketPolicy{})
			for b.Loop() {
				s.push(outFrame{data: frame, text: true})
				s.take()
				s.written(len(frame))
			}
		})
	}
}
