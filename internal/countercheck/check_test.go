package countercheck

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// inc is an increment of counter "a" by client, called at call and
// answered v at ret (ret < 0: never answered).
func inc(client int, key string, call, ret int, v int64) Op {
	op := Op{Counter: "a", Client: client, Kind: Increment, Key: key, Call: at(call), Value: v, Attempts: 1}
	if ret >= 0 {
		op.Return = at(ret)
	}
	return op
}

func read(client, call, ret int, v int64) Op {
	op := Op{Counter: "a", Client: client, Kind: Read, Call: at(call), Value: v, Attempts: 1}
	if ret >= 0 {
		op.Return = at(ret)
	}
	return op
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ops   []Op
		final int64
		// what Check must report
		linearizable      bool
		lost, twice       int
		acked, ambiguous  int
		reads, failedRead int
	}{
		{
			name:         "one client, in order, then a read",
			ops:          []Op{inc(0, "k1", 0, 10, 1), inc(0, "k2", 20, 30, 2), inc(0, "k3", 40, 50, 3), read(0, 60, 70, 3)},
			final:        3,
			linearizable: true, acked: 3, reads: 1,
		},
		{
			name: "overlapping increments may answer in either order",
			ops: []Op{inc(0, "k1", 0, 100, 2), inc(1, "k2", 10, 50, 1),
				read(1, 60, 90, 1), read(1, 95, 120, 2)},
			final:        2,
			linearizable: true, acked: 2, reads: 2,
		},
		{
			name:         "an ambiguous increment may have been counted",
			ops:          []Op{inc(0, "k1", 0, 10, 1), inc(0, "k2", 20, -1, 0), inc(1, "k3", 30, 40, 3), read(1, 50, 60, 3)},
			final:        3,
			linearizable: true, acked: 2, ambiguous: 1, reads: 1,
		},
		{
			name:         "an ambiguous increment may not have been counted",
			ops:          []Op{inc(0, "k1", 0, 10, 1), inc(0, "k2", 20, -1, 0), inc(1, "k3", 30, 40, 2), read(1, 50, 60, 2)},
			final:        2,
			linearizable: true, acked: 2, ambiguous: 1, reads: 1,
		},
		{
			name:         "an ambiguous increment may be counted after the last read",
			ops:          []Op{inc(0, "k1", 0, -1, 0), read(1, 50, 60, 0), read(1, 70, 80, 1)},
			final:        1,
			linearizable: true, ambiguous: 1, reads: 2,
		},
		{
			name:         "a read without an answer is left out",
			ops:          []Op{inc(0, "k1", 0, 10, 1), read(1, 20, -1, 0), read(1, 30, 40, 1)},
			final:        1,
			linearizable: true, acked: 1, reads: 1, failedRead: 1,
		},
		{
			name:         "two increments acknowledged with the same value",
			ops:          []Op{inc(0, "k1", 0, 100, 1), inc(1, "k2", 10, 90, 1)},
			final:        1,
			linearizable: false, lost: 1, twice: 1, acked: 2,
		},
		{
			name:         "a read going backwards",
			ops:          []Op{inc(0, "k1", 0, 10, 1), inc(0, "k2", 20, 30, 2), read(1, 40, 50, 1)},
			final:        2,
			linearizable: false, acked: 2, reads: 1,
		},
		{
			name: "values in the opposite order of real time",
			// distinct and all counted, so only porcupine sees it: k2
			// was called after k1 was answered but got the lower value
			ops:          []Op{inc(0, "k1", 0, 10, 2), inc(1, "k2", 20, 30, 1)},
			final:        2,
			linearizable: false, acked: 2,
		},
		{
			name:         "the final value lost an acknowledged increment",
			ops:          []Op{inc(0, "k1", 0, 10, 1), inc(0, "k2", 20, 30, 2), inc(0, "k3", 40, 50, 3), read(0, 60, 70, 2)},
			final:        2,
			linearizable: false, lost: 1, acked: 3, reads: 1,
		},
		{
			name:         "an increment answered zero",
			ops:          []Op{inc(0, "k1", 0, 10, 0)},
			final:        0,
			linearizable: false, acked: 1, lost: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(History{Ops: tc.ops, Final: map[string]int64{"a": tc.final}}, Options{Timeout: 10 * time.Second})
			if got := len(r.NotLinearizable) == 0; got != tc.linearizable {
				t.Errorf("linearizable = %v, want %v", got, tc.linearizable)
			}
			if len(r.Undecided) > 0 || len(r.Unread) > 0 {
				t.Errorf("undecided %v, unread %v", r.Undecided, r.Unread)
			}
			if r.Lost != tc.lost || r.Twice != tc.twice {
				t.Errorf("lost %d %v, twice %d %v; want %d, %d", r.Lost, r.LostEx, r.Twice, r.TwiceEx, tc.lost, tc.twice)
			}
			if r.Acked != tc.acked || r.Ambiguous != tc.ambiguous || r.Reads != tc.reads || r.FailedReads != tc.failedRead {
				t.Errorf("counted %+v", r)
			}
			wantFailed := !tc.linearizable || tc.lost > 0 || tc.twice > 0
			if r.Failed() != wantFailed {
				t.Errorf("Failed() = %v, want %v", r.Failed(), wantFailed)
			}
		})
	}
}

