package countercheck

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is what Check found in a history.
type Result struct {
	Counters   int
	Increments int // logical increments, one per Idempotency-Key
	Acked      int // increments answered with a value
	Retried    int // of the acked, answered by a retry of their key
	Ambiguous  int // increments no attempt got a value for
	Reads      int // reads answered (the final reads among them)
	// FailedReads got no value; a read changes nothing, so they are
	// left out of the history porcupine checks.
	FailedReads int
	FinalSum    int64 // the counters' final values, added up

	// Lost counts acknowledged increments the final value does not hold:
	// per counter the larger of (acknowledged - final) and (highest value
	// acknowledged - final).
	Lost   int
	LostEx []string
	// Twice counts acknowledgements of a value another increment of the
	// same counter was acknowledged with: two increments counted once.
	Twice   int
	TwiceEx []string
	// NotLinearizable and Undecided name the counters whose history
	// porcupine found illegal, or could not decide within the timeout.
	NotLinearizable []string
	Undecided       []string
	// Unread names the counters whose final value could not be read: the
	// count of lost increments could not run for them.
	Unread []string
	Took   time.Duration // porcupine's time, all counters
}

// Failed reports whether a check found something wrong or could not run.
func (r Result) Failed() bool {
	return r.Lost > 0 || r.Twice > 0 || len(r.NotLinearizable) > 0 || len(r.Undecided) > 0 || len(r.Unread) > 0
}

// Summary is the counts in one line, for the reports.
func (r Result) Summary() string {
	return fmt.Sprintf("counters %d: increments %d, acknowledged %d (after a retry %d), ambiguous %d; reads %d (%d more got no answer); final values add up to %d; porcupine took %v",
		r.Counters, r.Increments, r.Acked, r.Retried, r.Ambiguous, r.Reads, r.FailedReads, r.FinalSum, r.Took.Round(time.Millisecond))
}

// Options of Check.
type Options struct {
	// Timeout bounds porcupine's search of each counter's history; past
	// it the counter is Undecided. 0: no bound.
	Timeout time.Duration
	// VisualizeDir, when set, receives porcupine's HTML visualization of
	// each history found not linearizable (counter-NAME.html).
	VisualizeDir string
}

// Check checks h: porcupine on each counter's history, ambiguous
// increments taken as possibly counted at any time after their call, and
// the acknowledged values against the final ones.
func Check(h History, opt Options) Result {
	byCounter := map[string][]Op{}
	for _, op := range h.Ops {
		byCounter[op.Counter] = append(byCounter[op.Counter], op)
	}
	names := make([]string, 0, len(byCounter))
	for name := range byCounter {
		names = append(names, name)
	}
	sort.Strings(names)

	r := Result{Counters: len(names)}
	for _, name := range names {
		ops := byCounter[name]
		r.count(ops)
		final, read := h.Final[name]
		if !read {
			r.Unread = append(r.Unread, name)
		} else {
			r.FinalSum += final
			r.exactlyOnce(name, ops, final)
		}
		start := time.Now()
		res, info := porcupine.CheckOperationsVerbose(model, operations(ops), opt.Timeout)
		r.Took += time.Since(start)
		switch res {
		case porcupine.Illegal:
			what := name
			if opt.VisualizeDir != "" {
				what += " " + visualize(opt.VisualizeDir, name, info)
			}
			r.NotLinearizable = append(r.NotLinearizable, what)
		case porcupine.Unknown:
			r.Undecided = append(r.Undecided, fmt.Sprintf("%s (%d operations, %v)", name, len(ops), opt.Timeout))
		}
	}
	return r
}

// count adds one counter's operations to the totals.
func (r *Result) count(ops []Op) {
	for _, op := range ops {
		switch {
		case op.Kind == Read && op.Answered():
			r.Reads++
		case op.Kind == Read:
			r.FailedReads++
		case op.Answered():
			r.Increments++
			r.Acked++
			if op.Attempts > 1 {
				r.Retried++
			}
		default:
			r.Increments++
			r.Ambiguous++
		}
	}
}

// exactlyOnce checks one counter's acknowledged increments against its
// final value: their values are distinct and none above the final value,
// and the final value is at least their number. Ambiguous increments can
// only have raised the final value, so they cannot hide a loss.
func (r *Result) exactlyOnce(name string, ops []Op, final int64) {
	keysOf := map[int64][]string{}
	var acked, highest int64
	for _, op := range ops {
		if op.Kind != Increment || !op.Answered() {
			continue
		}
		acked++
		highest = max(highest, op.Value)
		keysOf[op.Value] = append(keysOf[op.Value], op.Key)
	}
	if lost := max(0, acked-final, highest-final); lost > 0 {
		r.Lost += int(lost)
		r.LostEx = append(r.LostEx, fmt.Sprintf("%s: %d increments acknowledged, the highest with %d; final value %d", name, acked, highest, final))
	}
	values := make([]int64, 0, len(keysOf))
	for v := range keysOf {
		values = append(values, v)
	}
	slices.Sort(values)
	for _, v := range values {
		if keys := keysOf[v]; len(keys) > 1 {
			r.Twice += len(keys) - 1
			r.TwiceEx = append(r.TwiceEx, fmt.Sprintf("%s: value %d acknowledged to %s", name, v, strings.Join(keys, ", ")))
		}
	}
}

// operations are one counter's operations as porcupine takes them. Times
// count from the first call. An ambiguous increment returns at infinity
// with an unknown value, as porcupine's users model a request whose
// answer was lost: it may take effect anywhere after its call, or never
// within the history (the model takes them in call order, so they are
// numbered here). A read without an answer is left out.
func operations(ops []Op) []porcupine.Operation {
	if len(ops) == 0 {
		return nil
	}
	base := ops[0].Call
	for _, op := range ops {
		if op.Call.Before(base) {
			base = op.Call
		}
	}
	byCall := slices.Clone(ops)
	slices.SortStableFunc(byCall, func(a, b Op) int { return a.Call.Compare(b.Call) })
	out := make([]porcupine.Operation, 0, len(ops))
	ambiguous := 0
	for _, op := range byCall {
		if op.Kind == Read && !op.Answered() {
			continue
		}
		in := input{increment: op.Kind == Increment}
		if in.increment && !op.Answered() {
			ambiguous++
			in.ambiguous = ambiguous
		}
		p := porcupine.Operation{
			ClientId: op.Client,
			Input:    in,
			Call:     int64(op.Call.Sub(base)),
			Output:   output{value: op.Value, known: op.Answered()},
			Return:   math.MaxInt64,
		}
		if op.Answered() {
			p.Return = int64(op.Return.Sub(base))
		}
		out = append(out, p)
	}
	return out
}

// visualize writes porcupine's view of a history that is not
// linearizable and says where, or why it could not.
func visualize(dir, name string, info porcupine.LinearizationInfo) string {
	path := filepath.Join(dir, "counter-"+name+".html")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Sprintf("(visualization not written: %v)", err)
	}
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		return fmt.Sprintf("(visualization not written: %v)", err)
	}
	return "(see " + path + ")"
}
