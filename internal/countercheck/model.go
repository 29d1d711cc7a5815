// Package countercheck checks a history of the counter app (apps/counter)
// as its clients saw it: porcupine decides whether the increments and
// reads are linearizable, and a direct count checks that every
// acknowledged increment was counted exactly once. It also holds the load
// that records such a history over HTTP (Load).
//
// It is a leaf: it knows the counter's routes, not the cluster, so the
// failover experiment, the nemesis and tests can all drive it.
package countercheck

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// input is an operation's argument in the model.
type input struct {
	increment bool // else a read
	// ambiguous numbers an increment that never got a value: 1, 2, ...
	// in the order of their calls (0: the increment got a value).
	ambiguous int
}

// output is what an operation answered. An increment that never got a
// value (ambiguous) has known == false: it may or may not have taken
// effect, so the model lets it through with any value.
type output struct {
	value int64
	known bool
}

// state is one counter's value, and how many of its ambiguous increments
// the linearization has taken so far.
type state struct {
	value     int64
	ambiguous int
}

// model is one counter: an increment raises the value by one and answers
// it, a read answers it unchanged.
//
// Ambiguous increments are taken in the order of their calls only. They
// are interchangeable (the same input, any output, no return), so any
// linearization can swap two of them into that order: the earlier-called
// one was already pending wherever the later one was placed. Without the
// order, porcupine tries every subset of the pending ambiguous increments
// at every step, and a few dozen of them (a long outage) make a history
// undecidable in any time; with it, only how many.
var model = porcupine.Model{
	Init: func() any { return state{} },
	Step: func(st, in, out any) (bool, any) {
		s := st.(state)
		i, o := in.(input), out.(output)
		if i.ambiguous > 0 {
			if i.ambiguous != s.ambiguous+1 {
				return false, s
			}
			s.ambiguous++
		}
		if i.increment {
			s.value++
		}
		return !o.known || o.value == s.value, s
	},
	Equal: func(a, b any) bool { return a.(state) == b.(state) },
	Hash:  func(st any) uint64 { s := st.(state); return uint64(s.value)*31 + uint64(s.ambiguous) },
	DescribeOperation: func(in, out any) string {
		i, o := in.(input), out.(output)
		what := "read"
		if i.increment {
			what = "increment"
		}
		if !o.known {
			return what + " -> ?"
		}
		return fmt.Sprintf("%s -> %d", what, o.value)
	},
	DescribeState: func(st any) string { return fmt.Sprint(st.(state).value) },
}
