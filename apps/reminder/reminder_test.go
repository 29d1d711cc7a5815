package reminder

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hellochat/durable"
	"hellochat/storage"
)

// fakeClock is a clock the test moves by hand; timers fire (on their own
// goroutines) when Advance passes their time.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	f  func()
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), timers: map[*fakeTimer]bool{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) durable.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	if d <= 0 {
		go f()
		return t
	}
	c.timers[t] = true
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	pending := t.c.timers[t]
	delete(t.c.timers, t)
	return pending
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			delete(c.timers, t)
			go t.f()
		}
	}
}

// flakyCommitter fails the next fail commits, then passes them on.
type flakyCommitter struct {
	*durable.MemStore
	fail atomic.Int32
}

var errInjected = errors.New("injected commit failure")

func (f *flakyCommitter) Commit(object string, ops []storage.Op, g storage.Guards, done func(error)) {
	if f.fail.Add(-1) >= 0 {
		done(errInjected)
		return
	}
	f.fail.Store(0)
	f.MemStore.Commit(object, ops, g, done)
}

type rig struct {
	t     *testing.T
	clock *fakeClock
	store *flakyCommitter
	a     *durable.Actor
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, clock: newFakeClock(), store: &flakyCommitter{MemStore: durable.NewMemStore()}}
	r.start()
	return r
}

func (r *rig) start() {
	r.t.Helper()
	a, err := durable.Start(Namespace.IDFromName("list"), func() durable.Object { return New(r.clock) },
		durable.Config{Reader: r.store, Committer: r.store, Clock: r.clock})
	if err != nil {
		r.t.Fatal(err)
	}
	r.a = a
	r.t.Cleanup(func() { a.Close() })
}

func (r *rig) schedule(id string, after time.Duration) Reminder {
	r.t.Helper()
	rem, err := durable.CallJSON[Reminder](context.Background(), r.a, "schedule", Arg{RequestID: id, AfterMS: after.Milliseconds()})
	if err != nil {
		r.t.Fatalf("schedule %s: %v", id, err)
	}
	return rem
}

func (r *rig) list() map[string]Reminder {
	r.t.Helper()
	l, err := durable.CallJSON[List](context.Background(), r.a, "list", Arg{})
	if err != nil {
		r.t.Fatalf("list: %v", err)
	}
	out := map[string]Reminder{}
	for _, rem := range l.Reminders {
		out[rem.ID] = rem
	}
	return out
}

// waitFired waits until exactly the ids given have fired (the alarm runs
// on the actor's goroutine after Advance returns).
func (r *rig) waitFired(ids ...string) map[string]Reminder {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l := r.list()
		n := 0
		for _, rem := range l {
			if rem.Fired != nil {
				n++
			}
		}
		ok := n == len(ids)
		for _, id := range ids {
			ok = ok && l[id].Fired != nil
		}
		if ok {
			return l
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("want fired %v, have %+v", ids, l)
		}
		time.Sleep(time.Millisecond)
	}
}

// alarm reads the object's alarm as committed.
func (r *rig) alarm() (time.Time, bool) {
	v, ok, err := r.store.Get(Namespace.IDFromName("list").StorageObject(), durable.AlarmKey())
	if err != nil || !ok {
		return time.Time{}, false
	}
	at, err := durable.DecodeAlarm(v)
	if err != nil {
		r.t.Fatal(err)
	}
	return at, true
}

