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
	for i, cy := range cycles {
		writable := "-"
		if cy.hasWritable {
			writable = cy.writable.Round(time.Millisecond).String()
		}
		fmt.Fprintf(out, "%-3d %-9s %-7s %-5s %6d %5d %9s %9s %10s %5d %8s %8s  %s\n",
			i+1, cy.kind, cy.victim, fmt.Sprintf("%d->%d", cy.nodesBefore, cy.nodesAfter), cy.shards, cy.rooms, writable,
			cy.took.Round(time.Millisecond), size(cy.moved.bytes), cy.moved.snapshots,
			cy.stall.gap.Round(time.Millisecond), cy.stall.lat.Round(time.Millisecond), cy.status(cfg))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "shards, rooms: what the victim led when the step began (add: the new node, once placed);")
	fmt.Fprintln(out, "placed: step start until every shard's voters are the ring's replicas and every leader is the preferred one;")
	fmt.Fprintln(out, "moved: snapshot bytes streamed (nodes' \"sent snapshot\" lines); ack gap / ack wait: the longest a room went")
	fmt.Fprintln(out, "without an ack / a message waited for its ack during the step.")
	fmt.Fprintln(out)

	for _, f := range figures(cycles) {
		fmt.Fprintf(out, "%-38s %s\n", f.Label+":", f.Value())
	}
	fmt.Fprintf(out, "messages sent %d, acknowledged %d, never acknowledged %d (refused by an error frame %d), in history %d\n",
		res.sent, res.acked, res.unacked, res.refused, res.historyMessages)
	fmt.Fprintf(out, "replicas: %d shard replicas on disk over %d shards, %d rooms (%d messages) compared\n",
		res.replicas.holders, res.replicas.shards, res.replicas.roomsCompared, res.replicas.messagesCompared)
	fmt.Fprintf(out, "node logs: %d logs of %d processes, %d times a process became a shard's leader\n",
		res.raftLogs.logs, res.raftLogs.processes, res.raftLogs.elections)
	fmt.Fprintf(out, "counter: %s\n", res.counter.Summary())
	for _, c := range checks(cfg, cycles, res) {
		fmt.Fprintf(out, "%-48s %6d  %s\n", c.Name, c.Count, c.Mark())
		for _, e := range c.Examples {
			fmt.Fprintf(out, "    %s\n", e)
		}
	}
	for _, e := range failures(res) {
		fmt.Fprintln(out, e)
	}
}

// status is a step's verdict in the reports.
func (cy cycle) status(cfg Config) string {
	switch {
	case cy.err != nil:
		return "ERROR"
	case cy.slow:
		return fmt.Sprintf("SLOW (> %v)", cfg.MaxWritePause)
	}
	return "ok"
}

// The figures' metrics.
const (
	metricWritable = "writable" // until the rooms the victim led accepted a write
	metricPlaced   = "placed"   // until every shard's voters were the ring's replicas
	metricMoved    = "moved"    // snapshot bytes streamed
	metricPause    = "pause"    // the longest write pause of any room
)

// figure is one line of the figures per kind, which the text and HTML
// reports share: how a duration spread over the steps of one kind that
// succeeded, or (metricMoved) how much data they moved. Durations are
// rounded to the millisecond, as the text report prints them.
type figure struct {
	Label     string `json:"label"` // as the text report names it
	Metric    string `json:"metric"`
	Kind      string `json:"kind"`
	N         int    `json:"n"` // steps measured (metricMoved: steps of the kind)
	Median    secs   `json:"median_s,omitempty"`
	Worst     secs   `json:"worst_s,omitempty"`
	Best      secs   `json:"best_s,omitempty"`
	Bytes     int64  `json:"bytes,omitempty"`
	Snapshots int    `json:"snapshots,omitempty"`
}

// Value is the figure in the text report's words.
func (f figure) Value() string {
	switch {
	case f.Metric == metricMoved:
		return fmt.Sprintf("%s in %d snapshots over %d steps", size(f.Bytes), f.Snapshots, f.N)
	case f.N == 0:
		return "-"
	}
	return fmt.Sprintf("median %v, worst %v, best %v (n=%d)",
		time.Duration(f.Median), time.Duration(f.Worst), time.Duration(f.Best), f.N)
}

