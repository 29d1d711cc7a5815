package failover

import (
	"context"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"hellochat/internal/launch"
)

// The kinds of cycle.
const (
	kindAdd    = "add"    // start one more node; its share of the replicas moves to it
	kindRemove = "remove" // decommission a node; its replicas move off it, then it exits
	kindWipe   = "wipe"   // kill -9 a node, delete its data dir, restart it empty
	kindKill   = "kill"   // kill -9 a node, restart it
	kindPause  = "pause"  // SIGSTOP a node past the election timeout, SIGCONT it
	// Network faults: each lasts past the election timeout, then heals.
	kindPartition = "partition" // cut a node off from every other node and the router, both ways
	kindMute      = "mute"      // drop only what the node sends them
	kindDeaf      = "deaf"      // drop only what they send the node
)

// kindName is how the report names a kind.
type kindName struct{ kind, name string }

// faultNames are the faults, in the order the report lists them.
var faultNames = []kindName{
	{kindKill, "kill -9"}, {kindPause, "SIGSTOP"}, {kindWipe, "wipe (kill -9)"},
	{kindPartition, "partition"}, {kindMute, "mute (cut out)"}, {kindDeaf, "deaf (cut in)"},
}

// stepNames are every kind, planned moves first.
var stepNames = append([]kindName{{kindAdd, "add"}, {kindRemove, "remove"}}, faultNames...)

// planned reports whether a kind is a planned move, which must never
// pause a room's writes longer than Config.MaxWritePause.
func planned(kind string) bool { return kind == kindAdd || kind == kindRemove }

// cycle is what one step measured.
type cycle struct {
	kind, victim string
	nodesBefore  int
	nodesAfter   int
	shards       int // shards the victim led when the step began (add: the new node once placed)
	rooms        int // of our rooms
	// writable (kill, pause, wipe, when the victim led some of our rooms):
	// until every room it led acked a message sent after the fault.
	writable    time.Duration
	hasWritable bool
	recovered   time.Duration // kill, pause, wipe: from restart or SIGCONT until placed
	took        time.Duration // from the step's start until placed
	moved       moved
	stall       stall
	slow        bool  // a planned move paused writes longer than the limit
	err         error // the step failed: the experiment stops after it
	// start is when the step began (the fault, or the move's first
	// action), end when the cluster was placed again: the HTML report
	// marks the span on its time axis.
	start, end time.Time
}

// runner runs the cycles against one cluster under load.
type runner struct {
	ctx     context.Context
	cfg     Config
	c       *launch.Cluster
	byRoom  map[string][]*client
	clients []*client
	pk      picker
	out     io.Writer
}

func (r *runner) say(format string, args ...any) { fmt.Fprintf(r.out, format+"\n", args...) }

