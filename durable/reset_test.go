package durable

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// counter keeps its count in memory, loaded from storage: the kind of
// state a failed commit must not leave behind.
type counter struct {
	n     int
	loads *int
	// blocked is told when an event's BlockConcurrencyWhile has run.
	blocked chan<- struct{}
}

func (c *counter) Load(_ context.Context, s *State) error {
	*c.loads++
	n, _, err := GetJSON[int](s.Storage(), "n")
	c.n = n
	return err
}

func (c *counter) Call(_ context.Context, s *State, method string, _ []byte) ([]byte, error) {
	switch method {
	case "inc":
		c.n++
		if err := PutJSON(s.Storage(), "n", c.n); err != nil {
			return nil, err
		}
	case "inc-then-block-ok", "inc-then-block-fail", "inc-then-block-panic", "inc-swallow-block-fail":
		// The count moves in memory and in storage, then a rebuild runs
		// under BlockConcurrencyWhile.
		c.n++
		if err := PutJSON(s.Storage(), "n", c.n); err != nil {
			return nil, err
		}
		err := s.BlockConcurrencyWhile(func() error {
			switch method {
			case "inc-then-block-fail", "inc-swallow-block-fail":
				return errors.New("rebuild failed")
			case "inc-then-block-panic":
				panic("rebuild panicked")
			}
			return nil
		})
		if c.blocked != nil {
			c.blocked <- struct{}{}
		}
		if err != nil && method != "inc-swallow-block-fail" {
			return nil, err
		}
	}
	return []byte(strconv.Itoa(c.n)), nil
}

func counterRig(t *testing.T) (*rig, *int) {
	loads := new(int)
	ns, _ := NewNamespace("Counter")
	r := &rig{t: t, c: newFakeCommitter(), clock: newFakeClock(), id: ns.IDFromName("c"), out: make(chan Message, 1)}
	r.blocked = make(chan struct{}, 100)
	a, err := Start(r.id, func() Object { return &counter{loads: loads, blocked: r.blocked} }, Config{Reader: r.c, Committer: r.c, Clock: r.clock, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	r.a = a
	return r, loads
}

func (r *rig) count(method string) (string, error) {
	out, err := r.a.Call(context.Background(), method, nil)
	return string(out), err
}

func TestFailedCommitRenewsTheInstance(t *testing.T) {
	r, loads := counterRig(t)
	if n, err := r.count("inc"); err != nil || n != "1" {
		t.Fatalf("inc: %q %v", n, err)
	}
	r.c.setFail(errDisk)
	if _, err := r.count("inc"); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("inc with a failing disk: %v", err)
	}
	r.c.setFail(nil)
	// The instance that counted to 2 in memory is gone; its successor
	// loaded 1 from the store.
	if n, err := r.count("get"); err != nil || n != "1" {
		t.Fatalf("after a failed commit the object counts %q (%v), want the committed 1", n, err)
	}
	if *loads != 2 {
		t.Fatalf("%d loads, want 2", *loads)
	}
}

func TestAmbiguousCommitIsReadBack(t *testing.T) {
	r, _ := counterRig(t)
	// The batch lands, but the committer reports a failure (a Raft
	// proposal that failed over and was committed by the next leader).
	r.c.mu.Lock()
	r.c.failErr, r.c.lie = errDisk, true
	r.c.mu.Unlock()
	if _, err := r.count("inc"); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("inc: %v", err)
	}
	r.c.mu.Lock()
	r.c.failErr, r.c.lie = nil, false
	r.c.mu.Unlock()
	if n, err := r.count("get"); err != nil || n != "1" {
		t.Fatalf("the object reads %q (%v), want the 1 that landed", n, err)
	}
	// Its version was read back too: it can commit again.
	if n, err := r.count("inc"); err != nil || n != "2" {
		t.Fatalf("inc after an ambiguous commit: %q %v", n, err)
	}
}

