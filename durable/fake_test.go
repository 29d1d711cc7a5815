package durable

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hellochat/storage"
)

// testWait bounds every wait of a test for something that must happen; a
// broken runtime fails the test at it instead of hanging.
const testWait = 10 * time.Second

// fakeCommitter commits through a MemStore, and can be told to fail the
// next commits or to hold them until the test releases them.
type fakeCommitter struct {
	*MemStore
	mu      sync.Mutex
	failErr error // fail every commit with it while set
	lie     bool  // ... after applying it anyway, as an ambiguous commit
	hold    bool
	held    []*heldCommit
	asked   chan *heldCommit // every commit asked for, held or not
	commits int              // batches applied
}

type heldCommit struct {
	object string
	ops    []storage.Op
	guards storage.Guards
	done   func(error)
}

var errDisk = errors.New("fake: disk on fire")

func newFakeCommitter() *fakeCommitter {
	return &fakeCommitter{MemStore: NewMemStore(), asked: make(chan *heldCommit, 100)}
}

func (f *fakeCommitter) Commit(object string, ops []storage.Op, guards storage.Guards, done func(error)) {
	c := &heldCommit{object, ops, guards, done}
	f.mu.Lock()
	fail, hold, lie := f.failErr, f.hold, f.lie
	if hold {
		f.held = append(f.held, c)
	}
	f.mu.Unlock()
	f.asked <- c
	switch {
	case hold:
	case fail != nil && lie:
		f.Apply(c.object, c.ops, c.guards)
		done(fail)
	case fail != nil:
		done(fail)
	default:
		f.apply(c)
	}
}

func (f *fakeCommitter) apply(c *heldCommit) {
	err := f.Apply(c.object, c.ops, c.guards)
	if err == nil {
		f.mu.Lock()
		f.commits++
		f.mu.Unlock()
	}
	c.done(err)
}

// failHeld fails every held commit.
func (f *fakeCommitter) failHeld() {
	f.mu.Lock()
	held := f.held
	f.held = nil
	f.mu.Unlock()
	for _, c := range held {
		c.done(errDisk)
	}
}

func (f *fakeCommitter) setHold(h bool) { f.mu.Lock(); f.hold = h; f.mu.Unlock() }
func (f *fakeCommitter) setFail(err error) {
	f.mu.Lock()
	f.failErr = err
	f.mu.Unlock()
}

// waitAsked waits for the next commit to be asked for.
func (f *fakeCommitter) waitAsked(t *testing.T) *heldCommit {
	t.Helper()
	select {
	case c := <-f.asked:
		return c
	case <-time.After(testWait):
		t.Fatal("no commit was asked for")
		return nil
	}
}

// release finishes the oldest held commit: applied if err is nil,
// failed with err (and not applied) otherwise.
func (f *fakeCommitter) release(t *testing.T, err error) {
	t.Helper()
	f.mu.Lock()
	if len(f.held) == 0 {
		f.mu.Unlock()
		t.Fatal("no commit held")
	}
	c := f.held[0]
	f.held = f.held[1:]
	f.mu.Unlock()
	if err != nil {
		c.done(err)
		return
	}
	f.apply(c)
}

// fakeClock moves only when the test says so; Advance runs the timers
// that come due, in time order, on the test's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan struct{}
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), added: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	select {
	case c.added <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

// Advance moves the clock by d and fires what comes due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.stopped && !t.fired && !t.at.After(c.now) {
			t.fired = true
			due = append(due, t)
		}
	}
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.stopped || t.fired })
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.f()
	}
}

// pending is when the earliest live timer fires; ok false when none.
func (c *fakeClock) pending() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first time.Time
	ok := false
	for _, t := range c.timers {
		if !t.stopped && !t.fired && (!ok || t.at.Before(first)) {
			first, ok = t.at, true
		}
	}
	return first, ok
}

// waitTimer waits until a live timer is set for at, as the actor sets its
// timers on its own goroutine.
func (c *fakeClock) waitTimer(t *testing.T, at time.Time) {
	t.Helper()
	deadline := time.After(testWait)
	for {
		c.mu.Lock()
		found := false
		for _, tm := range c.timers {
			found = found || (!tm.stopped && !tm.fired && tm.at.Equal(at))
		}
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-c.added:
		case <-deadline:
			got, ok := c.pending()
			t.Fatalf("no timer set for %v (earliest: %v %v)", at, got, ok)
		}
	}
}

// testClass is a class whose handlers the test supplies.
type testClass struct {
	call  func(ctx context.Context, s *State, method string, arg []byte) ([]byte, error)
	alarm func(ctx context.Context, s *State, info AlarmInfo) error
	ran   atomic.Int64 // calls that returned
}

func (c *testClass) Call(ctx context.Context, s *State, method string, arg []byte) ([]byte, error) {
	defer c.ran.Add(1)
	return c.call(ctx, s, method, arg)
}

