package test

import (
	"fmt"
	"testing"
	"time"

	tc "hellochat/internal/testcluster"
)

// TestDeposedLeaderAnswersNoReads cuts a room's leader off from its peers
// while it still believes it leads (its election timeout, and so its
// CheckQuorum, is long; its peers' are short), lets the peers elect a new
// leader and commit more messages, then attaches to the old leader
// directly, as a router would that still follows its hint. The old leader
// must not answer with its stale view of the room (G1): it redirects, or
// tells the room's true last seq.
func TestDeposedLeaderAnswersNoReads(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000})
	room := "deposed"
	shard := c.Shard(room)
	old := c.Leader(room)
	cut := cuttableWith(c, old, 200) // 10 s at the tests' 50 ms tick
	if c.Leader(room) != old {
		t.Fatalf("leadership did not return to node%d after its restart", old+1)
	}

	w := newWriter(t, c, room, "w")
	for i := 0; i < 10; i++ {
		w.post()
	}
	w.collect(t, wait, nil)

	cut.Store(true)
	// The others elect a leader of their own, and commit through it.
	tc.Eventually(t, 20*time.Second, func() error {
		for i, n := range c.Nodes {
			if i == old {
				continue
			}
			if st, ok := n.ShardStatus(shard); ok && st.Serving {
				return nil
			}
		}
		return fmt.Errorf("no other node serves shard %d yet", shard)
	})
	for i := 0; i < 10; i++ {
		w.post()
	}
	w.collect(t, 20*time.Second, nil)
	st, _ := c.Nodes[old].ShardStatus(shard)
	t.Logf("the cut-off node%d serving shard %d: %v", old+1, shard, st.Serving)

	ev, err := openAt(t, c, old, room)
	if err != nil {
		t.Logf("the old leader refused the attach: %v", err)
		return
	}
	if op := ev.GetOpened(); op != nil && op.LastSeq != uint64(w.sent) {
		t.Fatalf("the deposed leader opened %s at seq %d; %d messages were acknowledged", room, op.LastSeq, w.sent)
	}
	t.Logf("the old leader answered %v", ev)
}
