package objectnode

import (
	"time"

	"hellochat/cluster"
)

// FounderGrace bounds how long a fresh node started with Expect > 0 waits
// for its gossip view to fill in when it sees a cluster already formed but
// fewer than Expect nodes. Under load a founder can hear of the others'
// cluster before it hears of every founder; joining then would leave the
// groups it founds with one voter missing until leaders add it back by
// snapshot, and any stall of one more replica costs those shards their
// quorum. A wiped founder, which must join, waits at most this long.
const FounderGrace = 10 * time.Second

// formAction is what a node without a cluster does next.
type formAction int

const (
	formWait  formAction = iota // no decision yet: wait for the view to change
	formFound                   // bootstrap the groups the ring places here
	formJoin                    // hold nothing until leaders add this node
)

// formStep decides, from the object nodes this node sees (itself among
// them), whether it founds the cluster, joins one, or waits; and the
// cluster id it takes. waited is how long it has been deciding.
func formStep(view []cluster.Meta, expect int, waited time.Duration) (formAction, string) {
	formed := ""
	for _, m := range view {
		if m.Cluster != "" {
			formed = m.Cluster
			break
		}
	}
	switch {
	case formed != "" && expect > 0 && formed == formedClusterID(view):
		// A founder a moment slower than another: it sees the cluster the
		// same member set formed, so it bootstraps its groups too (the
		// others count on its vote).
		return formFound, formed
	case formed != "" && expect > 0 && len(view) < expect && waited < FounderGrace:
		// Perhaps a founder that has not heard of every founder yet.
		return formWait, ""
	case formed != "":
		return formJoin, formed
	case expect > 0 && len(view) >= expect:
		return formFound, formedClusterID(view)
	}
	return formWait, ""
}