func TestReminderFiresInOrderOnceEach(t *testing.T) {
	r := newRig(t)
	t0 := r.clock.Now()
	r.schedule("late", 5*time.Second)
	early := r.schedule("early", time.Second) // moves the alarm earlier
	r.schedule("mid", 2*time.Second)
	r.schedule("mid2", 2*time.Second)
	if !early.Scheduled.Equal(t0.Add(time.Second)) || early.Fired != nil {
		t.Fatalf("scheduled %+v", early)
	}
	if at, ok := r.alarm(); !ok || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("alarm at %v %v, want %v", at, ok, t0.Add(time.Second))
	}
	// A retried schedule answers the first reminder and adds none.
	if again := r.schedule("early", time.Hour); !again.Scheduled.Equal(early.Scheduled) {
		t.Fatalf("retry scheduled %v, want %v", again.Scheduled, early.Scheduled)
	}
	if n := len(r.list()); n != 4 {
		t.Fatalf("%d reminders, want 4", n)
	}

	r.clock.Advance(time.Second)
	l := r.waitFired("early")
	if !l["early"].Fired.Equal(t0.Add(time.Second)) || l["early"].FiredRuns != 1 {
		t.Fatalf("early: %+v", l["early"])
	}
	if at, ok := r.alarm(); !ok || !at.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("alarm at %v %v, want the next reminder's", at, ok)
	}
	r.clock.Advance(time.Second)
	r.waitFired("early", "mid", "mid2")
	r.clock.Advance(3 * time.Second)
	l = r.waitFired("early", "mid", "mid2", "late")
	for id, rem := range l {
		if rem.FiredRuns != 1 || !rem.Fired.Equal(rem.Scheduled) {
			t.Errorf("%s: %+v", id, rem)
		}
	}
	if at, ok := r.alarm(); ok {
		t.Fatalf("alarm still set at %v with nothing pending", at)
	}

	// A fresh actor on the same storage (a new leader) fires nothing again.
	r.a.Close()
	r.start()
	r.clock.Advance(time.Hour)
	for id, rem := range r.list() {
		if rem.FiredRuns != 1 {
			t.Errorf("%s fired %d times after a restart", id, rem.FiredRuns)
		}
	}
}

// An alarm whose run fails to commit is retried after the backoff and
// fires the reminder once.
func TestReminderAlarmRetriedAfterAFailedCommit(t *testing.T) {
	r := newRig(t)
	t0 := r.clock.Now()
	r.schedule("a", time.Second)
	r.store.fail.Store(1)
	r.clock.Advance(time.Second)
	// The failed run commits nothing; the list answers once it is over
	// (the actor runs the alarm before the call queued after it).
	deadline := time.Now().Add(5 * time.Second)
	for r.store.fail.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the alarm did not run")
		}
		time.Sleep(time.Millisecond)
	}
	if rem := r.list()["a"]; rem.Fired != nil {
		t.Fatalf("fired by a run that did not commit: %+v", rem)
	}
	r.clock.Advance(durable.DefaultAlarmRetry.Backoff(1))
	rem := r.waitFired("a")["a"]
	if rem.FiredRuns != 1 || !rem.Fired.Equal(t0.Add(time.Second+durable.DefaultAlarmRetry.Backoff(1))) {
		t.Fatalf("after the retry: %+v", rem)
	}
}

func TestReminderRefusesBadInput(t *testing.T) {
	r := newRig(t)
	for _, a := range []Arg{
		{RequestID: "", AfterMS: 1},
		{RequestID: "x", AfterMS: -1},
		{RequestID: "x", AfterMS: MaxAfter.Milliseconds() + 1},
	} {
		if _, err := durable.CallJSON[Reminder](context.Background(), r.a, "schedule", a); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
	if _, err := r.a.Call(context.Background(), "nope", nil); err == nil {
		t.Error("unknown method accepted")
	}
	if n := len(r.list()); n != 0 {
		t.Fatalf("refused input stored %d reminders", n)
	}
	for i := range MaxReminders {
		r.schedule(fmt.Sprint(i), time.Hour)
	}
	if _, err := durable.CallJSON[Reminder](context.Background(), r.a, "schedule", Arg{RequestID: "one more"}); err == nil {
		t.Error("a full list took one more")
	}
	if n := len(r.list()); n != MaxReminders {
		t.Fatalf("%d reminders, want %d", n, MaxReminders)
	}
}
