package failover

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"hellochat/internal/countercheck"
)

// TestCounterViolationFailsTheRun: a counter history porcupine rejects,
// with a value acknowledged twice, fails the checks, and the text report
// shows the counter's rows and counts the way the nemesis reads them.
func TestCounterViolationFailsTheRun(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	h := countercheck.History{
		Ops: []countercheck.Op{
			{Counter: "fo-ctr-0", Client: 0, Key: "k1", Call: ms(0), Return: ms(10), Value: 1, Attempts: 1},
			{Counter: "fo-ctr-0", Client: 1, Key: "k2", Call: ms(20), Return: ms(30), Value: 1, Attempts: 2},
		},
		Final: map[string]int64{"fo-ctr-0": 1},
	}
	ch := &Checks{res: result{counter: countercheck.Check(h, countercheck.Options{})}}
	if !ch.Failed() {
		t.Fatal("a counter history with a value acknowledged twice passed")
	}
	var out bytes.Buffer
	ch.Report(&out)
	for _, want := range []string{
		"counter: counters 1: increments 2, acknowledged 2 (after a retry 1)",
		"counter increments lost",
		"counter values acknowledged twice",
		"fo-ctr-0: value 1 acknowledged to k1, k2",
		"counter linearizability violations (porcupine)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// lost 1, twice 1, not linearizable 1
	if v := ch.Violations(); v != 3 {
		t.Errorf("violations = %d, want 3:\n%s", v, out.String())
	}
	if s := ch.Summary(); !strings.Contains(s, "counter linearizability violations (porcupine): 1") {
		t.Errorf("summary %q", s)
	}
}