func TestObjectThatCannotReloadStops(t *testing.T) {
	loads := 0
	ns, _ := NewNamespace("Counter")
	c := newFakeCommitter()
	a, err := Start(ns.IDFromName("c"), func() Object {
		loads++
		if loads > 1 {
			return &failingLoad{}
		}
		return &counter{loads: new(int)}
	}, Config{Reader: c, Committer: c, Clock: newFakeClock(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c.setFail(errDisk)
	if _, err := a.Call(context.Background(), "inc", nil); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("inc: %v", err)
	}
	recv(t, a.Done(), "the actor to stop")
	if err := a.Close(); !errors.Is(err, errCannotLoad) {
		t.Fatalf("Close of an actor that could not reload: %v", err)
	}
	if _, err := a.Call(context.Background(), "get", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call on a stopped actor: %v", err)
	}
}

var errCannotLoad = errors.New("cannot load")

type failingLoad struct{}

func (failingLoad) Load(context.Context, *State) error { return errCannotLoad }

// TestBlockConcurrencyWhileResetsOnFailure: a BlockConcurrencyWhile whose
// function fails (an error or a panic) resets the object as Cloudflare's
// does: the instance is replaced once the event ends and the next event
// runs on a fresh one loaded from what is committed. An event that returns
// the error commits nothing; one that swallows it commits its writes, and
// the instance is reset all the same. One that succeeds changes nothing.
func TestBlockConcurrencyWhileResetsOnFailure(t *testing.T) {
	r, loads := counterRig(t)
	if n, err := r.count("inc-then-block-ok"); err != nil || n != "1" || *loads != 1 {
		t.Fatalf("a block that succeeds: %q %v, %d loads", n, err, *loads)
	}
	for _, method := range []string{"inc-then-block-fail", "inc-then-block-panic"} {
		_, err := r.count(method)
		if !errors.Is(err, ErrObjectReset) {
			t.Fatalf("%s: %v; want ErrObjectReset", method, err)
		}
		if method == "inc-then-block-panic" {
			var pe *PanicError
			if !errors.As(err, &pe) || len(pe.Stack) == 0 {
				t.Fatalf("%s: %v; want a PanicError with its stack", method, err)
			}
		}
		// The in-memory 2 is gone with the instance; the event's write went
		// with its error.
		if n, err := r.count("get"); err != nil || n != "1" {
			t.Fatalf("after %s the object counts %q (%v), want the committed 1", method, n, err)
		}
	}
	if *loads != 3 {
		t.Fatalf("%d loads after two resets, want 3", *loads)
	}
	// Swallowed: the write stands, the instance is still replaced.
	if n, err := r.count("inc-swallow-block-fail"); err != nil || n != "2" {
		t.Fatalf("inc-swallow-block-fail: %q %v", n, err)
	}
	if n, err := r.count("get"); err != nil || n != "2" || *loads != 4 {
		t.Fatalf("after a swallowed failure: %q %v, %d loads; want 2 and 4 loads", n, err, *loads)
	}
}

// TestResetWaitsForCommitsInFlight: a BlockConcurrencyWhile fails while an
// earlier event's batch is still committing, and that commit then fails.
// The new instance loads only once the commit is settled, from storage as
// reloaded after the failure: the actor goes on, it is not stopped by a
// Load that met the failure.
func TestResetWaitsForCommitsInFlight(t *testing.T) {
	r, loads := counterRig(t)
	r.c.setHold(true)
	first := make(chan error, 1)
	go func() { _, err := r.count("inc"); first <- err }()
	r.c.waitAsked(t)
	second := make(chan error, 1)
	go func() { _, err := r.count("inc-then-block-fail"); second <- err }()
	// The failed block ran; its error waits for the held commit, as any
	// output does, and the actor renews the instance meanwhile.
	select {
	case <-r.blocked:
	case <-time.After(testWait):
		t.Fatal("the block never ran")
	}
	r.c.setHold(false)
	r.c.release(t, errDisk)
	if err := <-first; !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("the held inc: %v; want ErrNotCommitted", err)
	}
	if err := <-second; !errors.Is(err, ErrObjectReset) && !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("the failed block: %v", err)
	}
	if n, err := r.count("get"); err != nil || n != "0" {
		t.Fatalf("after the reset and the failed commit the object counts %q (%v); want 0, and a live actor", n, err)
	}
	if *loads < 2 {
		t.Fatalf("%d loads, want the instance replaced", *loads)
	}
}
