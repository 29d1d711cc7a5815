package nemesis

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hellochat/internal/failover"
	"hellochat/internal/launch"
)

// Config of one run.
type Config struct {
	Bin, Dir string // binaries; data and logs (emptied first)
	// Network places the processes (nil: loopback); Cuts, when not nil,
	// cuts links between them, for the network faults.
	Network launch.Network
	Cuts    failover.Cutter
	Rooms   int
	Clients int     // per room
	Rate    float64 // messages per second per client
	// Settle bounds the liveness check: from the end of the last
	// operation until the cluster is placed.
	Settle time.Duration
	// OpWait bounds how long an operation waits for the cluster to allow
	// it (the last fault over, a node that left gone) before it is
	// skipped.
	OpWait time.Duration
	// SnapshotRate, when > 0, throttles every node's snapshot streams to
	// that many bytes per second: moves then take seconds to minutes, and
	// the run's faults and changes overlap replicas still catching up.
	SnapshotRate int
	Out          io.Writer
}

// Defaults of Config.
const (
	DefaultSettle = 2 * time.Minute
	DefaultOpWait = time.Minute
	// leaveTimeout bounds a decommissioned node's leaving: longer, and
	// the node is stuck leaving, a liveness failure.
	leaveTimeout = 2 * time.Minute
	// ackWait bounds the wait for the last acks once the load stops.
	ackWait = 30 * time.Second
	// tick is how often the run looks at its operations and nodes.
	tick = 50 * time.Millisecond
	// lagGrowWait bounds how long a lag waits for the added node to take
	// replicas before decommissioning it anyway.
	lagGrowWait = 30 * time.Second
)

// Outcome is what a run found.
type Outcome struct {
	Failed bool
	Why    string       // the failed checks, in one line
	Done   map[Kind]int // operations carried out, per kind
	// FaultTime is how long faults were active, summed over the faults.
	FaultTime time.Duration
	// Violations counts what the checks found wrong (messages lost,
	// duplicated, reordered or never answered, replicas differing, two
	// leaders of a shard in a term, panics in node logs, a check that
	// could not run) and the crash and liveness findings.
	Violations int
	Skipped    []Op          // operations the cluster never allowed within OpWait, or naming a node not there
	Took       time.Duration // the whole run
	Err        error         // the run could not start or finish (no verdict)
}

// fault is the active fault.
type fault struct {
	op    Op
	p     *launch.Proc
	start time.Time
	until time.Time // kill, wipe, pause, cuts: when it ends
	// lag's phases: the node added while p is stopped, when it was
	// decommissioned.
	added        *launch.Proc
	decommission time.Time
}

// leaving is a decommissioned node not yet gone.
type leaving struct {
	p     *launch.Proc
	since time.Time
}

// run is one run's state; one goroutine owns it (and the cluster).
type run struct {
	ctx     context.Context
	cfg     Config
	c       *launch.Cluster
	load    *failover.Load
	t0      time.Time
	active  *fault
	leaving []leaving
	// deadVoter is what noDeadVoter last found, at deadVoterAt.
	deadVoter   string
	deadVoterAt time.Time
	down        map[*launch.Proc]bool // killed by us, not restarted yet
	out         Outcome
	broken      []string // liveness and crash findings during the run
}

func (r *run) say(format string, args ...any) {
	fmt.Fprintf(r.cfg.Out, "nemesis: [%6.1fs] %s\n", time.Since(r.t0).Seconds(), fmt.Sprintf(format, args...))
}

// Run starts a cluster of Founders nodes in cfg.Dir, puts it under chat
// load, carries out ops at their times, waits until the cluster settles,
// and checks everything. A returned Outcome with Err set has no verdict.
func Run(ctx context.Context, cfg Config, ops []Op) Outcome {
	start := time.Now()
	r := &run{ctx: ctx, cfg: cfg, down: map[*launch.Proc]bool{}, t0: start}
	r.out.Done = map[Kind]int{}
	r.out.Err = r.run(ops)
	r.out.Took = time.Since(start)
	return r.out
}

