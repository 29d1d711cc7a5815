package durable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"hellochat/fifo"
	"hellochat/storage"
)

// Committer makes an object's batch of writes durable and then calls done,
// exactly once, from any goroutine; done does not block. For one object,
// done calls come in Commit order. It is objectnode's Committer: the Raft
// one calls done once the batch is applied on this node, so the Reader
// shows it by then. The guards are always Versioned: a stale actor's
// batch must fail (shard.ErrConflict) and change nothing.
type Committer interface {
	Commit(object string, ops []storage.Op, guards storage.Guards, done func(error))
}

// Defaults for Config's zero values.
const (
	DefaultMailbox    = 1024
	DefaultCommitWait = 2 * time.Second
)

// Config configures an Actor. Reader and Committer are required.
type Config struct {
	Reader    Reader
	Committer Committer
	// Clock schedules alarms and bounds CommitWait (default SystemClock).
	Clock Clock
	// Mailbox bounds the events waiting for the object; a caller waits
	// (or gives up with its context) while it is full.
	Mailbox int
	// CommitWait bounds how long Close waits for a commit in flight; a
	// commit without a quorum may never finish.
	CommitWait time.Duration
	// AlarmRetry is how failed alarm runs are retried
	// (default DefaultAlarmRetry).
	AlarmRetry RetryPolicy
	// Deliver receives the messages events Send, on the actor's goroutine,
	// once their writes are committed; it must not block for long. Nil:
	// Send is refused.
	Deliver func(from ID, m Message)
	// Stub is how the object's events call other objects (State.Call).
	// Nil: State.Call is refused.
	Stub Stub
	// Sockets reaches the sockets the object accepted. Nil:
	// AcceptWebSocket is refused.
	Sockets Sockets
	// Confirm asks whoever owns the store to confirm that what the actor
	// read was current: that no one else can have committed to the
	// object since it was loaded (on the cluster, a Raft ReadIndex on its
	// shard, answered once applied). It calls done once, from any
	// goroutine, without blocking. The outputs of an event that wrote
	// nothing wait for a confirmation asked after it ran, unless a later
	// commit confirms them first; a writing event's commit is its own
	// confirmation. Nil: reads need none (a store no one else writes).
	Confirm func(done func(error))
	// Observe, if set, is told of each event's outcome (what its caller
	// gets, or the alarm run's result), on the actor's goroutine, once
	// its outputs are released or dropped; it must not block. Events
	// refused before they queued (a full mailbox, a closed actor, a call
	// cycle) are not told.
	Observe func(kind EventKind, err error)
	Logger  *slog.Logger
}

// Actor runs one object: a single goroutine owns the object and its
// storage and runs its events one at a time, in arrival order (alarms
// join that order when they fire). See the package doc for the gates.
type Actor struct {
	id        ID
	object    string // the ID's storage object
	newObj    func() Object
	cfg       Config
	log       *slog.Logger
	mailbox   *fifo.Queue[*event]
	alarmc    chan struct{} // the alarm timer's signal
	closing   chan struct{}
	closeOnce sync.Once
	done      chan struct{}
	ctx       context.Context // cancelled by Close; events' contexts derive from it
	cancel    context.CancelFunc
	exitErr   error // set before done closes
	// alarmAt is the committed alarm (Unix nanoseconds, noAlarm: none),
	// published for the host, which keeps an actor whose alarm is near.
	alarmAt atomic.Int64

	// Owned by the actor's goroutine.
	obj Object // the instance; replaced after a failed commit
	// reset says a commit failed: obj may hold state that was never
	// committed, so it is replaced before the next event.
	reset bool
	st    *Storage
	cur   *State // the running event's
	// version is the last batch's, handed over (committed or in flight).
	version uint64
	// reader is the store under the writes in flight and gathered;
	// flight is the batch handed to the Committer, next the one gathered
	// behind it, and results the flight's outcome.
	reader  *overlay
	flight  *batch
	next    *batch
	results chan error
	// lastBatch is how many writes and outputs the last batch handed
	// over held: a busy object's next gathers about as many, and growing
	// its map write by write was a twentieth of a hot room's CPU.
	lastBatch struct{ ops, outputs int }
	// confirming: a Confirm is out; its outputs are confirmWait, and
	// confirmNext wait for the one after it (asked after they ran).
	// confirmed carries its answer.
	confirming  bool
	confirmWait []func(error)
	confirmNext []func(error)
	confirmed   chan error
	broken      error // a reload failed: the actor can only refuse events
	abandoned   bool  // a commit was left in flight at Close
	sched       alarmSchedule
	// sendTo is release's list of the sockets one frame goes to, reused.
	sendTo []string
}

