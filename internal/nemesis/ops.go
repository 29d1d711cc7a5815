// Package nemesis runs seeded random interleavings of faults and ordinary
// operations against a real cluster under chat load, and checks what
// browsers saw, the rooms' histories, the replicas and that the cluster
// settles afterwards. A seed and a duration make a list of operations
// (Generate); the list is what runs (Run), what a failure prints, what
// Shrink cuts down, and what --ops replays.
package nemesis

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is what an operation does.
type Kind string

// The kinds of operation. Faults take a node down or cut it off for For,
// then bring it back; at most one fault is active at a time, so every
// shard keeps a majority of its three voters. Ordinary operations (add,
// remove) may run while a fault is active.
const (
	Kill      Kind = "kill"      // kill -9, restart after For
	Pause     Kind = "pause"     // SIGSTOP, SIGCONT after For
	Wipe      Kind = "wipe"      // kill -9, delete the data dir, restart empty after For
	Partition Kind = "partition" // cut off from every other process both ways for For (netlab)
	Mute      Kind = "mute"      // drop what the node sends for For (netlab)
	Deaf      Kind = "deaf"      // drop what is sent to the node for For (netlab)
	// Lag is the grow-and-shrink past a lagging replica: SIGSTOP the node,
	// add a node, decommission that node once it holds replicas, SIGCONT
	// the first For after the decommission (or once the added node left).
	Lag    Kind = "lag"
	Add    Kind = "add"    // start one more node (--expect 0)
	Remove Kind = "remove" // decommission a node; it exits once its replicas moved
	// Forget is a machine gone for good: kill -9 the node, delete its
	// disk, and forget it (objectnode forget, with the admin certificate)
	// once gossip sees it down; its replicas move to the ring's nodes. It
	// takes a node down, so no fault runs beside it.
	Forget Kind = "forget"
)

// Kinds lists every kind, faults first, in the order reports count them.
var Kinds = []Kind{Kill, Pause, Wipe, Partition, Mute, Deaf, Lag, Add, Remove, Forget}

// cutKinds need a network that can cut links.
var cutKinds = []Kind{Partition, Mute, Deaf}

// Fault reports whether a kind takes a node down or cuts it off.
func (k Kind) Fault() bool { return k != Add && k != Remove && k != Forget }

// Limits of a generated list.
const (
	Founders = 3 // nodes the cluster starts with; never fewer stay
	MaxNodes = 6 // nodes at most, leaving ones included
	MaxOps   = 200
	// MaxDuration bounds the window in which operations start.
	MaxDuration = 30 * time.Minute
	// Fault lengths: past the election timeout, short enough for many.
	minFor, maxFor = 1500 * time.Millisecond, 5 * time.Second
	// Gaps between two operations' starts.
	minGap, maxGap = 500 * time.Millisecond, 4 * time.Second
	// settleAfter is how long after a fault ends the generator lets the
	// node catch up before the next fault: a restarted node is a lagging
	// replica for a moment, and a wiped one must first replace its old
	// incarnation in every group, during which a second fault would take
	// a majority of some shard.
	killSettle, wipeSettle = 2 * time.Second, 12 * time.Second
	// lagBudget is how long the generator expects a lag to take; the run
	// holds the next fault until the lag is over anyway.
	lagBudget = 40 * time.Second
	// removeEvery spaces removes and forgets: one node leaves at a time.
	removeEvery = 20 * time.Second
	// forgetSettle is how long after a forget the generator lets the
	// forgotten node's replicas move before the next fault.
	forgetSettle = 15 * time.Second
)

// Op is one operation: at At (from the start of the load) do Kind to
// Node ("" for add: the next node by number) for For (faults).
type Op struct {
	At   time.Duration
	Kind Kind
	Node string
	For  time.Duration
}

// String is the op as Parse reads it: "12.5s kill node2 3s".
func (o Op) String() string {
	s := fmt.Sprintf("%v %s", o.At, o.Kind)
	if o.Node != "" {
		s += " " + o.Node
	}
	if o.Kind.Fault() {
		s += " " + o.For.String()
	}
	return s
}

// Format joins ops as one line Parse reads back.
func Format(ops []Op) string {
	parts := make([]string, len(ops))
	for i, o := range ops {
		parts[i] = o.String()
	}
	return strings.Join(parts, "; ")
}

