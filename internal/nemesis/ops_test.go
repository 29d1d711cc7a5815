package nemesis

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGenerateIsTheSeeds(t *testing.T) {
	a, err := Generate(7, 5*time.Minute, true)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(7, 5*time.Minute, true)
	c, _ := Generate(8, 5*time.Minute, true)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 7 made two lists:\n%s\n%s", Format(a), Format(b))
	}
	if slices.Equal(a, c) {
		t.Fatalf("seeds 7 and 8 made the same list")
	}
}

// TestGenerateStaysWithinWhatTheClusterTolerates replays many seeds'
// lists on a model of the cluster: one fault at a time, Founders to
// MaxNodes nodes, never a fault or remove on a node not there, every kind
// used somewhere, network faults only with cuts.
func TestGenerateStaysWithinWhatTheClusterTolerates(t *testing.T) {
	seen := map[Kind]int{}
	for seed := uint64(0); seed < 200; seed++ {
		cuts := seed%2 == 0
		ops, err := Generate(seed, 3*time.Minute, cuts)
		if err != nil {
			t.Fatal(err)
		}
		if len(ops) == 0 || len(ops) > MaxOps {
			t.Fatalf("seed %d: %d ops", seed, len(ops))
		}
		members := map[string]bool{"node1": true, "node2": true, "node3": true}
		created := Founders
		var faultEnd time.Duration
		victim := ""
		for i, op := range ops {
			seen[op.Kind]++
			where := fmt.Sprintf("seed %d op %d %s", seed, i+1, op)
			if i > 0 && op.At < ops[i-1].At {
				t.Fatalf("%s: starts before the op before it", where)
			}
			if op.At >= faultEnd {
				victim = ""
			}
			if slices.Contains(cutKinds, op.Kind) && !cuts {
				t.Fatalf("%s: a network fault without cuts", where)
			}
			if op.Kind != Add && !members[op.Node] {
				t.Fatalf("%s: %s is not in the cluster", where, op.Node)
			}
			switch {
			case op.Kind == Add:
				created++
				members[fmt.Sprintf("node%d", created)] = true
			case op.Kind == Remove:
				if op.Node == victim {
					t.Fatalf("%s: removes the faulted node", where)
				}
				delete(members, op.Node)
			case op.Kind == Forget:
				// A machine gone for good: a node down, so never beside a fault.
				if op.At < faultEnd {
					t.Fatalf("%s: forgets a node while %s is faulted", where, victim)
				}
				delete(members, op.Node)
				victim, faultEnd = op.Node, op.At
			default:
				if op.At < faultEnd {
					t.Fatalf("%s: a second fault while %s is faulted", where, victim)
				}
				if op.For < minFor || op.For > maxFor {
					t.Fatalf("%s: lasts %v", where, op.For)
				}
				victim, faultEnd = op.Node, op.At+op.For
				if op.Kind == Lag {
					created++
				}
			}
			if len(members) < Founders || len(members) > MaxNodes {
				t.Fatalf("%s: %d nodes", where, len(members))
			}
		}
	}
	for _, k := range Kinds {
		if seen[k] == 0 {
			t.Errorf("no seed used %s", k)
		}
	}
}

func TestFormatParseRoundTrip(t *testing.T) {
	ops, _ := Generate(3, 2*time.Minute, true)
	back, err := Parse(Format(ops))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ops, back) {
		t.Fatalf("round trip:\n%s\n%s", Format(ops), Format(back))
	}
	multi, err := Parse("1s kill node2 3s\n\n 4.5s add ;10s remove node4")
	if err != nil || len(multi) != 3 || multi[2] != (Op{At: 10 * time.Second, Kind: Remove, Node: "node4"}) {
		t.Fatalf("newlines and blanks: %v %v", multi, err)
	}
}

func TestParseRefusesBadLists(t *testing.T) {
	for in, want := range map[string]string{
		"1s explode node1 2s":      "unknown kind",
		"x kill node1 2s":          "start",
		"-1s kill node1 2s":        "start",
		"1s kill node1":            "takes 4 fields",
		"1s add node4":             "takes 2 fields",
		"1s kill node1 0s":         "length",
		"1s kill node1 2m":         "length",
		"1s kill router1 2s":       "want nodeN",
		"5s add; 1s kill node1 2s": "starts before",
		"1h add":                   "start",
	} {
		_, err := Parse(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error about %q", in, err, want)
		}
	}
	if _, err := Parse(strings.Repeat("1s add;", MaxOps+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("%d ops: %v", MaxOps+1, err)
	}
	for _, d := range []time.Duration{0, -time.Second, MaxDuration + time.Second} {
		if _, err := Generate(1, d, false); err == nil {
			t.Errorf("Generate for %v: no error", d)
		}
	}
}

// TestShrinkFindsTheFailingPair: a failure that needs two particular ops
// of twenty shrinks to exactly those two, and a budget stops it early.
func TestShrinkFindsTheFailingPair(t *testing.T) {
	var ops []Op
	for i := 0; i < 20; i++ {
		ops = append(ops, Op{At: time.Duration(i) * time.Second, Kind: Kill, Node: "node1", For: 2 * time.Second})
	}
	needs := func(list []Op) bool {
		return slices.Contains(list, ops[4]) && slices.Contains(list, ops[13])
	}
	runs := 0
	got, minimal := Shrink(ops, 1000, needs, func([]Op, bool) { runs++ })
	if !minimal || !slices.Equal(got, []Op{ops[4], ops[13]}) {
		t.Fatalf("shrunk to %s (minimal %v)", Format(got), minimal)
	}
	if runs > 100 {
		t.Errorf("%d runs to shrink 20 ops", runs)
	}
	got, minimal = Shrink(ops, 3, needs, nil)
	if minimal || len(got) == 2 || !needs(got) {
		t.Fatalf("with 3 runs: %d ops, minimal %v", len(got), minimal)
	}
	if got, minimal := Shrink(ops, 1000, func([]Op) bool { return true }, nil); len(got) != 0 || !minimal {
		t.Fatalf("a failure needing nothing shrank to %v", got)
	}
}
