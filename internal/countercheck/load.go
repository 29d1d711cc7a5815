package countercheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// LoadConfig shapes a Load.
type LoadConfig struct {
	Base string       // the router, http://host:port
	HTTP *http.Client // reaches it; each attempt has its own timeout
	// Counters are named Prefix-0, Prefix-1, ...; Clients per counter each
	// run one operation at a time at Rate per second, every ReadEvery-th
	// a read (0: none), MaxOps at most.
	Prefix    string
	Counters  int
	Clients   int
	Rate      float64
	ReadEvery int
	MaxOps    int
	// An increment is tried up to Attempts times with its key, each
	// attempt bounded by AttemptTimeout; after that it stays ambiguous.
	Attempts       int
	AttemptTimeout time.Duration
	// Window is the app's dedupe window (counter.Window): a retry more
	// than Window increments after the first attempt would count twice,
	// so Finish only retries ambiguous increments well within it.
	Window int
	// ResolveFor bounds Finish's retries of ambiguous increments.
	ResolveFor time.Duration
}

// DefaultLoad is the load the failover experiment and the nemesis run
// beside their chat load: light enough not to change what the chat
// measures, steady enough that every fault hits some increments.
func DefaultLoad(base string, hc *http.Client, prefix string, window int) LoadConfig {
	return LoadConfig{
		Base: base, HTTP: hc, Prefix: prefix,
		Counters: 3, Clients: 2, Rate: 4, ReadEvery: 5, MaxOps: 20000,
		// Retries span a minute or more: an increment becomes ambiguous
		// only in an outage longer than any step's, and ambiguous ones
		// are what make porcupine's search long.
		Attempts: 30, AttemptTimeout: 5 * time.Second,
		Window: window, ResolveFor: 30 * time.Second,
	}
}

func (cfg LoadConfig) check() error {
	switch {
	case cfg.Counters < 1 || cfg.Clients < 1 || cfg.Rate <= 0 || cfg.MaxOps < 1:
		return errors.New("counters, clients, rate and max ops must be > 0")
	case cfg.Attempts < 1 || cfg.AttemptTimeout <= 0 || cfg.Window < 2:
		return errors.New("attempts, attempt timeout and window must be > 0")
	case cfg.HTTP == nil || cfg.Base == "":
		return errors.New("no router to send to")
	}
	return nil
}

// Load runs clients that increment and read counters through a router
// and records every operation for Check.
type Load struct {
	cfg     LoadConfig
	stop    context.CancelFunc
	wg      sync.WaitGroup
	clients []*loadClient
	started time.Time
	// calls counts each counter's increments called so far, for the
	// window guard of retries.
	calls map[string]*atomic.Int64
}

// loadClient is one client of one counter.
type loadClient struct {
	l       *Load
	counter string
	id      int

	mu       sync.Mutex
	ops      []Op
	firstAck chan struct{} // closed at its first acknowledged increment
	acked    bool
}

// StartLoad starts the clients; they run until Finish or ctx ends.
func StartLoad(ctx context.Context, cfg LoadConfig) (*Load, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("counter load: %w", err)
	}
	lctx, stop := context.WithCancel(ctx)
	l := &Load{cfg: cfg, stop: stop, started: time.Now(), calls: map[string]*atomic.Int64{}}
	names := make([]string, cfg.Counters)
	for c := range names {
		names[c] = fmt.Sprintf("%s-%d", cfg.Prefix, c)
		// Filled before any client starts: the clients read calls
		// without a lock.
		l.calls[names[c]] = &atomic.Int64{}
	}
	for _, name := range names {
		for i := 0; i < cfg.Clients; i++ {
			cl := &loadClient{l: l, counter: name, id: i, firstAck: make(chan struct{})}
			l.clients = append(l.clients, cl)
			l.wg.Add(1)
			go func() { defer l.wg.Done(); cl.run(lctx) }()
		}
	}
	return l, nil
}

// Counters are the load's counter names, sorted.
func (l *Load) Counters() []string {
	seen := map[string]bool{}
	var names []string
	for _, cl := range l.clients {
		if !seen[cl.counter] {
			seen[cl.counter] = true
			names = append(names, cl.counter)
		}
	}
	sort.Strings(names)
	return names
}

// Acked counts the increments acknowledged so far.
func (l *Load) Acked() int {
	n := 0
	for _, cl := range l.clients {
		cl.mu.Lock()
		for _, op := range cl.ops {
			if op.Kind == Increment && op.Answered() {
				n++
			}
		}
		cl.mu.Unlock()
	}
	return n
}

// WaitSteady waits until every client has had an increment acknowledged:
// the load reaches every counter.
func (l *Load) WaitSteady(ctx context.Context, timeout time.Duration) error {
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, cl := range l.clients {
		select {
		case <-cl.firstAck:
		case <-tctx.Done():
			return fmt.Errorf("counter load: client %d of %s had no increment acknowledged within %v", cl.id, cl.counter, timeout)
		}
	}
	return nil
}