func (r *run) run(ops []Op) error {
	cfg := r.cfg
	if cfg.Settle <= 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.OpWait <= 0 {
		cfg.OpWait = DefaultOpWait
	}
	r.cfg = cfg
	for _, op := range ops {
		if slices.Contains(cutKinds, op.Kind) && cfg.Cuts == nil {
			return fmt.Errorf("nemesis: %s needs a network whose links can be cut (--netlab)", op)
		}
	}
	if err := launch.PrepareDir(cfg.Dir); err != nil {
		return fmt.Errorf("nemesis: prepare %s: %w", cfg.Dir, err)
	}
	flags := slices.Clone(failover.LogFlags)
	if cfg.SnapshotRate > 0 {
		flags = append(flags, "--snapshot-rate", strconv.Itoa(cfg.SnapshotRate))
	}
	c, err := launch.Start(launch.Options{Bin: cfg.Bin, Dir: cfg.Dir, Nodes: Founders, Network: cfg.Network, NodeFlags: flags})
	if err != nil {
		return fmt.Errorf("nemesis: start the cluster: %w", err)
	}
	r.c = c
	defer func() {
		if cfg.Cuts != nil {
			cfg.Cuts.Heal()
		}
		c.Kill()
	}()
	if err := c.WaitPlaced(r.ctx, cfg.Settle, 0, nil); err != nil {
		return fmt.Errorf("nemesis: the new cluster: %w", err)
	}
	r.load, err = failover.StartLoad(r.ctx, c, "nm", cfg.Rooms, cfg.Clients, cfg.Rate)
	if err != nil {
		return fmt.Errorf("nemesis: start the load: %w", err)
	}
	r.t0 = time.Now()
	r.say("cluster of %d nodes under load (%d rooms x %d clients x %.1f msg/s); %d operations", Founders, cfg.Rooms, cfg.Clients, cfg.Rate, len(ops))

	r.operate(ops)
	if r.active != nil { // a run that broke off mid-fault
		r.out.FaultTime += time.Since(r.active.start)
	}

	if len(r.broken) == 0 && r.ctx.Err() == nil {
		r.say("all operations done; the cluster must settle within %v", cfg.Settle)
		settleStart := time.Now()
		err := c.WaitPlaced(r.ctx, cfg.Settle, 10*time.Second, func(waited time.Duration, missing error) {
			r.say("not settled after %v: %v", waited.Round(time.Second), missing)
		})
		if err != nil {
			r.broken = append(r.broken, fmt.Sprintf("liveness: not settled within %v of the last operation: %v", cfg.Settle, err))
		} else {
			r.say("settled %v after the last operation", time.Since(settleStart).Round(time.Millisecond))
		}
	}
	if r.ctx.Err() != nil {
		return fmt.Errorf("nemesis: interrupted: %w", r.ctx.Err())
	}

	r.say("stopping the load; checking acks, deliveries and histories")
	checks := r.load.Finish(r.ctx, c, ackWait)
	for _, p := range c.Nodes {
		p.Signal(syscall.SIGCONT) // a node left stopped by a failed run still has to exit
	}
	if err := c.Stop(30 * time.Second); err != nil {
		r.broken = append(r.broken, fmt.Sprintf("stop: %v", err))
	} else {
		checks.CompareReplicas(c, r.load.Rooms())
	}
	// Every log of the run, the killed, wiped and retired nodes' included:
	// whether the nodes stopped or not, what they logged stays.
	checks.ScanLogs(c)
	checks.Report(r.cfg.Out)
	r.out.Violations = checks.Violations() + len(r.broken)
	var why []string
	why = append(why, r.broken...)
	if checks.Failed() {
		why = append(why, checks.Summary())
	}
	for _, b := range r.broken {
		fmt.Fprintf(r.cfg.Out, "FAIL %s\n", b)
	}
	r.out.Failed = len(why) > 0
	r.out.Why = strings.Join(why, "; ")
	return nil
}

