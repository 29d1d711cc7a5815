package durable

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// methods is a testClass whose Calls dispatch on the method name.
func methods(m map[string]func(s *State) ([]byte, error)) *testClass {
	return &testClass{call: func(_ context.Context, s *State, method string, _ []byte) ([]byte, error) {
		return m[method](s)
	}}
}

func TestOutputGateHoldsUntilCommit(t *testing.T) {
	r := newRig(t, methods(map[string]func(s *State) ([]byte, error){
		"write": func(s *State) ([]byte, error) {
			if err := s.Storage().Put("k", []byte("v1")); err != nil {
				return nil, err
			}
			return []byte("done"), s.Send("peer", []byte("k is v1"))
		},
	}))
	r.c.setHold(true)
	res := r.async("write")
	r.c.waitAsked(t)
	// The batch is in the committer's hands: nothing of the event may be
	// visible yet, neither its result, nor its message, nor its write.
	mustNot(t, res, "result")
	r.noOutput()
	if _, ok := r.stored("k"); ok {
		t.Fatal("write stored before its commit was released")
	}
	r.c.release(t, nil)
	got := recv(t, res, "result")
	if got.err != nil || string(got.out) != "done" {
		t.Fatalf("result %q, %v", got.out, got.err)
	}
	if m := recv(t, r.out, "message"); m.To != "peer" || string(m.Data) != "k is v1" {
		t.Fatalf("message %+v", m)
	}
	if v, _ := r.stored("k"); v != "v1" {
		t.Fatalf("stored %q", v)
	}
}

