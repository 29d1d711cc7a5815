package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	"hellochat/apps"
)

// While every socket of an object here has HeldQueueBytes waiting for its
// browser, the object's read loops wait (objectFlow.wait); one socket
// written down to QueuedBytesFloor lets them go. One socket behind while
// another keeps up holds nobody, and a socket that ends stops counting.
func TestObjectFlowHoldsReadsWhileAllSocketsAreBehind(t *testing.T) {
	g := testGateway()
	g.flows = map[objectKey]*objectFlow{}
	open := func() *gatewaySocket {
		s, ok := g.open(testObject, "", queueShares{}, apps.SocketPolicy{})
		if !ok {
			t.Fatal("the gateway refused a socket")
		}
		return s
	}
	a, b := open(), open()
	if a.flow != b.flow || a.flow == nil {
		t.Fatal("two sockets of one object do not share a flow")
	}
	fill := func(s *gatewaySocket) { s.push(outFrame{data: make([]byte, HeldQueueBytes), text: true}) }
	drain := func(s *gatewaySocket) {
		frames := s.take()
		n := 0
		for _, f := range frames {
			n += len(f.data)
		}
		s.written(n)
	}
	wait := func() <-chan struct{} {
		done := make(chan struct{})
		go func() {
			a.flow.wait(context.Background(), &g.rt.held)
			close(done)
		}()
		return done
	}
	returns := func(what string, done <-chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the read still waits", what)
		}
	}
	held := func(what string, want uint64, done <-chan struct{}) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for g.rt.held.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d holds, want %d", what, g.rt.held.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
		select {
		case <-done:
			t.Fatalf("%s: the read went on", what)
		default:
		}
	}

	fill(a)
	returns("one socket of two behind", wait())
	fill(b)
	done := wait()
	held("both behind", 1, done)
	drain(a)
	returns("one written down", done)

	fill(a)
	done = wait()
	held("both behind again", 2, done)
	b.discardQueue() // b ends, as its read loop's end does
	g.forget(b)
	held("b gone, a still behind", 2, done)
	drain(a)
	returns("a written down", done)
	if got := fmt.Sprint(a.flow.sockets, a.flow.behind); got != "1 0" {
		t.Fatalf("flow counts sockets, behind: %s, want 1 0", got)
	}
	a.discardQueue()
	g.forget(a)
	if len(g.flows) != 0 {
		t.Fatalf("%d flows left after the object's last socket ended", len(g.flows))
	}
}