// TestCheckKeepsCountersApart: each counter is its own history; a
// violation on one names that one only, and a counter whose final value
// could not be read fails the check.
func TestCheckKeepsCountersApart(t *testing.T) {
	b := func(op Op) Op { op.Counter = "b"; return op }
	ops := []Op{
		inc(0, "a1", 0, 10, 1), b(inc(0, "b1", 0, 10, 1)),
		inc(1, "a2", 20, 30, 2), b(inc(1, "b2", 20, 30, 1)), // b answers 1 twice
		Op{Counter: "c", Kind: Increment, Key: "c1", Call: at(0), Return: at(5), Value: 1, Attempts: 3},
	}
	r := Check(History{Ops: ops, Final: map[string]int64{"a": 2, "b": 1}}, Options{})
	if r.Counters != 3 || r.Acked != 5 || r.Retried != 1 || r.FinalSum != 3 {
		t.Errorf("counted %+v", r)
	}
	if len(r.NotLinearizable) != 1 || !strings.HasPrefix(r.NotLinearizable[0], "b") {
		t.Errorf("not linearizable: %v, want b only", r.NotLinearizable)
	}
	if r.Twice != 1 || len(r.TwiceEx) != 1 || !strings.Contains(r.TwiceEx[0], "b1, b2") {
		t.Errorf("twice %d %v", r.Twice, r.TwiceEx)
	}
	if len(r.Unread) != 1 || r.Unread[0] != "c" || !r.Failed() {
		t.Errorf("unread %v, failed %v", r.Unread, r.Failed())
	}
}

// TestCheckVisualizesAViolation: a history found not linearizable leaves
// porcupine's picture of it where the reports can point.
func TestCheckVisualizesAViolation(t *testing.T) {
	dir := t.TempDir()
	ops := []Op{inc(0, "k1", 0, 10, 1), inc(0, "k2", 20, 30, 2), read(1, 40, 50, 1)}
	r := Check(History{Ops: ops, Final: map[string]int64{"a": 2}}, Options{VisualizeDir: dir})
	if len(r.NotLinearizable) != 1 || !strings.Contains(r.NotLinearizable[0], dir+"/counter-a.html") {
		t.Fatalf("not linearizable: %v", r.NotLinearizable)
	}
}

// longHistory is one client's sequential history of n operations with an
// ambiguous increment every 100th (every other one of them counted), a
// read every 5th, and the rest acknowledged increments; readBack makes
// the last read answer one less than the value.
func longHistory(n int, readBack bool) ([]Op, int64) {
	var ops []Op
	var v int64
	for i := 0; i < n; i++ {
		call := i * 10
		switch {
		case i%100 == 50:
			if i%200 == 50 {
				v++ // counted, though its answer was lost
			}
			ops = append(ops, inc(i%2, "k", call, -1, 0))
		case i%5 == 4:
			ops = append(ops, read(i%2, call, call+5, v))
		default:
			v++
			ops = append(ops, inc(i%2, "k", call, call+5, v))
		}
	}
	if readBack {
		ops = append(ops, read(0, n*10, n*10+5, v-1))
	}
	return ops, v
}

// TestCheckManyAmbiguousIncrements: dozens of ambiguous increments, each
// pending to the end, are decided quickly, both ways; tried in every
// subset instead of in call order, they would not be within the timeout.
func TestCheckManyAmbiguousIncrements(t *testing.T) {
	for _, readBack := range []bool{false, true} {
		ops, final := longHistory(2000, readBack)
		r := Check(History{Ops: ops, Final: map[string]int64{"a": final}}, Options{Timeout: 20 * time.Second})
		if r.Ambiguous != 20 || len(r.Undecided) > 0 {
			t.Fatalf("read back %v: %s; undecided %v", readBack, r.Summary(), r.Undecided)
		}
		if got := len(r.NotLinearizable) == 0; got == readBack {
			t.Errorf("read back %v: linearizable = %v", readBack, got)
		}
	}
}
