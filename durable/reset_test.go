package durable

import (
	"context"
	"errors"
	"strconv"
	"testing"
)

// counter keeps its count in memory, loaded from storage: the kind of
// state a failed commit must not leave behind.
type counter struct {
	n     int
	loads *int
}

func (c *counter) Load(_ context.Context, s *State) error {
	*c.loads++
	n, _, err := GetJSON[int](s.Storage(), "n")
	c.n = n
	return err
}

func (c *counter) Call(_ context.Context, s *State, method string, _ []byte) ([]byte, error) {
	if method == "inc" {
		c.n++
		if err := PutJSON(s.Storage(), "n", c.n); err != nil {
			return nil, err
		}
	}
	return []byte(strconv.Itoa(c.n)), nil
}

func counterRig(t *testing.T) (*rig, *int) {
	loads := new(int)
	ns, _ := NewNamespace("Counter")
	r := &rig{t: t, c: newFakeCommitter(), clock: newFakeClock(), id: ns.IDFromName("c"), out: make(chan Message, 1)}
	a, err := Start(r.id, func() Object { return &counter{loads: loads} }, Config{Reader: r.c, Committer: r.c, Clock: r.clock, Logger: quiet})
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
