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
}

// output is what an operation answered. An increment that never got a
// value (ambiguous) has known == false: it may or may not have taken
// effect, so the model lets it through with any value.
type output struct {
	value int64
	known bool
}

// model is one counter: its state is the value (int64), which an
// increment raises by one and answers, and a read answers unchanged.
var model = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, in, out any) (bool, any) {
		v := state.(int64)
		i, o := in.(input), out.(output)
		if i.increment {
			v++
		}
		return !o.known || o.value == v, v
	},
	Equal: func(a, b any) bool { return a.(int64) == b.(int64) },
	Hash:  func(s any) uint64 { return uint64(s.(int64)) },
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
	DescribeState: func(s any) string { return fmt.Sprint(s.(int64)) },
}