// figures computes the figures per kind over the steps that succeeded, in
// the order the reports list them: time to writable per fault, time to
// placed per kind, data moved by the kinds that move data, the longest
// write pause per kind.
func figures(cycles []cycle) []figure {
	byKind := map[string][]cycle{}
	for _, cy := range cycles {
		if cy.err == nil {
			byKind[cy.kind] = append(byKind[cy.kind], cy)
		}
	}
	spread := func(label, metric, kind string, of func(cycle) (time.Duration, bool)) figure {
		var ds []time.Duration
		for _, cy := range byKind[kind] {
			if d, ok := of(cy); ok {
				ds = append(ds, d)
			}
		}
		f := figure{Label: label, Metric: metric, Kind: kind, N: len(ds)}
		if len(ds) > 0 {
			slices.Sort(ds)
			med := ds[len(ds)/2]
			if len(ds)%2 == 0 {
				med = (ds[len(ds)/2-1] + ds[len(ds)/2]) / 2
			}
			f.Median, f.Worst, f.Best = toSecs(med), toSecs(ds[len(ds)-1]), toSecs(ds[0])
		}
		return f
	}
	writable := func(cy cycle) (time.Duration, bool) { return cy.writable, cy.hasWritable }
	took := func(cy cycle) (time.Duration, bool) { return cy.took, true }
	pauseOf := func(cy cycle) (time.Duration, bool) { return cy.stall.worst(), true }

	var fs []figure
	for _, k := range faultNames {
		if len(byKind[k.kind]) > 0 {
			fs = append(fs, spread("writable again after "+k.name, metricWritable, k.kind, writable))
		}
	}
	for _, k := range stepNames {
		if len(byKind[k.kind]) > 0 {
			fs = append(fs, spread("placed after "+k.name, metricPlaced, k.kind, took))
		}
	}
	for _, kind := range []string{kindAdd, kindRemove, kindWipe} {
		if len(byKind[kind]) > 0 {
			f := figure{Label: "data moved by " + kind + "s", Metric: metricMoved, Kind: kind, N: len(byKind[kind])}
			for _, cy := range byKind[kind] {
				f.Bytes += cy.moved.bytes
				f.Snapshots += cy.moved.snapshots
			}
			fs = append(fs, f)
		}
	}
	for _, k := range stepNames {
		if len(byKind[k.kind]) > 0 {
			fs = append(fs, spread("longest write pause, "+k.name, metricPause, k.kind, pauseOf))
		}
	}
	return fs
}

// check is one correctness check of the reports: how many things went
// wrong (none passes), with the first few of them.
type check struct {
	Name     string   `json:"name"`
	Count    int      `json:"count"`
	Examples []string `json:"examples,omitempty"`
}

// maxExamples is how many of a check's failures the reports show.
const maxExamples = 5

// OK reports whether the check passed.
func (c check) OK() bool { return c.Count == 0 }

// Mark is the check's verdict.
func (c check) Mark() string {
	if c.OK() {
		return "ok"
	}
	return "FAIL"
}

// checks lists the correctness checks in the order the reports print
// them.
func checks(cfg Config, cycles []cycle, res result) []check {
	var failed, slow check
	failed.Name = "steps that failed (not placed in time, ...)"
	slow.Name = fmt.Sprintf("planned moves pausing writes over %v", cfg.MaxWritePause)
	for i, cy := range cycles {
		if cy.err != nil {
			failed.Count++
			failed.Examples = append(failed.Examples, fmt.Sprintf("#%d %s %s: %v", i+1, cy.kind, cy.victim, cy.err))
		}
		if cy.slow {
			slow.Count++
			slow.Examples = append(slow.Examples, fmt.Sprintf("#%d %s %s: ack gap %v (%s), ack wait %v (%s)", i+1, cy.kind, cy.victim,
				cy.stall.gap.Round(time.Millisecond), cy.stall.gapRoom, cy.stall.lat.Round(time.Millisecond), cy.stall.latRoom))
		}
	}
	cs := []check{
		failed,
		slow,
		{"acknowledged messages lost", res.lost, res.lostExamples},
		{"messages neither acknowledged nor refused", res.silent, res.silentEx},
		{"messages duplicated in history", res.dup, res.dupIDs},
		{"history timestamps going backwards", res.backwards, res.backwardsEx},
		{"messages out of order at a client", res.reordered, res.reorderExamples},
		{"clients not shown their room's last messages", res.missingTail, res.tailEx},
		{"error frames about nothing outstanding", res.stray, res.strayEx},
		{"browser-side disconnects", res.disconnects, nil},
		{"shards or rooms held off the ring's replicas", res.replicas.misplaced, res.replicas.misplacedEx},
		{"rooms whose replicas differ", res.replicas.divergent, res.replicas.divergentEx},
		{"shards and terms with two leaders (node logs)", res.raftLogs.twoLeaders, res.raftLogs.twoLeadersEx},
		{"panics and Raft errors in node logs", res.raftLogs.fatal, res.raftLogs.fatalEx},
		{"counter increments lost", res.counter.Lost, res.counter.LostEx},
		{"counter values acknowledged twice", res.counter.Twice, res.counter.TwiceEx},
		{"counter linearizability violations (porcupine)", len(res.counter.NotLinearizable), res.counter.NotLinearizable},
		{"counter histories undecided (porcupine timeout)", len(res.counter.Undecided), res.counter.Undecided},
		{"counters whose final value could not be read", len(res.counter.Unread), res.counter.Unread},
	}
	for i := range cs {
		cs[i].Examples = slices.Clone(cs[i].Examples[:min(len(cs[i].Examples), maxExamples)])
	}
	return cs
}

// failures are the checks that could not run at all.
func failures(res result) []string {
	var fs []string
	if res.verifyErr != nil {
		fs = append(fs, fmt.Sprintf("history check failed: %v", res.verifyErr))
	}
	if res.replicas.err != nil {
		fs = append(fs, fmt.Sprintf("replica comparison failed: %v", res.replicas.err))
	}
	if res.raftLogs.err != nil {
		fs = append(fs, fmt.Sprintf("node log check failed: %v", res.raftLogs.err))
	}
	return fs
}
