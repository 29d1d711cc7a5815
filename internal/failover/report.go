package failover

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// report prints the table of cycles, the figures per kind and the checks.
func report(out io.Writer, cfg Config, cycles []cycle, res result) {
	fmt.Fprintf(out, "\n%-3s %-9s %-7s %-5s %6s %5s %9s %9s %10s %5s %8s %8s  %s\n",
		"#", "step", "victim", "nodes", "shards", "rooms", "writable", "placed", "moved", "snaps", "ack gap", "ack wait", "result")
	byKind := map[string][]cycle{}
	for i, cy := range cycles {
		writable := "-"
		if cy.hasWritable {
			writable = cy.writable.Round(time.Millisecond).String()
		}
		status := "ok"
		switch {
		case cy.err != nil:
			status = "ERROR"
		case cy.slow:
			status = fmt.Sprintf("SLOW (> %v)", cfg.MaxWritePause)
		}
		fmt.Fprintf(out, "%-3d %-9s %-7s %-5s %6d %5d %9s %9s %10s %5d %8s %8s  %s\n",
			i+1, cy.kind, cy.victim, fmt.Sprintf("%d->%d", cy.nodesBefore, cy.nodesAfter), cy.shards, cy.rooms, writable,
			cy.took.Round(time.Millisecond), size(cy.moved.bytes), cy.moved.snapshots,
			cy.stall.gap.Round(time.Millisecond), cy.stall.lat.Round(time.Millisecond), status)
		if cy.err == nil {
			byKind[cy.kind] = append(byKind[cy.kind], cy)
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "shards, rooms: what the victim led when the step began (add: the new node, once placed);")
	fmt.Fprintln(out, "placed: step start until every shard's voters are the ring's replicas and every leader is the preferred one;")
	fmt.Fprintln(out, "moved: snapshot bytes streamed (nodes' \"sent snapshot\" lines); ack gap / ack wait: the longest a room went")
	fmt.Fprintln(out, "without an ack / a message waited for its ack during the step.")
	fmt.Fprintln(out)

	pick := func(kind string, f func(cycle) (time.Duration, bool)) []time.Duration {
		var ds []time.Duration
		for _, cy := range byKind[kind] {
			if d, ok := f(cy); ok {
				ds = append(ds, d)
			}
		}
		return ds
	}
	writable := func(cy cycle) (time.Duration, bool) { return cy.writable, cy.hasWritable }
	took := func(cy cycle) (time.Duration, bool) { return cy.took, true }
	pauseOf := func(cy cycle) (time.Duration, bool) { return cy.stall.worst(), true }
	movedBy := func(kind string) string {
		var total int64
		n := 0
		for _, cy := range byKind[kind] {
			total += cy.moved.bytes
			n += cy.moved.snapshots
		}
		return fmt.Sprintf("%s in %d snapshots over %d steps", size(total), n, len(byKind[kind]))
	}
	line := func(name, value string) { fmt.Fprintf(out, "%-38s %s\n", name+":", value) }
	ran := func(kind string) bool { return len(byKind[kind]) > 0 }
	for _, f := range faultNames {
		if ran(f.kind) {
			line("writable again after "+f.name, stats(pick(f.kind, writable)))
		}
	}
	for _, f := range stepNames {
		if ran(f.kind) {
			line("placed after "+f.name, stats(pick(f.kind, took)))
		}
	}
	for _, kind := range []string{kindAdd, kindRemove, kindWipe} {
		if ran(kind) {
			line("data moved by "+kind+"s", movedBy(kind))
		}
	}
	for _, f := range stepNames {
		if ran(f.kind) {
			line("longest write pause, "+f.name, stats(pick(f.kind, pauseOf)))
		}
	}
	fmt.Fprintf(out, "messages sent %d, acknowledged %d, never acknowledged %d, in history %d\n",
		res.sent, res.acked, res.unacked, res.historyMessages)
	fmt.Fprintf(out, "replicas: %d shard replicas on disk over %d shards, %d rooms compared\n",
		res.replicas.holders, res.replicas.shards, res.replicas.roomsCompared)

	failedSteps, slowSteps := 0, 0
	var failedEx, slowEx []string
	for i, cy := range cycles {
		if cy.err != nil {
			failedSteps++
			failedEx = append(failedEx, fmt.Sprintf("#%d %s %s: %v", i+1, cy.kind, cy.victim, cy.err))
		}
		if cy.slow {
			slowSteps++
			slowEx = append(slowEx, fmt.Sprintf("#%d %s %s: ack gap %v (%s), ack wait %v (%s)", i+1, cy.kind, cy.victim,
				cy.stall.gap.Round(time.Millisecond), cy.stall.gapRoom, cy.stall.lat.Round(time.Millisecond), cy.stall.latRoom))
		}
	}
	check := func(name string, n int, examples []string) {
		mark := "ok"
		if n > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "%-48s %6d  %s\n", name, n, mark)
		for _, e := range examples[:min(len(examples), 5)] {
			fmt.Fprintf(out, "    %s\n", e)
		}
	}
	check("steps that failed (not placed in time, ...)", failedSteps, failedEx)
	check(fmt.Sprintf("planned moves pausing writes over %v", cfg.MaxWritePause), slowSteps, slowEx)
	check("acknowledged messages lost", res.lost, res.lostExamples)
	check("messages duplicated in history", res.dup, res.dupIDs)
	check("messages out of order at a client", res.reordered, res.reorderExamples)
	check("browser-side disconnects", res.disconnects, nil)
	check("shards or rooms held off the ring's replicas", res.replicas.misplaced, res.replicas.misplacedEx)
	check("rooms whose replicas differ", res.replicas.divergent, res.replicas.divergentEx)
	if res.verifyErr != nil {
		fmt.Fprintf(out, "history check failed: %v\n", res.verifyErr)
	}
	if res.replicas.err != nil {
		fmt.Fprintf(out, "replica comparison failed: %v\n", res.replicas.err)
	}
}

func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("median %v, worst %v, best %v (n=%d)", med.Round(time.Millisecond),
		s[len(s)-1].Round(time.Millisecond), s[0].Round(time.Millisecond), len(s))
}