// Parse reads ops as Format writes them (separated by ";" or newlines).
func Parse(s string) ([]Op, error) {
	var ops []Op
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		if len(ops) == MaxOps {
			return nil, fmt.Errorf("nemesis: more than %d operations", MaxOps)
		}
		op, err := parseOp(f)
		if err != nil {
			return nil, fmt.Errorf("nemesis: operation %d %q: %w", len(ops)+1, strings.TrimSpace(part), err)
		}
		if len(ops) > 0 && op.At < ops[len(ops)-1].At {
			return nil, fmt.Errorf("nemesis: operation %d %q starts before the one before it", len(ops)+1, strings.TrimSpace(part))
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func parseOp(f []string) (Op, error) {
	var op Op
	if len(f) < 2 {
		return op, fmt.Errorf("want: <at> <kind> [node] [for]")
	}
	at, err := time.ParseDuration(f[0])
	if err != nil || at < 0 || at > MaxDuration {
		return op, fmt.Errorf("start %q: want a duration from 0 to %v", f[0], MaxDuration)
	}
	op.At, op.Kind = at, Kind(f[1])
	if !slices.Contains(Kinds, op.Kind) {
		return op, fmt.Errorf("unknown kind %q (one of %v)", f[1], Kinds)
	}
	want := 3 // at kind node
	switch {
	case op.Kind == Add:
		want = 2
	case op.Kind.Fault():
		want = 4
	}
	if len(f) != want {
		return op, fmt.Errorf("%s takes %d fields, got %d", op.Kind, want, len(f))
	}
	if want >= 3 {
		op.Node = f[2]
		if !strings.HasPrefix(op.Node, "node") {
			return op, fmt.Errorf("node %q: want nodeN", op.Node)
		}
	}
	if want == 4 {
		d, err := time.ParseDuration(f[3])
		if err != nil || d <= 0 || d > time.Minute {
			return op, fmt.Errorf("length %q: want a duration over 0 and at most 1m", f[3])
		}
		op.For = d
	}
	return op, nil
}

// Generate makes the seed's operations, starting within duration, on a
// cluster of Founders nodes; cuts allows the network faults. It keeps the
// cluster within what it tolerates by design: one fault at a time (each
// the next only once the last one's node caught up), between Founders
// and MaxNodes nodes, one node leaving at a time, never the faulted node.
func Generate(seed uint64, duration time.Duration, cuts bool) ([]Op, error) {
	if duration <= 0 || duration > MaxDuration {
		return nil, fmt.Errorf("nemesis: duration %v: want over 0 and at most %v", duration, MaxDuration)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973)) // "nemesis"
	between := func(lo, hi time.Duration) time.Duration {
		return (lo + time.Duration(rng.Int64N(int64(hi-lo)+1))).Round(100 * time.Millisecond)
	}
	weights := map[Kind]int{Kill: 4, Pause: 3, Wipe: 1, Lag: 2, Add: 1, Remove: 2, Forget: 1}
	if cuts {
		weights[Partition], weights[Mute], weights[Deaf] = 2, 1, 1
	}
	members := []string{"node1", "node2", "node3"}
	created := Founders
	var faultFree, removeFree time.Duration
	victim, faultEnd := "", time.Duration(0) // the active fault's node, until faultEnd
	var ops []Op
	for t := 2 * time.Second; t < duration && len(ops) < MaxOps; t += between(minGap, maxGap) {
		if t >= faultEnd {
			victim = ""
		}
		var choice []Kind
		for _, k := range Kinds {
			ok := weights[k] > 0
			switch {
			case k.Fault() && t < faultFree:
				ok = false
			case k == Add && len(members) >= MaxNodes-1: // room for a lag's added node
				ok = false
			case k == Lag && len(members) >= MaxNodes:
				ok = false
			case (k == Remove || k == Forget) && (len(members) <= Founders || t < removeFree):
				ok = false
			case k == Forget && t < faultFree:
				ok = false
			}
			for i := 0; ok && i < weights[k]; i++ {
				choice = append(choice, k)
			}
		}
		if len(choice) == 0 {
			continue
		}
		op := Op{At: t, Kind: choice[rng.IntN(len(choice))]}
		switch op.Kind {
		case Add:
			created++
			members = append(members, fmt.Sprintf("node%d", created))
		case Remove, Forget:
			var can []string
			for _, m := range members {
				if m != victim {
					can = append(can, m)
				}
			}
			op.Node = can[rng.IntN(len(can))]
			members = slices.DeleteFunc(members, func(m string) bool { return m == op.Node })
			removeFree = t + removeEvery
			if op.Kind == Forget {
				victim, faultEnd = op.Node, t+forgetSettle
				faultFree = faultEnd
			}
		default:
			op.Node = members[rng.IntN(len(members))]
			op.For = between(minFor, maxFor)
			settle := killSettle
			switch op.Kind {
			case Wipe:
				settle = wipeSettle
			case Lag:
				created++ // the node it adds and removes takes the next number
				settle = lagBudget
			}
			victim, faultEnd = op.Node, t+op.For+settle
			faultFree = faultEnd
		}
		ops = append(ops, op)
	}
	return ops, nil
}