func TestOutputGateDropsOnFailedCommit(t *testing.T) {
	r := newRig(t, &testClass{})
	if err := r.call(func(s *State) error { return s.Storage().Put("k", []byte("committed")) }); err != nil {
		t.Fatal(err)
	}
	r.c.setFail(errDisk)
	err := r.call(func(s *State) error {
		if err := s.Storage().Put("k", []byte("lost")); err != nil {
			return err
		}
		if err := s.Storage().SetAlarm(r.clock.Now().Add(time.Hour)); err != nil {
			return err
		}
		return s.Send("peer", []byte("k is lost"))
	})
	if !errors.Is(err, ErrNotCommitted) || !errors.Is(err, errDisk) {
		t.Fatalf("got %v, want ErrNotCommitted wrapping the committer's error", err)
	}
	r.noOutput()
	r.c.setFail(nil)
	// The object must not show what it failed to commit, and it must be
	// able to commit again (its version was not bumped by the failure).
	err = r.call(func(s *State) error {
		v, _, err := s.Storage().Get("k")
		if err != nil {
			return err
		}
		if string(v) != "committed" {
			t.Errorf("after a failed commit the object reads %q", v)
		}
		if at, ok := s.Storage().GetAlarm(); ok {
			t.Errorf("after a failed commit the object has an alarm at %v", at)
		}
		return s.Storage().Put("k2", []byte("x"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := r.stored("k2"); v != "x" {
		t.Fatalf("no commit after a failed one: %q", v)
	}
}

func TestFailedEventCommitsNothing(t *testing.T) {
	r := newRig(t, &testClass{})
	boom := errors.New("boom")
	err := r.call(func(s *State) error {
		s.Storage().Put("k", []byte("v"))
		s.Send("peer", []byte("hi"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	err = r.call(func(s *State) error {
		s.Storage().Put("k", []byte("v"))
		panic("handler bug")
	})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "handler bug" {
		t.Fatalf("got %v, want a PanicError", err)
	}
	r.noOutput()
	if _, ok := r.stored("k"); ok {
		t.Fatal("a failed event's write was committed")
	}
	if n := r.c.commits; n != 0 {
		t.Fatalf("%d batches committed", n)
	}
}

// While a batch is in flight, the next events run: they read its writes,
// and their outputs wait for its commit, then go in order. The writes of
// the events that ran meanwhile go to the Committer as one batch.
func TestEventsRunWhileACommitIsInFlight(t *testing.T) {
	r := newRig(t, methods(map[string]func(s *State) ([]byte, error){
		"first": func(s *State) ([]byte, error) { return nil, s.Storage().Put("k", []byte("from first")) },
		"second": func(s *State) ([]byte, error) {
			v, _, err := s.Storage().Get("k")
			if err == nil {
				err = s.Storage().Put("k2", append(v, " and second"...))
			}
			return v, err
		},
		"third": func(s *State) ([]byte, error) {
			v, _, err := s.Storage().Get("k2")
			if err == nil {
				err = s.Storage().Put("k3", []byte("third"))
			}
			return v, err
		},
		"read": func(s *State) ([]byte, error) {
			v, _, err := s.Storage().Get("k3")
			return v, err
		},
	}))
	r.c.setHold(true)
	first := r.async("first")
	r.c.waitAsked(t)
	// One after another, each taken before the next is sent: all three
	// run while the first batch is held, and none may answer.
	second := r.async("second")
	waitTaken(t, r, 1)
	third := r.async("third")
	waitTaken(t, r, 2)
	read := r.async("read")
	waitTaken(t, r, 3)
	mustNot(t, second, "second answered before the first batch was committed:")
	mustNot(t, read, "a read answered before the writes it read were committed:")
	if _, ok := r.stored("k2"); ok {
		t.Fatal("second's write stored before its commit")
	}
	r.c.release(t, nil)
	if got := recv(t, first, "first"); got.err != nil {
		t.Fatal(got.err)
	}
	// Second and third went as one batch.
	r.c.waitAsked(t)
	mustNot(t, third, "third answered before its batch was committed:")
	r.c.release(t, nil)
	for _, c := range []struct {
		res  chan callResult
		want string
	}{{second, "from first"}, {third, "from first and second"}, {read, "third"}} {
		if got := recv(t, c.res, "an answer"); got.err != nil || string(got.out) != c.want {
			t.Fatalf("got %q, %v; want %q", got.out, got.err, c.want)
		}
	}
	if n := r.c.commits; n != 2 {
		t.Fatalf("%d batches committed, want 2", n)
	}
	if v, _ := r.stored("k3"); v != "third" {
		t.Fatalf("stored k3 %q", v)
	}
}

// When the batch in flight fails, the events that ran on its writes fail
// with it: none of their writes is committed and none of their outputs
// leaves; the object is reloaded and goes on.
func TestEventsOnAFailedBatchFailWithIt(t *testing.T) {
	class := methods(map[string]func(s *State) ([]byte, error){
		"first": func(s *State) ([]byte, error) { return nil, s.Storage().Put("k", []byte("lost")) },
		"second": func(s *State) ([]byte, error) {
			v, _, err := s.Storage().Get("k")
			if err == nil {
				err = s.Send("peer", v)
			}
			if err == nil {
				err = s.Storage().Put("k2", v)
			}
			return v, err
		},
		"read": func(s *State) ([]byte, error) {
			v, found, err := s.Storage().Get("k")
			if found {
				return nil, errors.New("reads " + string(v) + " after the failure")
			}
			return []byte("nothing"), err
		},
	})
	r := newRig(t, class)
	r.c.setHold(true)
	first := r.async("first")
	r.c.waitAsked(t)
	second := r.async("second")
	waitTaken(t, r, 1)
	r.c.release(t, errDisk)
	for _, res := range []chan callResult{first, second} {
		if got := recv(t, res, "an answer"); !errors.Is(got.err, ErrNotCommitted) || !errors.Is(got.err, errDisk) {
			t.Fatalf("got %q, %v; want ErrNotCommitted wrapping the committer's error", got.out, got.err)
		}
	}
	r.noOutput()
	r.c.setHold(false)
	if got := recv(t, r.async("read"), "read"); got.err != nil || string(got.out) != "nothing" {
		t.Fatalf("after the failure: %q %v", got.out, got.err)
	}
	for _, k := range []string{"k", "k2"} {
		if _, ok := r.stored(k); ok {
			t.Fatalf("%s stored after its batch failed", k)
		}
	}
}

// waitTaken waits until the actor has run n events past the first
// (the rig's class counts them).
func waitTaken(t *testing.T, r *rig, n int) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for r.obj.(*testClass).ran.Load() < int64(n+1) {
		if time.Now().After(deadline) {
			t.Fatalf("the actor did not run %d more events", n)
		}
		runtime.Gosched()
	}
}

func TestSyncCommitsMidEvent(t *testing.T) {
	r := newRig(t, &testClass{})
	r.c.setHold(true)
	res := make(chan error, 1)
	go func() {
		res <- r.call(func(s *State) error {
			s.Storage().Put("a", []byte("1"))
			s.Send("peer", []byte("a"))
			if err := s.Storage().Sync(); err != nil {
				return err
			}
			s.Storage().Put("b", []byte("2"))
			return errors.New("fails after the sync")
		})
	}()
	r.c.waitAsked(t)
	r.noOutput()
	r.c.release(t, nil)
	if m := recv(t, r.out, "message sent before the sync"); string(m.Data) != "a" {
		t.Fatalf("message %q", m.Data)
	}
	if err := recv(t, res, "event"); err == nil {
		t.Fatal("event error lost")
	}
	if v, _ := r.stored("a"); v != "1" {
		t.Fatal("write before the sync not committed")
	}
	if _, ok := r.stored("b"); ok {
		t.Fatal("write after the sync committed by a failed event")
	}
}

func TestFailedSyncBreaksTheEvent(t *testing.T) {
	r := newRig(t, &testClass{})
	r.c.setFail(errDisk)
	err := r.call(func(s *State) error {
		s.Storage().Put("a", []byte("1"))
		if err := s.Storage().Sync(); !errors.Is(err, ErrNotCommitted) {
			t.Errorf("sync: %v", err)
		}
		if err := s.Storage().Put("b", []byte("2")); !errors.Is(err, ErrNotCommitted) {
			t.Errorf("put after a failed sync: %v", err)
		}
		return nil // ignoring the failure must not make the event succeed
	})
	if !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("event: %v", err)
	}
}

func TestStaleActorIsFenced(t *testing.T) {
	staleClass := &testClass{}
	r := newRig(t, staleClass)
	// A second actor of the same object (the old leader that has not
	// heard yet) commits first; the first actor's batch must be refused.
	stale := r.a
	r.start(&testClass{})
	if err := r.call(func(s *State) error { return s.Storage().Put("k", []byte("new")) }); err != nil {
		t.Fatal(err)
	}
	staleClass.call = func(_ context.Context, s *State, _ string, _ []byte) ([]byte, error) {
		return nil, s.Storage().Put("k", []byte("stale"))
	}
	if _, err := stale.Call(context.Background(), "", nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale actor's commit: %v", err)
	}
	if v, _ := r.stored("k"); v != "new" {
		t.Fatalf("stale actor overwrote: %q", v)
	}
}

func TestCloseFinishesTheCommitInFlight(t *testing.T) {
	blocking := make(chan struct{})
	r := newRig(t, methods(map[string]func(s *State) ([]byte, error){
		"write": func(s *State) ([]byte, error) { return nil, s.Storage().Put("k", []byte("v")) },
		"never": func(s *State) ([]byte, error) { t.Error("a queued event ran after Close"); return nil, nil },
	}))
	r.obj.(*testClass).call = func(ctx context.Context, s *State, method string, _ []byte) ([]byte, error) {
		switch method {
		case "write":
			return nil, s.Storage().Put("k", []byte("v"))
		case "block": // holds the actor until Close cancels it
			close(blocking)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		t.Error("a queued event ran after Close")
		return nil, nil
	}
	r.c.setHold(true)
	first := r.async("write")
	r.c.waitAsked(t)
	block := r.async("block")
	<-blocking
	queued := r.async("never")
	r.waitQueued()
	closed := make(chan error, 1)
	go func() { closed <- r.a.Close() }()
	// Close waits for the commit in flight, on the clock.
	r.clock.waitTimer(t, r.clock.Now().Add(DefaultCommitWait))
	mustNot(t, closed, "Close returned with a commit in flight")
	r.c.release(t, nil)
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, first, "event in flight"); got.err != nil {
		t.Fatal(got.err)
	}
	if got := recv(t, block, "the event Close cancelled"); !errors.Is(got.err, context.Canceled) {
		t.Fatalf("the running event: %v", got.err)
	}
	if got := recv(t, queued, "queued event"); !errors.Is(got.err, ErrClosed) {
		t.Fatalf("queued event: %v", got.err)
	}
	if _, err := r.a.Call(context.Background(), "never", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close: %v", err)
	}
}

func TestCloseAbandonsACommitThatNeverFinishes(t *testing.T) {
	r := newRig(t, methods(map[string]func(s *State) ([]byte, error){
		"write": func(s *State) ([]byte, error) {
			s.Send("peer", []byte("x"))
			return nil, s.Storage().Put("k", []byte("v"))
		},
	}))
	r.c.setHold(true)
	first := r.async("write")
	r.c.waitAsked(t)
	closed := make(chan error, 1)
	go func() { closed <- r.a.Close() }()
	wait := r.clock.Now().Add(DefaultCommitWait)
	r.clock.waitTimer(t, wait)
	r.clock.Advance(DefaultCommitWait)
	if err := recv(t, closed, "Close"); !errors.Is(err, ErrCommitAbandoned) {
		t.Fatalf("Close: %v", err)
	}
	if got := recv(t, first, "event"); !errors.Is(got.err, ErrCommitAbandoned) {
		t.Fatalf("event: %v", got.err)
	}
	r.noOutput()
	r.c.release(t, nil) // a late done must not block or panic
}

func TestCallerContext(t *testing.T) {
	r := newRig(t, &testClass{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	r.setCall(func(s *State) error { ran = true; return nil })
	if _, err := r.a.Call(ctx, "", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if err := r.call(func(s *State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Fatal("an event whose caller had gone was run")
	}
}

type fetchClass struct{}

func (fetchClass) Fetch(ctx context.Context, s *State, w http.ResponseWriter, r *http.Request) {
	n, _, err := GetJSON[int](s.Storage(), "hits")
	if err == nil {
		err = PutJSON(s.Storage(), "hits", n+1)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, strings.Repeat("hit ", n+1))
}

func TestFetch(t *testing.T) {
	r := newRig(t, fetchClass{})
	for want := range []int{1, 2} {
		req, _ := http.NewRequest("GET", "http://do/", nil)
		resp, err := r.a.Fetch(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != strings.Repeat("hit ", want+1) {
			t.Fatalf("response %d %q", resp.StatusCode, body)
		}
	}
	if _, err := r.a.Call(context.Background(), "x", nil); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("call on a class without Call: %v", err)
	}
}

func TestCallJSON(t *testing.T) {
	r := newRig(t, &testClass{call: func(_ context.Context, s *State, method string, arg []byte) ([]byte, error) {
		return append([]byte(`{"echo":`), append(arg, '}')...), nil
	}})
	type resp struct{ Echo []int }
	got, err := CallJSON[resp](context.Background(), r.a, "echo", []int{1, 2})
	if err != nil || len(got.Echo) != 2 {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestFullMailboxHoldsCallers(t *testing.T) {
	started, unblock := make(chan struct{}), make(chan struct{})
	class := methods(map[string]func(s *State) ([]byte, error){
		"block": func(s *State) ([]byte, error) { close(started); <-unblock; return nil, nil },
		"read":  func(s *State) ([]byte, error) { return []byte("read"), nil },
	})
	r := &rig{t: t, c: newFakeCommitter(), clock: newFakeClock(), out: make(chan Message, 1), mailbox: 1}
	ns, _ := NewNamespace("Test")
	r.id = ns.IDFromName("mailbox")
	r.start(class)
	first := r.async("block")
	<-started
	queued := r.async("read") // fills the mailbox of one
	r.waitQueued()
	ctx, cancel := context.WithCancel(context.Background())
	third := make(chan error, 1)
	go func() {
		_, err := r.a.Call(ctx, "read", nil)
		third <- err
	}()
	mustNot(t, third, "a call past a full mailbox returned")
	cancel()
	if err := recv(t, third, "the waiting caller to give up"); !errors.Is(err, context.Canceled) {
		t.Fatalf("caller waiting on a full mailbox: %v", err)
	}
	if n := r.a.mailbox.Len(); n != 1 {
		t.Fatalf("a mailbox of 1 holds %d events", n)
	}
	close(unblock)
	if got := recv(t, first, "first"); got.err != nil {
		t.Fatal(got.err)
	}
	if got := recv(t, queued, "queued"); got.err != nil || string(got.out) != "read" {
		t.Fatalf("queued: %q %v", got.out, got.err)
	}
}