// operate carries out the ops in order, each at its time once the
// cluster allows it, and ends when the last is over (its fault healed,
// its node gone), at a crash or liveness failure, or when the ops ran
// past their last start by OpWait plus the longest an op takes.
func (r *run) operate(ops []Op) {
	last := time.Duration(0)
	if len(ops) > 0 {
		last = ops[len(ops)-1].At
	}
	hard := r.t0.Add(last + r.cfg.OpWait + lagGrowWait + leaveTimeout + time.Minute)
	next, lastReport := 0, time.Now()
	for r.ctx.Err() == nil && len(r.broken) == 0 {
		now := time.Now()
		if next == len(ops) && r.active == nil && len(r.leaving) == 0 {
			return
		}
		if now.After(hard) {
			r.broken = append(r.broken, fmt.Sprintf("liveness: operations still running %v after the last one started", now.Sub(r.t0.Add(last)).Round(time.Second)))
			return
		}
		r.watch(now)
		r.advance(now)
		for next < len(ops) {
			op := ops[next]
			due := r.t0.Add(op.At)
			if now.Before(due) {
				break
			}
			ok, why := r.allowed(op)
			if why != "" {
				r.say("skip %s: %s", op, why)
				r.out.Skipped = append(r.out.Skipped, op)
				next++
				continue
			}
			if !ok {
				if now.Sub(due) > r.cfg.OpWait {
					r.say("skip %s: not allowed within %v", op, r.cfg.OpWait)
					r.out.Skipped = append(r.out.Skipped, op)
					next++
					continue
				}
				break
			}
			r.begin(op, now)
			next++
		}
		if now.Sub(lastReport) >= 10*time.Second {
			lastReport = now
			sent, acked, waiting := r.load.Progress()
			act := "none"
			if r.active != nil {
				act = r.active.op.String()
			}
			r.say("%d nodes, %d leaving; op %d of %d; active fault %s; messages sent %d, acked %d, waiting %d",
				len(r.c.Nodes), len(r.leaving), next, len(ops), act, sent, acked, waiting)
		}
		time.Sleep(tick) // the schedule's own clock: nothing to wait on but time
	}
}

// watch retires nodes that left and notes nodes that died on their own
// and nodes stuck leaving.
func (r *run) watch(now time.Time) {
	for i := 0; i < len(r.leaving); i++ {
		l := r.leaving[i]
		code, exited := l.p.Exited()
		switch {
		case exited && code == 0:
			r.c.Retire(l.p)
			r.say("%s left after %v", l.p.Name, now.Sub(l.since).Round(time.Millisecond))
			r.leaving = slices.Delete(r.leaving, i, i+1)
			i--
		case exited:
			r.fail(l.p, "%s exited with status %d while leaving", l.p.Name, code)
		case now.Sub(l.since) > leaveTimeout && !(r.active != nil && r.active.added == l.p):
			r.broken = append(r.broken, fmt.Sprintf("liveness: %s still leaving %v after its decommission (%s)", l.p.Name, leaveTimeout, r.replicasOf(l.p)))
		}
	}
	for _, p := range r.c.Nodes {
		if r.down[p] || r.isLeaving(p) {
			continue
		}
		if code, exited := p.Exited(); exited {
			r.fail(p, "%s exited by itself (status %d)", p.Name, code)
		}
	}
}

// fail notes a finding about p and shows the end of its log.
func (r *run) fail(p *launch.Proc, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.broken = append(r.broken, msg)
	r.say("FAIL %s; the end of %s:\n%s", msg, p.LogPath(), p.Tail(10))
}

func (r *run) replicasOf(p *launch.Proc) string {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Sprintf("status: %v", err)
	}
	return fmt.Sprintf("holds %d shard replicas", st.Replicas)
}

func (r *run) isLeaving(p *launch.Proc) bool {
	return slices.ContainsFunc(r.leaving, func(l leaving) bool { return l.p == p })
}

// allowed says whether op may start now; why is set when it never can
// (its node is not in the cluster, as after an earlier op was dropped).
func (r *run) allowed(op Op) (ok bool, why string) {
	var p *launch.Proc
	if op.Kind != Add {
		if p = r.c.Node(op.Node); p == nil {
			return false, op.Node + " is not in the cluster"
		}
		if r.isLeaving(p) {
			return false, op.Node + " is leaving"
		}
	}
	staying := len(r.c.Nodes) - len(r.leaving)
	if (op.Kind == Wipe || op.Kind == Forget) && r.active == nil && !r.noDeadVoter() {
		return false, ""
	}
	switch {
	case op.Kind.Fault():
		return r.active == nil && (op.Kind != Lag || len(r.c.Nodes) < MaxNodes), ""
	case op.Kind == Add:
		return len(r.c.Nodes) < MaxNodes, ""
	case op.Kind == Forget:
		return r.active == nil && staying > Founders && len(r.leaving) == 0, ""
	default: // remove
		if r.active != nil && (r.active.p == p || r.active.added == p) {
			return false, ""
		}
		return staying > Founders && len(r.leaving) == 0, ""
	}
}