// event is one input to the actor.
type event struct {
	ctx context.Context
	run func(ctx context.Context, s *State) error
	// done takes the event's outcome, once, on the actor's goroutine; it
	// must not block.
	done func(error)
}

// Start loads the object named id from the store and starts its actor
// on an instance newObject makes, running its Load first if it is a
// Loader. After a failed commit the actor discards the instance and makes
// (and loads) a new one, so that no state the class kept in memory
// outlives writes that were not committed.
//
// The caller makes sure that one actor at most runs each object (the
// cluster: on its shard's leader); the versioned batches refuse a stale
// one's writes anyway.
func Start(id ID, newObject func() Object, cfg Config) (*Actor, error) {
	if id.IsZero() || newObject == nil || cfg.Reader == nil || cfg.Committer == nil {
		return nil, errors.New("durable: Start needs an ID, a constructor, a Reader and a Committer")
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Mailbox <= 0 {
		cfg.Mailbox = DefaultMailbox
	}
	if cfg.CommitWait <= 0 {
		cfg.CommitWait = DefaultCommitWait
	}
	if cfg.AlarmRetry == (RetryPolicy{}) {
		cfg.AlarmRetry = DefaultAlarmRetry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Actor{
		id:        id,
		object:    id.StorageObject(),
		newObj:    newObject,
		obj:       newObject(),
		cfg:       cfg,
		log:       cfg.Logger.With("object", id.Namespace()+"/"+id.String()),
		mailbox:   fifo.New[*event](cfg.Mailbox),
		alarmc:    make(chan struct{}, 1),
		results:   make(chan error, 1),
		confirmed: make(chan error, 1),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.reader = &overlay{r: cfg.Reader}
	a.st = &Storage{base: committed{r: a.reader, object: a.object}, sync: a.syncEvent}
	var err error
	if a.version, a.st.alarm, err = loadMeta(cfg.Reader, a.object); err != nil {
		return nil, err
	}
	a.publishAlarm()
	ready := make(chan error, 1)
	go a.run(ready)
	if err := <-ready; err != nil {
		a.Close()
		return nil, fmt.Errorf("durable: load %s: %w", a.object, err)
	}
	return a, nil
}

// Alarm is the object's committed alarm, as of its last event; set is
// false when it has none. Any goroutine may call it.
func (a *Actor) Alarm() (at time.Time, set bool) {
	ns := a.alarmAt.Load()
	if ns == noAlarm {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// noAlarm is alarmAt when no alarm is set.
const noAlarm = math.MinInt64

func (a *Actor) publishAlarm() {
	if a.st.alarm.set {
		a.alarmAt.Store(a.st.alarm.at.UnixNano())
	} else {
		a.alarmAt.Store(noAlarm)
	}
}

// ID is the ID of the actor's object.
func (a *Actor) ID() ID { return a.id }

// Fetch runs an HTTP request on the object (a Fetcher) and returns its
// response once the request's writes are committed. An error means the
// response was dropped: the object could not take the event, the class
// does not handle it, its handler panicked, or the writes were not
// committed (ErrNotCommitted). A context error means the outcome is
// unknown: the event may still run and commit.
func (a *Actor) Fetch(ctx context.Context, r *http.Request) (*http.Response, error) {
	w := newResponseBuffer()
	err := a.do(ctx, EventFetch, func(ctx context.Context, s *State) error {
		f, ok := a.obj.(Fetcher)
		if !ok {
			return fmt.Errorf("fetch: %w", ErrNoHandler)
		}
		f.Fetch(ctx, s, w, r.WithContext(ctx))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return w.response(r), nil
}

// Call runs an RPC on the object (a Caller). Its result, and the errors,
// are released like Fetch's; an error the method returns comes back as
// is, and its writes were dropped.
func (a *Actor) Call(ctx context.Context, method string, arg []byte) ([]byte, error) {
	var out []byte
	err := a.do(ctx, EventCall, func(ctx context.Context, s *State) error {
		c, ok := a.obj.(Caller)
		if !ok {
			return fmt.Errorf("call %s: %w", method, ErrNoHandler)
		}
		var err error
		out, err = c.Call(ctx, s, method, arg)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// do queues an event and waits for its outcome.
// A call made along a chain that already waits on this object is refused
// here, before it joins the mailbox behind the event that waits for it.
func (a *Actor) do(ctx context.Context, kind EventKind, run func(context.Context, *State) error) error {
	reply := make(chan error, 1)
	if err := a.post(ctx, kind, run, func(err error) { reply <- err }); err != nil {
		return err
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-a.done:
		// The actor replies before it is done: a reply that is not here
		// now will never come.
		select {
		case err := <-reply:
			return err
		default:
			return ErrClosed
		}
	}
}

// post queues an event whose outcome goes to done instead of a waiting
// caller: events posted one after another run in that order. An error
// means it was not queued (ctx ended, or the actor is closed).
func (a *Actor) post(ctx context.Context, kind EventKind, run func(context.Context, *State) error, done func(error)) error {
	if err := checkChain(CallChain(ctx), a.id); err != nil {
		return err
	}
	if a.cfg.Observe != nil && kind != eventRuntime {
		reply := done
		done = func(err error) {
			a.observe(kind, err)
			reply(err)
		}
	}
	if !a.mailbox.Push(&event{ctx: ctx, run: run, done: done}, a.closing, ctx.Done()) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return ErrClosed
	}
	return nil
}

// Close stops the actor: it cancels the running event's context, lets
// that event finish (waiting up to CommitWait for its commit), fails the
// queued events with ErrClosed and waits for the goroutine to exit. It
// returns ErrCommitAbandoned if a commit was left in flight, or why the
// actor stopped on its own (it could not reload after a failed commit).
func (a *Actor) Close() error {
	a.closeOnce.Do(func() {
		close(a.closing)
		a.cancel()
	})
	<-a.done
	return a.exitErr
}

// Done is closed once the actor has stopped (closed, or given up after a
// failed reload).
func (a *Actor) Done() <-chan struct{} { return a.done }

func (a *Actor) run(ready chan<- error) {
	defer a.exit()
	err := a.load()
	ready <- err
	if err != nil {
		return
	}
	a.rearm()
	for {
		select {
		case <-a.closing:
			return // before anything that also waits
		default:
		}
		select {
		case <-a.closing:
			return
		case <-a.mailbox.Ready:
			if ev, ok := a.mailbox.Pop(); ok {
				a.handle(ev)
			}
		case <-a.alarmc:
			a.fireAlarm()
		case err := <-a.results:
			a.settle(err)
		case err := <-a.confirmed:
			a.settleConfirm(err)
		}
		if a.reset && !a.abandoned && a.broken == nil {
			a.renew()
		}
		if a.abandoned || a.broken != nil {
			return
		}
		a.rearm()
	}
}

// load runs the instance's Load, if it has one, as the first event.
func (a *Actor) load() error {
	if l, ok := a.obj.(Loader); ok {
		return a.runNow(a.ctx, false, l.Load)
	}
	return nil
}

// renew replaces the instance after a failed commit or a failed
// BlockConcurrencyWhile, by one loaded from what is committed. What
// earlier events wrote may still be committing: the new instance loads
// once it is, so that a commit failing meanwhile resets storage first
// instead of failing the new instance's Load. An instance that cannot
// load stops the actor (Close returns why): its host starts it again when
// it is next needed.
func (a *Actor) renew() {
	a.reset = false
	if err := a.drain(); err != nil && (a.abandoned || a.broken != nil) {
		return
	}
	a.reset = false // a commit that failed in drain asked again
	a.obj = a.newObj()
	if err := a.load(); err != nil {
		a.log.Error("reload the object after a reset", "err", err)
		a.broken = fmt.Errorf("durable: object unusable: %w", err)
	}
}

// exit commits what events left (waiting up to CommitWait), fails what
// is still queued and marks the actor done.
func (a *Actor) exit() {
	if a.broken == nil {
		a.drain()
	}
	a.cancel()
	a.sched.stop()
	switch {
	case a.abandoned:
		a.exitErr = ErrCommitAbandoned
	case a.broken != nil:
		a.exitErr = a.broken
	}
	// Closed first: an event posted now is refused (post returns
	// ErrClosed), not queued behind the last Pop and never finished.
	a.mailbox.Close()
	for {
		ev, ok := a.mailbox.Pop()
		if !ok {
			break
		}
		ev.done(ErrClosed)
	}
	close(a.done)
}

func (a *Actor) handle(ev *event) {
	if err := ev.ctx.Err(); err != nil {
		ev.done(err) // its caller is gone: do not run it for nobody
		return
	}
	ctx, cancel := context.WithCancel(ev.ctx)
	defer cancel()
	defer context.AfterFunc(a.ctx, cancel)()
	a.runEvent(ctx, false, ev.run, ev.done)
}

// runEvent runs one event. Its writes join those waiting to be committed
// (handed to the Committer at once if none are in flight), and its
// outputs, its reply included, go to out once they and every earlier
// event's writes are committed, or with the error that kept them from
// it. The next event may run meanwhile: it reads these writes.
func (a *Actor) runEvent(ctx context.Context, alarmRun bool, fn func(context.Context, *State) error, out func(error)) {
	if a.broken != nil {
		out(a.broken)
		return
	}
	s := &State{id: a.id, storage: a.st, canSend: a.cfg.Deliver != nil, stub: a.cfg.Stub, canSocket: a.cfg.Sockets != nil,
		callers: CallChain(ctx), actor: a}
	a.cur = s
	a.st.begin(alarmRun)
	err := protect(ctx, s, fn)
	if err == nil {
		err = a.st.broken
	}
	// A handler's error that must not undo what the runtime wrote
	// besides (a socket message's number): those writes are committed,
	// then the error is the event's outcome.
	var kept *keptError
	if errors.As(err, &kept) {
		err = nil
	}
	var ops []storage.Op
	if err == nil {
		ops = a.st.pendingOps()
	}
	b, serr := a.stage(ops)
	// The event is over before any of its outputs can go: a reply lets
	// its caller go on.
	a.st.end()
	s.over = true
	a.cur = nil
	switch {
	case serr != nil:
		out(serr)
	case err != nil:
		// Nothing to commit; the error, like any output, may tell of what
		// earlier events wrote, so it waits for their commit.
		a.after(b, func(cerr error) {
			if cerr != nil {
				err = cerr
			}
			out(err)
		})
	default:
		a.after(b, func(cerr error) {
			if cerr == nil {
				a.release(s)
				if kept != nil {
					cerr = kept.err
				}
			}
			out(cerr)
		})
	}
}

// keptError is a handler's error whose event still commits the writes
// the runtime made for it (the handler's own were discarded).
type keptError struct{ err error }

func (e *keptError) Error() string { return e.err.Error() }
func (e *keptError) Unwrap() error { return e.err }

// runNow runs an event and waits for its commit: Load, alarms, and the
// deletion of an alarm that failed too often, whose outcome the actor
// needs before it goes on.
func (a *Actor) runNow(ctx context.Context, alarmRun bool, fn func(context.Context, *State) error) error {
	var err error
	a.runEvent(ctx, alarmRun, fn, func(e error) { err = e })
	if derr := a.drain(); err == nil {
		err = derr
	}
	return err
}

// protect runs a handler, turning a panic into a PanicError.
func protect(ctx context.Context, s *State, fn func(context.Context, *State) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn(ctx, s)
}

// syncEvent is Storage.Sync: a commit point within the running event. It
// commits the event's writes so far and everything before them, and
// releases what the event sent so far.
func (a *Actor) syncEvent() error {
	b, err := a.stage(a.st.pendingOps())
	if err == nil {
		s := a.cur
		a.after(b, func(err error) {
			if err == nil {
				a.release(s)
			}
		})
		err = a.drain()
	}
	if err != nil {
		a.st.broken = err
	}
	return err
}

// reload drops what the object had not committed and reads its version
// and alarm back: a failed (or unknown) commit may have changed them.
func (a *Actor) reload() {
	a.flight, a.next = nil, nil
	a.reader.flight, a.reader.next = nil, nil
	a.st.held = nil
	a.st.ev = newLayer(a.st.base, nil)
	a.st.alarm.pending = nil
	a.st.sockets = nil
	v, alarm, err := loadMeta(a.cfg.Reader, a.object)
	if err != nil {
		a.log.Error("reload after a failed commit", "err", err)
		a.broken = fmt.Errorf("durable: object unusable: %w", err)
		return
	}
	a.version, a.st.alarm = v, alarm
	a.publishAlarm()
}

// release hands on what the event sent, now that its writes are committed.
func (a *Actor) release(s *State) {
	for _, m := range s.outbox {
		a.cfg.Deliver(a.id, m)
	}
	s.outbox = nil
	for i := 0; i < len(s.sockOut); i++ {
		switch op := &s.sockOut[i]; op.kind {
		case opSend:
			a.sendTo = append(a.sendTo[:0], op.socket)
			for i+1 < len(s.sockOut) && sameFrame(op, &s.sockOut[i+1]) {
				i++
				a.sendTo = append(a.sendTo, s.sockOut[i].socket)
			}
			a.cfg.Sockets.Send(a.sendTo, op.msg, op.text, op.number)
			clear(a.sendTo)
		case opClose:
			a.cfg.Sockets.Close(op.socket, op.rare.code, op.rare.reason)
		case opAuto:
			a.cfg.Sockets.AutoResponse(op.socket, op.rare.auto.Request, op.rare.auto.Response)
		case opDrain:
			a.cfg.Sockets.Drain(op.socket)
		}
	}
	s.sockOut = nil
}

// sameFrame reports whether b sends what a sends (the event's one copy
// of a broadcast frame, State.copyFrame), with the same number.
func sameFrame(a, b *socketOp) bool {
	return b.kind == opSend && len(a.msg) > 0 && len(a.msg) == len(b.msg) && &a.msg[0] == &b.msg[0] &&
		a.text == b.text && a.number == b.number
}
