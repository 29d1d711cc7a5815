package nemesis

import (
	"strings"
	"testing"
	"time"
)

func TestSummaryTotalsSeedsFaultTimeKindsAndViolations(t *testing.T) {
	vs := []Verdict{
		{Seed: 21, Ops: make([]Op, 4), Out: Outcome{Done: map[Kind]int{Kill: 2, Add: 1, Remove: 1}, FaultTime: 45 * time.Second, Took: 2 * time.Minute}},
		{Seed: 22, Ops: make([]Op, 3), Out: Outcome{Done: map[Kind]int{Kill: 1, Wipe: 1, Lag: 1}, FaultTime: 75 * time.Second,
			Failed: true, Why: "shards and terms with two leaders (node logs): 1", Violations: 1}},
	}
	var out strings.Builder
	WriteSummary(&out, vs)
	for _, want := range []string{
		"seed 21   ok     4 ops (kill 2, add 1, remove 1; skipped 0) in 2m0s; faults 0.8 min; violations 0",
		"seed 22   FAIL   3 ops (kill 1, wipe 1, lag 1; skipped 0)",
		"why: shards and terms with two leaders (node logs): 1",
		"seeds: 21, 22 (1 failed)",
		"faults: 2.0 minutes; kill 3, wipe 1, lag 1\n",
		"violations found: 1\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}