// begin starts op.
func (r *run) begin(op Op, now time.Time) {
	r.out.Done[op.Kind]++
	var p *launch.Proc
	if op.Kind != Add {
		p = r.c.Node(op.Node)
	}
	late := ""
	if d := now.Sub(r.t0.Add(op.At)); d > time.Second {
		late = fmt.Sprintf(" (%v late: waited for the cluster to allow it)", d.Round(100*time.Millisecond))
	}
	r.say("begin %s%s", op, late)
	switch op.Kind {
	case Add:
		if np, err := r.c.AddNode(); err != nil {
			r.broken = append(r.broken, fmt.Sprintf("add: %v", err))
		} else {
			r.say("%s started", np.Name)
		}
		return
	case Remove:
		r.decommission(p, now)
		return
	}
	until := now.Add(op.For)
	if op.Kind == Forget {
		until = now.Add(forgetTimeout)
	}
	f := &fault{op: op, p: p, start: now, until: until}
	r.active = f
	switch op.Kind {
	case Kill, Wipe, Forget:
		r.down[p] = true
		p.Kill9()
	case Pause:
		p.Signal(syscall.SIGSTOP)
	case Lag:
		p.Signal(syscall.SIGSTOP)
		// The node is added at once, so that it takes the number the
		// generator gave it, before any later add.
		r.advanceLag(f, now)
	case Partition, Mute, Deaf:
		if err := r.cut(op.Kind, p.Name); err != nil {
			r.broken = append(r.broken, fmt.Sprintf("%s: %v", op, err))
		}
	}
}

func (r *run) decommission(p *launch.Proc, now time.Time) {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	st, err := p.Decommission(ctx)
	cancel()
	if err != nil {
		r.broken = append(r.broken, fmt.Sprintf("decommission %s: %v", p.Name, err))
		return
	}
	r.say("%s is leaving with %d shard replicas", p.Name, st.Replicas)
	r.leaving = append(r.leaving, leaving{p: p, since: now})
}

// cut drops what the kind says between node and every other process.
func (r *run) cut(kind Kind, node string) error {
	var others []string
	for _, n := range r.c.Nodes {
		if n.Name != node {
			others = append(others, n.Name)
		}
	}
	others = append(others, r.c.Router.Name)
	if kind == Partition || kind == Mute {
		if err := r.cfg.Cuts.Cut(node, others...); err != nil {
			return fmt.Errorf("cut %s off: %w", node, err)
		}
	}
	if kind == Partition || kind == Deaf {
		for _, o := range others {
			if err := r.cfg.Cuts.Cut(o, node); err != nil {
				return fmt.Errorf("cut %s from %s: %w", o, node, err)
			}
		}
	}
	return nil
}

// advance moves the active fault on: ends it when due, or takes a lag to
// its next phase.
func (r *run) advance(now time.Time) {
	f := r.active
	if f == nil {
		return
	}
	p := f.p
	if f.op.Kind == Lag {
		r.advanceLag(f, now)
		return
	}
	if f.op.Kind == Forget {
		r.advanceForget(f, now)
		return
	}
	if now.Before(f.until) {
		return
	}
	switch f.op.Kind {
	case Kill, Wipe:
		if f.op.Kind == Wipe {
			if err := p.WipeData(); err != nil {
				r.broken = append(r.broken, fmt.Sprintf("wipe %s: %v", p.Name, err))
			}
		}
		if err := p.Start(); err != nil {
			r.broken = append(r.broken, fmt.Sprintf("restart %s: %v", p.Name, err))
		}
		delete(r.down, p)
	case Pause:
		p.Signal(syscall.SIGCONT)
	case Partition, Mute, Deaf:
		r.cfg.Cuts.Heal()
	}
	r.say("end %s", f.op)
	r.out.FaultTime += now.Sub(f.start)
	r.active = nil
}