func (c *testClass) Alarm(ctx context.Context, s *State, info AlarmInfo) error {
	return c.alarm(ctx, s, info)
}

// rig is an actor on a fake committer and clock.
type rig struct {
	t     *testing.T
	c     *fakeCommitter
	clock *fakeClock
	id    ID
	a     *Actor
	obj   Object
	out   chan Message
	socks *fakeSockets
	// mailbox is Config.Mailbox for the next start (0: the default).
	mailbox int
	// confirms, when set before start, is Config.Confirm's: each request
	// for a confirmation arrives on it, for the test to answer.
	confirms chan func(error)
	// observed gets what Config.Observe is told.
	observed chan observation
	// blocked: the reset tests' counter tells it its block ran.
	blocked chan struct{}
}

type observation struct {
	kind EventKind
	err  error
}

// quiet is the tests' logger: the runtime's warnings are expected there.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newRig(t *testing.T, obj Object) *rig {
	t.Helper()
	ns, err := NewNamespace("Test")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, c: newFakeCommitter(), clock: newFakeClock(), id: ns.IDFromName(t.Name()), out: make(chan Message, 100),
		socks: &fakeSockets{ops: make(chan socketOp, 100)}, observed: make(chan observation, 1000)}
	r.start(obj)
	return r
}

func (r *rig) start(obj Object) {
	r.t.Helper()
	r.obj = obj
	a, err := Start(r.id, func() Object { return obj }, Config{
		Reader: r.c, Committer: r.c, Clock: r.clock, Mailbox: r.mailbox,
		Deliver: func(_ ID, m Message) { r.out <- m },
		Sockets: r.socks,
		Confirm: r.confirm(),
		Observe: func(kind EventKind, err error) {
			select {
			case r.observed <- observation{kind, err}:
			default: // a test that does not read them
			}
		},
		Logger: quiet,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.a = a
	// A test that fails with a commit held must not hang in Close.
	r.t.Cleanup(func() {
		r.c.setHold(false)
		r.c.failHeld()
		a.Close()
	})
}

func (r *rig) confirm() func(func(error)) {
	if r.confirms == nil {
		return nil
	}
	return func(done func(error)) { r.confirms <- done }
}

// stored reads a user key straight from the committed store.
func (r *rig) stored(key string) (string, bool) {
	v, ok, err := r.c.Get(r.id.StorageObject(), userKey(key))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(v), ok
}

// noOutput fails the test if a message was delivered.
func (r *rig) noOutput() {
	r.t.Helper()
	select {
	case m := <-r.out:
		r.t.Fatalf("message %q to %q delivered before its commit", m.Data, m.To)
	default:
	}
}

// call runs fn as an event and waits for it.
func (r *rig) call(fn func(s *State) error) error {
	r.t.Helper()
	r.setCall(fn)
	_, err := r.a.Call(context.Background(), "", nil)
	return err
}

func (r *rig) setCall(fn func(s *State) error) {
	r.obj.(*testClass).call = func(_ context.Context, s *State, _ string, _ []byte) ([]byte, error) {
		return nil, fn(s)
	}
}

// async runs a Call on its own goroutine; its outcome arrives on the
// channel.
func (r *rig) async(method string) chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		out, err := r.a.Call(context.Background(), method, nil)
		ch <- callResult{out, err}
	}()
	return ch
}

type callResult struct {
	out []byte
	err error
}

// waitQueued waits until an event waits in the actor's mailbox (a caller
// goroutine has queued it, and the actor has not taken it).
func (r *rig) waitQueued() {
	r.t.Helper()
	deadline := time.Now().Add(testWait)
	for r.a.mailbox.Len() == 0 {
		if time.Now().After(deadline) {
			r.t.Fatal("no event queued (or the actor took it at once)")
		}
		runtime.Gosched()
	}
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testWait):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func mustNot[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s too early: %v", what, v)
	default:
	}
}

// fakeSockets records what an actor sends to its sockets' gateway: each
// socket's operations on ops and, when calls is not nil, the sockets of
// each Send call.
type fakeSockets struct {
	ops   chan socketOp
	calls chan []string
}

func (f *fakeSockets) Send(sockets []string, msg []byte, text bool, number uint64) {
	if f.calls != nil {
		f.calls <- slices.Clone(sockets)
	}
	for _, socket := range sockets {
		f.ops <- socketOp{socket: socket, kind: opSend, msg: msg, text: text, number: number}
	}
}

func (f *fakeSockets) Close(socket string, code int, reason string) {
	f.ops <- socketOp{socket: socket, kind: opClose, rare: &rareSocketOp{code: code, reason: reason}}
}

func (f *fakeSockets) Drain(socket string) {
	f.ops <- socketOp{socket: socket, kind: opDrain}
}

func (f *fakeSockets) AutoResponse(socket, request, response string) {
	f.ops <- socketOp{socket: socket, kind: opAuto, rare: &rareSocketOp{auto: autoResponse{request, response}}}
}
