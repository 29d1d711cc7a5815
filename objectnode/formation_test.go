package objectnode

import (
	"testing"
	"time"

	"hellochat/cluster"
)

func metas(cl string, ids ...string) []cluster.Meta {
	out := make([]cluster.Meta, len(ids))
	for i, id := range ids {
		out[i] = cluster.Meta{ID: id, Replica: "r-" + id, Cluster: cl}
	}
	return out
}

// TestFormStep walks the decision a fresh node makes from its gossip view.
// The case that matters under load: a founder that hears of the cluster
// the others formed before it hears of every founder must wait, not join;
// joining leaves every group it founds one voter short.
func TestFormStep(t *testing.T) {
	four := metas("", "n1", "n2", "n3", "n4")
	formedBy4 := formedClusterID(four)
	lateView := metas("", "n1", "n2", "n3") // n4 not heard of yet
	lateView[0].Cluster = formedBy4         // n1 formed with all four
	fullView := metas("", "n1", "n2", "n3", "n4")
	fullView[0].Cluster = formedBy4
	grown := metas("", "n1", "n2", "n3", "n4", "n5")
	grown[0].Cluster = formedBy4

	cases := []struct {
		name   string
		view   []cluster.Meta
		expect int
		waited time.Duration
		want   formAction
		id     string
	}{
		{"too few to form", metas("", "n1", "n2"), 4, time.Minute, formWait, ""},
		{"enough to form", four, 4, 0, formFound, formedBy4},
		{"a slower founder with the same view", fullView, 4, 0, formFound, formedBy4},
		{"a founder that has not heard of every founder", lateView, 4, time.Second, formWait, ""},
		{"its grace over, it joins", lateView, 4, FounderGrace, formJoin, formedBy4},
		{"a node added later never forms", lateView, 0, 0, formJoin, formedBy4},
		{"a node added to a grown cluster joins at once", grown, 4, 0, formJoin, formedBy4},
		{"an added node waits for a cluster", four, 0, time.Minute, formWait, ""},
	}
	for _, c := range cases {
		got, id := formStep(c.view, c.expect, c.waited)
		if got != c.want || id != c.id {
			t.Errorf("%s: got (%d, %q), want (%d, %q)", c.name, got, id, c.want, c.id)
		}
	}
}
