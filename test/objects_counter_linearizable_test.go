package test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"hellochat/apps/counter"
	"hellochat/internal/countercheck"
	tc "hellochat/internal/testcluster"
)

// TestObjectsCounterLinearizableThroughLeaderKill runs the failover
// experiment's counter load (internal/countercheck) on an in-process
// cluster through the kill of one counter's shard leader: porcupine must
// find every counter's increments and reads linearizable, and no
// acknowledged increment may be lost or counted twice.
func TestObjectsCounterLinearizableThroughLeaderKill(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	counterLoadThrough(t, c, "lin", func(prefix string) {
		victim := c.ObjectLeader(counterObject(prefix + "-0"))
		t.Logf("killing node%d, leader of %s-0's shard", victim+1, prefix)
		c.Kill(victim)
	})
}

// TestObjectsCounterLinearizableThroughMembershipChange: the same, through
// a membership change: a fourth node joins (shards move to it, their
// objects' actors retire and start again on the new leaders), then the
// node that led the first counter's shard is decommissioned.
func TestObjectsCounterLinearizableThroughMembershipChange(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	counterLoadThrough(t, c, "mem", func(prefix string) {
		victim := c.ObjectLeader(counterObject(prefix + "-0"))
		added := c.AddNode()
		c.WaitPlaced(90 * time.Second)
		t.Logf("node%d joined and shards moved; decommissioning node%d, leader of %s-0's shard", added+1, victim+1, prefix)
		c.Decommission(victim, 90*time.Second)
		c.WaitPlaced(90 * time.Second)
	})
}

// counterLoadThrough runs the counter load on c, applies fault once some
// increments are acknowledged, waits for 100 more, and checks the whole
// history with porcupine.
func counterLoadThrough(t *testing.T, c *tc.Cluster, prefix string, fault func(prefix string)) {
	t.Helper()
	cfg := countercheck.DefaultLoad(c.URL(), &http.Client{}, prefix, counter.Window)
	cfg.Counters, cfg.Rate, cfg.ReadEvery, cfg.Attempts = 2, 20, 3, 20

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	load, err := countercheck.StartLoad(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := load.WaitSteady(ctx, 30*time.Second); err != nil {
		load.Stop()
		t.Fatal(err)
	}
	// Some history before the fault, so that it falls mid-load.
	tc.Eventually(t, 30*time.Second, func() error {
		if n := load.Acked(); n < 40 {
			return fmt.Errorf("%d increments acknowledged before the fault, want 40", n)
		}
		return nil
	})
	before := load.Acked()
	fault(cfg.Prefix)
	// Enough increments after the fault that some were in flight through
	// it and many came after it.
	tc.Eventually(t, 60*time.Second, func() error {
		if n := load.Acked(); n < before+100 {
			return fmt.Errorf("%d increments acknowledged after the fault, want 100", n-before)
		}
		return nil
	})
	res := countercheck.Check(load.Finish(ctx), countercheck.Options{Timeout: time.Minute, VisualizeDir: t.TempDir()})
	t.Log(res.Summary())
	if res.Failed() {
		t.Errorf("lost %d %v, twice %d %v, not linearizable %v, undecided %v, unread %v",
			res.Lost, res.LostEx, res.Twice, res.TwiceEx, res.NotLinearizable, res.Undecided, res.Unread)
	}
	if res.Counters != cfg.Counters || res.Acked < before+100 || res.Reads == 0 {
		t.Errorf("the load did not run as meant: %s", res.Summary())
	}
}
