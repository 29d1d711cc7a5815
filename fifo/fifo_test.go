package fifo

import (
	"sync"
	"testing"
	"time"
)

func TestFIFOOrderAndBound(t *testing.T) {
	q := New[int](3)
	for i := 1; i <= 3; i++ {
		if !q.TryPush(i) {
			t.Fatalf("push %d refused below the bound", i)
		}
	}
	if q.TryPush(4) {
		t.Fatal("a fourth item fit in a queue of 3")
	}
	for want := 1; want <= 3; want++ {
		if v, ok := q.Pop(); !ok || v != want {
			t.Fatalf("pop = %d %v, want %d", v, ok, want)
		}
	}
	if _, ok := q.Pop(); ok {
		t.Fatal("pop from an empty queue")
	}
}

// Pushers blocked on a full queue all get in, in turn, as the consumer
// takes items; nothing is lost or taken twice.
func TestFIFOWaitingPushers(t *testing.T) {
	q := New[int](2)
	done := make(chan struct{})
	const pushers, each = 8, 200
	var wg sync.WaitGroup
	for p := 0; p < pushers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if !q.Push(p*each+i, done, nil) {
					t.Errorf("push gave up with done open")
					return
				}
			}
		}(p)
	}
	seen := make(map[int]bool)
	deadline := time.After(30 * time.Second)
	for len(seen) < pushers*each {
		select {
		case <-q.Ready:
			v, ok := q.Pop()
			if !ok {
				continue
			}
			if seen[v] {
				t.Fatalf("item %d taken twice", v)
			}
			seen[v] = true
			if n := q.Len(); n > 2 {
				t.Fatalf("%d items wait in a queue of 2", n)
			}
		case <-deadline:
			t.Fatalf("took %d of %d items; pushers are stuck", len(seen), pushers*each)
		}
	}
	wg.Wait()
}

func TestFIFOPushGivesUpWhenDone(t *testing.T) {
	q := New[int](1)
	q.TryPush(1)
	done := make(chan struct{})
	res := make(chan bool)
	go func() { res <- q.Push(2, nil, done) }()
	close(done)
	if <-res {
		t.Fatal("push into a full queue succeeded after done closed")
	}
	if n := q.Len(); n != 1 {
		t.Fatalf("%d items wait, want 1", n)
	}
}

// Close refuses every later push, and wakes the pushes waiting on a full
// queue (each gives up), while what was queued can still be taken.
func TestFIFOClose(t *testing.T) {
	q := New[int](1)
	q.TryPush(1)
	res := make(chan bool, 3)
	for i := 0; i < 3; i++ {
		go func() { res <- q.Push(2, nil, nil) }()
	}
	q.Close()
	for i := 0; i < 3; i++ {
		if <-res {
			t.Fatal("a waiting push succeeded after Close")
		}
	}
	if v, ok := q.Pop(); !ok || v != 1 {
		t.Fatalf("Pop after Close: %v %v; want the queued 1", v, ok)
	}
	if q.TryPush(3) || q.Push(3, nil, nil) {
		t.Fatal("a push into a closed, empty queue succeeded")
	}
}

// The memory of a burst is let go once the queue empties: an idle room
// holds no buffer.
func TestFIFOReleasesBurst(t *testing.T) {
	q := New[int](10000)
	for i := 0; i < 5000; i++ {
		q.TryPush(i)
	}
	for {
		if _, ok := q.Pop(); !ok {
			break
		}
	}
	if c := cap(q.items); c > Keep {
		t.Fatalf("empty queue keeps capacity %d", c)
	}
}

// A push that finds the queue full while the consumer empties it must not
// miss the room that frees: nothing else may ever come to wake it.
func TestFIFOPushRacingLastPop(t *testing.T) {
	for i := 0; i < 20000; i++ {
		q := New[int](1)
		q.TryPush(1)
		pushed := make(chan bool)
		go func() { pushed <- q.Push(2, nil, nil) }()
		if v, ok := q.Pop(); !ok || v != 1 {
			t.Fatalf("pop = %d %v", v, ok)
		}
		select {
		case <-pushed:
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: push stuck on a queue with room", i)
		}
	}
}