func (cl *loadClient) run(ctx context.Context) {
	cfg := cl.l.cfg
	tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer tick.Stop()
	for n := 0; n < cfg.MaxOps; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var op Op
		if cfg.ReadEvery > 0 && n%cfg.ReadEvery == cfg.ReadEvery-1 {
			op = cl.l.read(ctx, cl.counter, cl.id)
		} else {
			op = Op{Counter: cl.counter, Client: cl.id, Kind: Increment, Key: fmt.Sprintf("%s-c%d-%d", cl.counter, cl.id, n), Call: time.Now()}
			cl.l.increment(ctx, &op, cfg.Attempts, cl.l.calls[cl.counter].Add(1))
		}
		cl.mu.Lock()
		cl.ops = append(cl.ops, op)
		if op.Kind == Increment && op.Answered() && !cl.acked {
			cl.acked = true
			close(cl.firstAck)
		}
		cl.mu.Unlock()
	}
}

// increment tries op's key until an attempt answers a value, up to
// attempts more times, backing off between attempts. It gives up once
// half a dedupe window of the counter's increments were called after
// the op (the nth called): its id may be forgotten before long, and a
// retry would then count it twice.
func (l *Load) increment(ctx context.Context, op *Op, attempts int, nth int64) {
	backoff := 100 * time.Millisecond
	for try := 0; try < attempts && ctx.Err() == nil && l.calls[op.Counter].Load()-nth < int64(l.cfg.Window/2); try++ {
		op.Attempts++
		v, err := l.call(ctx, http.MethodPost, op.Counter, op.Key)
		if err == nil {
			op.Return, op.Value = time.Now(), v
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// read is one read of counter by client, one attempt: a read that fails
// changed nothing and need not be retried.
func (l *Load) read(ctx context.Context, counter string, client int) Op {
	op := Op{Counter: counter, Client: client, Kind: Read, Call: time.Now(), Attempts: 1}
	if v, err := l.call(ctx, http.MethodGet, counter, ""); err == nil {
		op.Return, op.Value = time.Now(), v
	}
	return op
}

// call makes one attempt and returns the value it answered. Any other
// outcome (an error status, a timeout, a broken connection) is an error:
// the caller cannot tell whether an increment was counted.
func (l *Load) call(ctx context.Context, method, counter, key string) (int64, error) {
	actx, cancel := context.WithTimeout(ctx, l.cfg.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, method, l.cfg.Base+"/counter/"+url.PathEscape(counter), nil)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, counter, err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := l.cfg.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, counter, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, fmt.Errorf("%s %s: read the answer: %w", method, counter, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s %s: %s: %s", method, counter, resp.Status, body)
	}
	var res struct {
		Value *int64 `json:"value"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Value == nil {
		return 0, fmt.Errorf("%s %s: bad answer %q", method, counter, body)
	}
	return *res.Value, nil
}

// Stop stops the clients and waits for them, for a run that gives up
// without checking.
func (l *Load) Stop() {
	l.stop()
	l.wg.Wait()
}

// Finish stops the clients (an operation in flight stays ambiguous),
// retries with their keys the ambiguous increments still within the
// dedupe window, reads every counter's final value and returns the whole
// history. The cluster must still run.
func (l *Load) Finish(ctx context.Context) History {
	l.Stop()
	var ops []Op
	for _, cl := range l.clients {
		ops = append(ops, cl.ops...) // the clients have stopped
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call.Before(ops[j].Call) })
	l.resolve(ctx, ops)

	h := History{Ops: ops, Final: map[string]int64{}}
	for _, name := range l.Counters() {
		for try := 0; try < l.cfg.Attempts && ctx.Err() == nil; try++ {
			// The final reader is one more client of the counter.
			final := l.read(ctx, name, l.cfg.Clients)
			h.Ops = append(h.Ops, final)
			if final.Answered() {
				h.Final[name] = final.Value
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second): // the shard may be electing a leader
			}
		}
	}
	return h
}

// resolve retries ambiguous increments (ops in call order) with their
// keys, within ResolveFor: one answered took effect once, and its answer
// settles it. An increment more than half a window of increments before
// the counter's last is left ambiguous: its id may have left the window,
// and a retry could count it a second time.
func (l *Load) resolve(ctx context.Context, ops []Op) {
	rctx, cancel := context.WithTimeout(ctx, l.cfg.ResolveFor)
	defer cancel()
	later := map[string]int64{} // increments of the counter called after the one at hand
	for i := len(ops) - 1; i >= 0; i-- {
		op := &ops[i]
		if op.Kind != Increment {
			continue
		}
		if !op.Answered() && rctx.Err() == nil {
			// As the nth of the calls so far: the same guard as the
			// clients'.
			l.increment(rctx, op, l.cfg.Attempts, l.calls[op.Counter].Load()-later[op.Counter])
		}
		later[op.Counter]++
	}
}
