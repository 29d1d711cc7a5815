package nemesis

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Verdict is one seed's run, as the summary lists it.
type Verdict struct {
	Seed uint64
	Ops  []Op
	Out  Outcome
	// Shortest is the shortest failing list shrinking found (Shrunk), and
	// Minimal whether no single operation of it can be dropped.
	Shortest        []Op
	Shrunk, Minimal bool
}

// WriteSummary lists every seed's verdict, then the totals: the seeds,
// minutes of faults, faults per kind and violations found. A failed seed
// also gets its replay command and the shortest failing list found.
func WriteSummary(out io.Writer, vs []Verdict) {
	fmt.Fprintln(out, "\nnemesis: summary")
	var seeds []string
	var faultTime time.Duration
	done := map[Kind]int{}
	violations, failed := 0, 0
	for _, v := range vs {
		verdict := "ok"
		if v.Out.Failed {
			verdict = "FAIL"
			failed++
		}
		fmt.Fprintf(out, "  seed %-4d %-4s %3d ops (%s; skipped %d) in %v; faults %.1f min; violations %d\n", v.Seed, verdict, len(v.Ops),
			kindCounts(v.Out.Done, func(Kind) bool { return true }), len(v.Out.Skipped), v.Out.Took.Round(time.Second),
			v.Out.FaultTime.Minutes(), v.Out.Violations)
		if v.Out.Failed {
			fmt.Fprintf(out, "    why: %s\n", v.Out.Why)
			fmt.Fprintf(out, "    replay: make nemesis SEED=%d OPS='%s'\n", v.Seed, Format(v.Ops))
			if v.Shrunk {
				how := "1-minimal"
				if !v.Minimal {
					how = "shrink budget ran out"
				}
				fmt.Fprintf(out, "    shortest failing list found (%d ops, %s): make nemesis SEED=%d OPS='%s'\n", len(v.Shortest), how, v.Seed, Format(v.Shortest))
			}
		}
		seeds = append(seeds, fmt.Sprint(v.Seed))
		faultTime += v.Out.FaultTime
		for k, n := range v.Out.Done {
			done[k] += n
		}
		violations += v.Out.Violations
	}
	fmt.Fprintf(out, "  seeds: %s (%d failed)\n", strings.Join(seeds, ", "), failed)
	fmt.Fprintf(out, "  faults: %.1f minutes; %s\n", faultTime.Minutes(), kindCounts(done, Kind.Fault))
	fmt.Fprintf(out, "  violations found: %d\n", violations)
}

// kindCounts is "kill 2, pause 1" for the kinds that pass keep, in the
// order of Kinds; "none" when there are none.
func kindCounts(done map[Kind]int, keep func(Kind) bool) string {
	var counts []string
	for _, k := range Kinds {
		if n := done[k]; n > 0 && keep(k) {
			counts = append(counts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(counts) == 0 {
		return "none"
	}
	return strings.Join(counts, ", ")
}