// advanceLag: stopped -> a node added -> that node
// decommissioned once it holds replicas (or after lagGrowWait) -> the
// stopped node resumed For after the decommission, or once the added
// node has left.
func (r *run) advanceLag(f *fault, now time.Time) {
	switch {
	case f.added == nil:
		np, err := r.c.AddNode()
		if err != nil {
			r.broken = append(r.broken, fmt.Sprintf("lag: add: %v", err))
			r.endLag(f)
			return
		}
		f.added, f.until = np, now
		r.say("lag: %s stopped; added %s", f.p.Name, np.Name)
	case f.decommission.IsZero():
		if !r.holdsReplicas(f.added) && now.Sub(f.until) < lagGrowWait {
			return
		}
		r.say("lag: %s holds replicas (or waited %v); decommission it", f.added.Name, lagGrowWait)
		r.decommission(f.added, now)
		f.decommission = now
		if len(r.broken) > 0 {
			r.endLag(f)
		}
	default:
		if now.Sub(f.decommission) < f.op.For && r.isLeaving(f.added) {
			return
		}
		r.endLag(f)
	}
}

func (r *run) endLag(f *fault) {
	f.p.Signal(syscall.SIGCONT)
	r.say("end %s", f.op)
	r.out.FaultTime += time.Since(f.start)
	r.active = nil
}

// holdsReplicas asks a node whether it holds any shard replica yet.
func (r *run) holdsReplicas(p *launch.Proc) bool {
	ctx, cancel := context.WithTimeout(r.ctx, time.Second)
	defer cancel()
	st, err := p.Status(ctx)
	return err == nil && st.Replicas > 0
}

// forgetTimeout bounds a forget: until gossip sees the killed node down
// and a live node takes the tombstone.
const forgetTimeout = 30 * time.Second

// advanceForget asks a live node to forget the killed node (refused while
// gossip still shows it alive); once one has, the machine is gone: its
// disk is deleted and it is retired.
func (r *run) advanceForget(f *fault, now time.Time) {
	p := f.p
	var via *launch.Proc
	for _, n := range r.c.Nodes {
		if n != p && !r.down[n] {
			via = n
			break
		}
	}
	if via == nil {
		r.broken = append(r.broken, fmt.Sprintf("%s: no live node to forget it through", f.op))
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	resp, err := via.Forget(ctx, p.Name)
	cancel()
	if err != nil {
		if now.After(f.until) {
			r.broken = append(r.broken, fmt.Sprintf("%s: not forgotten within %v: %v", f.op, forgetTimeout, err))
		}
		return
	}
	if err := p.WipeData(); err != nil {
		r.broken = append(r.broken, fmt.Sprintf("%s: delete its disk: %v", f.op, err))
	}
	delete(r.down, p)
	r.c.Lose(p)
	r.say("end %s: forgotten through %s; the ring keeps %d nodes", f.op, via.Name, resp.RingNodes)
	r.out.FaultTime += now.Sub(f.start)
	r.active = nil
}

// noDeadVoter reports whether no group still counts a voter that will
// never answer (a wiped or forgotten node's replica not yet replaced). A
// second lost disk in such a group could leave it without a quorum for
// good, beyond what the cluster tolerates by design, so wipes and forgets
// wait for it. It asks the nodes at most every deadVoterEvery.
func (r *run) noDeadVoter() bool {
	if time.Since(r.deadVoterAt) < deadVoterEvery {
		return r.deadVoter == ""
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	old, err := r.c.OldVoter(ctx)
	if err != nil {
		old = err.Error() // a node that cannot answer: ask again later
	}
	if old != "" && old != r.deadVoter {
		r.say("waiting to lose another disk: %s", old)
	}
	r.deadVoter, r.deadVoterAt = old, time.Now()
	return old == ""
}

// deadVoterEvery spaces noDeadVoter's questions to the nodes.
const deadVoterEvery = 500 * time.Millisecond