// run runs one cycle: picks the victim, does the step, waits until the
// cluster is placed again and measures what the step cost.
func (r *runner) run(kind string, n, total int) cycle {
	cy := cycle{kind: kind, nodesBefore: len(r.c.Nodes)}
	tag := fmt.Sprintf("failover: [%*d/%d] %-9s", len(fmt.Sprint(total)), n, total, kind)
	l, err := leaders(r.ctx, r.c, r.byRoom, 10*time.Second)
	if err != nil {
		// The step never began: the report marks it where it failed.
		cy.start = time.Now()
		cy.end = cy.start
		cy.err = err
		return cy
	}
	var led []string
	if kind != kindAdd {
		cy.victim = r.pk.pick(kind, r.c, l)
		led = l.rooms[cy.victim]
		cy.shards, cy.rooms = l.shards[cy.victim], len(led)
	}
	switch kind {
	case kindAdd:
		r.say("%s starting node%d with --expect 0 (%d nodes -> %d)", tag, r.c.NodesCreated()+1, cy.nodesBefore, cy.nodesBefore+1)
	case kindRemove:
		r.say("%s %s (%s): decommission it (%d nodes -> %d)", tag, cy.victim, ledString(cy), cy.nodesBefore, cy.nodesBefore-1)
	case kindWipe:
		r.say("%s %s (%s): kill -9, delete its data dir, restart it empty", tag, cy.victim, ledString(cy))
	case kindKill:
		r.say("%s %s (%s): kill -9, restart", tag, cy.victim, ledString(cy))
	case kindPause:
		r.say("%s %s (%s): SIGSTOP for %v, SIGCONT", tag, cy.victim, ledString(cy), r.cfg.PauseFor)
	case kindPartition:
		r.say("%s %s (%s): cut off from the other nodes and the router, both ways, for %v; heal", tag, cy.victim, ledString(cy), r.cfg.CutFor)
	case kindMute:
		r.say("%s %s (%s): drop what it sends the other nodes and the router for %v; heal", tag, cy.victim, ledString(cy), r.cfg.CutFor)
	case kindDeaf:
		r.say("%s %s (%s): drop what the other nodes and the router send it for %v; heal", tag, cy.victim, ledString(cy), r.cfg.CutFor)
	}

	marks := r.c.LogMarks()
	t0 := time.Now()
	switch kind {
	case kindAdd:
		r.add(&cy)
	case kindRemove:
		r.remove(&cy, t0, marks)
	case kindWipe, kindKill:
		r.crash(&cy, led, t0)
	case kindPause:
		r.pause(&cy, led, t0)
	case kindPartition, kindMute, kindDeaf:
		r.cut(&cy, led, t0)
	}
	t1 := time.Now()
	cy.start, cy.end = t0, t1
	cy.took = t1.Sub(t0)
	cy.nodesAfter = len(r.c.Nodes)
	cy.moved = scanMoves(r.c, marks)
	if kind == kindAdd && cy.err == nil {
		if l, err := leaders(r.ctx, r.c, r.byRoom, 10*time.Second); err == nil {
			cy.shards, cy.rooms = l.shards[cy.victim], len(l.rooms[cy.victim])
		}
	}
	// Messages sent just before the end get their acks first, so that a
	// slow one counts in full.
	waitAcked(r.clients, t1, 10*time.Second)
	cy.stall = measureStall(r.byRoom, t0, t1)
	cy.slow = planned(kind) && cy.stall.worst() > r.cfg.MaxWritePause

	if cy.err != nil {
		r.say("%s %s: ERROR after %v: %v", tag, cy.victim, cy.took.Round(time.Millisecond), cy.err)
		if p := r.node(cy.victim); p != nil {
			r.say("failover: last lines of %s:\n%s", p.LogPath(), indent(p.Tail(15)))
		}
		return cy
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s:", tag, cy.victim)
	switch {
	case kind == kindAdd:
		fmt.Fprintf(&b, " joined (%s); now leads %d shards, %d of our rooms;", orDash(cy.moved.plan), cy.shards, cy.rooms)
	case kind == kindRemove:
		fmt.Fprintf(&b, " exited by itself (%s);", orDash(cy.moved.plan))
	case cy.hasWritable:
		fmt.Fprintf(&b, " writable again after %v;", cy.writable.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, " placed after %v", cy.took.Round(time.Millisecond))
	switch kind {
	case kindKill, kindWipe:
		fmt.Fprintf(&b, " (%v after the restart)", cy.recovered.Round(time.Millisecond))
	case kindPause:
		fmt.Fprintf(&b, " (%v after SIGCONT)", cy.recovered.Round(time.Millisecond))
	case kindPartition, kindMute, kindDeaf:
		fmt.Fprintf(&b, " (%v after the heal)", cy.recovered.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "; moved %s in %d snapshots; writes paused at most %v (ack gap, %s), %v (ack wait, %s)",
		size(cy.moved.bytes), cy.moved.snapshots, cy.stall.gap.Round(time.Millisecond), cy.stall.gapRoom,
		cy.stall.lat.Round(time.Millisecond), cy.stall.latRoom)
	if cy.slow {
		fmt.Fprintf(&b, " -- OVER the %v limit for a planned move", r.cfg.MaxWritePause)
	}
	r.say("%s", b.String())
	return cy
}

func ledString(cy cycle) string {
	if cy.rooms == 0 {
		return fmt.Sprintf("leads %d shards, none of our rooms", cy.shards)
	}
	return fmt.Sprintf("leads %d shards, %d of our rooms", cy.shards, cy.rooms)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// node finds a node by id, retired ones included.
func (r *runner) node(id string) *launch.Proc {
	for _, p := range r.c.EveryNode() {
		if p.Name == id {
			return p
		}
	}
	return nil
}

// waitPlaced waits (up to timeout) until the cluster is placed, saying
// every 10 s what it still waits for.
func (r *runner) waitPlaced(cy *cycle, timeout time.Duration) error {
	return r.c.WaitPlaced(r.ctx, timeout, 10*time.Second, func(waited time.Duration, missing error) {
		r.say("failover:        %s %s: not placed yet after %v: %v", cy.kind, cy.victim, waited.Round(time.Second), missing)
	})
}

// add starts one more node and waits until the replicas the ring gives it
// have moved.
func (r *runner) add(cy *cycle) {
	p, err := r.c.AddNode()
	if err != nil {
		cy.err = err
		return
	}
	cy.victim = p.Name
	cy.err = r.waitPlaced(cy, r.cfg.PlaceTimeout)
}

// remove decommissions the victim, waits until it has moved every replica
// away and exited with status 0, then until the cluster is placed.
func (r *runner) remove(cy *cycle, t0 time.Time, marks map[*launch.Proc]int64) {
	p := r.c.Node(cy.victim)
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	st, err := p.Decommission(ctx)
	cancel()
	if err != nil {
		cy.err = fmt.Errorf("decommission: %w", err)
		return
	}
	r.say("failover:        %s is leaving with %d shard replicas", cy.victim, st.Replicas)
	deadline := t0.Add(r.cfg.PlaceTimeout)
	next := time.Now().Add(10 * time.Second)
	for {
		code, exited := p.Exited()
		if exited {
			if code != 0 {
				cy.err = fmt.Errorf("%s exited with status %d after its decommission", cy.victim, code)
				return
			}
			break
		}
		if time.Now().After(deadline) {
			cy.err = fmt.Errorf("%s still runs %v after its decommission (%s)", cy.victim, r.cfg.PlaceTimeout, r.replicasOf(p))
			return
		}
		if time.Now().After(next) {
			r.say("failover:        %s %s: still running after %v (%s)", cy.kind, cy.victim, time.Since(t0).Round(time.Second), r.replicasOf(p))
			next = time.Now().Add(10 * time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.LogSince(marks[p]), "decommissioned: this node holds no replica; stopping") {
		cy.err = fmt.Errorf("%s exited with status 0 but never logged that it holds no replica", cy.victim)
		return
	}
	r.c.Retire(p)
	cy.err = r.waitPlaced(cy, time.Until(deadline))
}

// replicasOf says how many replicas a node still holds.
func (r *runner) replicasOf(p *launch.Proc) string {
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Sprintf("status: %v", err)
	}
	return fmt.Sprintf("holds %d shard replicas", st.Replicas)
}

// crash kills the victim with -9, waits until every room it led accepts
// writes again, deletes its data dir for a wipe, restarts it and waits
// until the cluster is placed (for a wipe: the new incarnation replaced
// the old one in every group).
func (r *runner) crash(cy *cycle, led []string, t0 time.Time) {
	p := r.c.Node(cy.victim)
	p.Kill9()
	cy.writable, cy.err = waitWritable(r.byRoom, led, t0, 20*time.Second)
	cy.hasWritable = len(led) > 0 && cy.err == nil
	if cy.kind == kindWipe {
		if err := p.WipeData(); err != nil && cy.err == nil {
			cy.err = err
		}
	}
	if err := p.Start(); err != nil && cy.err == nil {
		cy.err = err
	}
	back := time.Now()
	if err := r.waitPlaced(cy, r.cfg.PlaceTimeout); err != nil && cy.err == nil {
		cy.err = err
	}
	cy.recovered = time.Since(back)
}

// pause stops the victim with SIGSTOP for PauseFor, resumes it, and waits
// until the cluster is placed.
func (r *runner) pause(cy *cycle, led []string, t0 time.Time) {
	p := r.c.Node(cy.victim)
	p.Signal(syscall.SIGSTOP)
	cy.writable, cy.err = waitWritable(r.byRoom, led, t0, 20*time.Second)
	cy.hasWritable = len(led) > 0 && cy.err == nil
	if rest := r.cfg.PauseFor - time.Since(t0); rest > 0 {
		time.Sleep(rest) // the pause itself: its length is the experiment's
	}
	p.Signal(syscall.SIGCONT)
	back := time.Now()
	if err := r.waitPlaced(cy, r.cfg.PlaceTimeout); err != nil && cy.err == nil {
		cy.err = err
	}
	cy.recovered = time.Since(back)
}

// cut drops the packets the cycle's kind says between the victim's host
// and the other nodes' and the router's for CutFor (the tools' host keeps
// its links: it only watches), heals, and waits until the cluster is
// placed.
func (r *runner) cut(cy *cycle, led []string, t0 time.Time) {
	var others []string
	for _, n := range r.c.Nodes {
		if n.Name != cy.victim {
			others = append(others, n.Name)
		}
	}
	others = append(others, r.c.Router.Name)
	var err error
	if cy.kind == kindPartition || cy.kind == kindMute {
		err = r.cfg.Cuts.Cut(cy.victim, others...)
	}
	if cy.kind == kindPartition || cy.kind == kindDeaf {
		for _, o := range others {
			if err == nil {
				err = r.cfg.Cuts.Cut(o, cy.victim)
			}
		}
	}
	if err != nil {
		r.cfg.Cuts.Heal()
		cy.err = err
		return
	}
	cy.writable, cy.err = waitWritable(r.byRoom, led, t0, 20*time.Second)
	cy.hasWritable = len(led) > 0 && cy.err == nil
	if rest := r.cfg.CutFor - time.Since(t0); rest > 0 {
		time.Sleep(rest) // the cut itself: its length is the experiment's
	}
	r.cfg.Cuts.Heal()
	back := time.Now()
	if err := r.waitPlaced(cy, r.cfg.PlaceTimeout); err != nil && cy.err == nil {
		cy.err = err
	}
	cy.recovered = time.Since(back)
}
