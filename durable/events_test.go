package durable

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"
)

// TestObserveTellsEachEventsOutcome: Config.Observe hears of every event
// with its kind and the outcome its caller got, and only once that outcome
// is out: a call whose commit is held is not observed until the commit
// answers.
func TestObserveTellsEachEventsOutcome(t *testing.T) {
	failed := errors.New("the handler refused")
	r, _ := alarmRig(t, func(s *State, n int) error {
		if n == 1 {
			return failed
		}
		return nil
	})
	next := func(want EventKind, wantErr error) {
		t.Helper()
		select {
		case o := <-r.observed:
			if o.kind != want || !errors.Is(o.err, wantErr) {
				t.Fatalf("observed %v %v; want %v %v", o.kind, o.err, want, wantErr)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v not observed", want)
		}
	}
	if err := r.call(func(*State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	next(EventCall, nil)
	if err := r.call(func(*State) error { return failed }); !errors.Is(err, failed) {
		t.Fatal(err)
	}
	next(EventCall, failed)
	if _, err := r.a.Fetch(context.Background(), httptest.NewRequest("GET", "/", nil)); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("fetch of a class without Fetch: %v", err)
	}
	next(EventFetch, ErrNoHandler)

	// Held commit: nothing observed until it answers.
	r.c.setHold(true)
	r.setCall(func(s *State) error { return s.Storage().Put("k", []byte("v")) })
	res := r.async("")
	r.c.waitAsked(t)
	select {
	case o := <-r.observed:
		t.Fatalf("observed %v %v while its commit is held", o.kind, o.err)
	default:
	}
	r.c.setHold(false)
	r.c.release(t, nil)
	if cr := <-res; cr.err != nil {
		t.Fatal(cr.err)
	}
	next(EventCall, nil)

	// An alarm that fails, then its retry that succeeds.
	at := r.clock.Now().Add(time.Second)
	r.setAlarm(at)
	next(EventCall, nil)
	r.clock.waitTimer(t, at)
	r.clock.Advance(time.Second)
	next(EventAlarm, failed)
	retry := at.Add(DefaultAlarmRetry.Backoff(1))
	r.clock.waitTimer(t, retry)
	r.clock.Advance(retry.Sub(r.clock.Now()))
	next(EventAlarm, nil)
}

// TestPostAfterCloseIsRefused: an event posted once the actor has closed
// is refused at once (ErrClosed), not queued behind the last Pop of the
// closing actor, where its done and Observe would never be called.
func TestPostAfterCloseIsRefused(t *testing.T) {
	r := newRig(t, &testClass{})
	if err := r.a.Close(); err != nil {
		t.Fatal(err)
	}
	err := r.a.PostWebSocketMessage(context.Background(), "sock", 1, []byte("hi"), true, func(error) {
		t.Error("done called for an event that was refused")
	})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("post after Close: %v; want ErrClosed", err)
	}
	if _, err := r.a.Call(context.Background(), "x", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v; want ErrClosed", err)
	}
}
