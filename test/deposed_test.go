package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"hellochat/apps/counter"
	"hellochat/cluster"
	tc "hellochat/internal/testcluster"
)

// TestDeposedLeaderAnswersNoReads cuts a counter's leader off from its
// peers while it still believes it leads (its election timeout, and so
// its CheckQuorum, is long; its peers' are short), lets the peers elect a
// new leader and count on, then calls the counter on the old leader
// directly, as a router would that still follows its hint. The old leader
// must not answer with its stale value (G1): it redirects, refuses, or
// tells the true value.
func TestDeposedLeaderAnswersNoReads(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	name := "deposed"
	obj := counterObject(name)
	shard := cluster.Shard(obj)
	old := c.ObjectLeader(obj)
	cut := cuttableWith(c, old, 200) // 10 s at the tests' 50 ms tick
	if c.ObjectLeader(obj) != old {
		t.Fatalf("leadership did not return to node%d after its restart", old+1)
	}

	increments := 0
	count := func(within time.Duration) {
		t.Helper()
		key := "k" + strconv.Itoa(increments)
		tc.Eventually(t, within, func() error {
			code, v, msg, err := counterRequest(http.DefaultClient, c.URL(), http.MethodPost, name, key)
			switch {
			case err != nil:
				return err
			case code != http.StatusOK:
				return fmt.Errorf("%d %s", code, msg)
			case v != int64(increments+1):
				t.Fatalf("increment %d answered %d", increments+1, v)
			}
			return nil
		})
		increments++
	}
	for i := 0; i < 10; i++ {
		count(wait)
	}

	cut.Store(true)
	// The others elect a leader of their own, and count through it.
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
		count(20 * time.Second)
	}
	st, _ := c.Nodes[old].ShardStatus(shard)
	t.Logf("the cut-off node%d serving shard %d: %v", old+1, shard, st.Serving)

	resp, err := callAt(t, c, old, name)
	switch {
	case err != nil:
		t.Logf("the old leader refused the call: %v", err)
	case resp.GetRedirect() != nil:
		t.Logf("the old leader redirected: %v", resp.GetRedirect())
	case resp.GetError() != nil:
		t.Logf("the old leader answered an error: %v", resp.GetError())
	default:
		var res counter.Result
		if err := json.Unmarshal(resp.GetResult(), &res); err != nil {
			t.Fatal(err)
		}
		if res.Value != int64(increments) {
			t.Fatalf("the deposed leader answered %d; %d increments were acknowledged", res.Value, increments)
		}
		t.Logf("the old leader answered the true value %d", res.Value)
	}
}
