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
	cfg := countercheck.DefaultLoad(c.URL(), &http.Client{}, "lin", counter.Window)
	cfg.Counters, cfg.Rate, cfg.ReadEvery, cfg.Attempts = 2, 20, 3, 20
	victim := c.Leader(counterObject(cfg.Prefix + "-0"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	load, err := countercheck.StartLoad(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := load.WaitSteady(ctx, 30*time.Second); err != nil {
		load.Stop()
		t.Fatal(err)
	}
	// Some history before the kill, so that the failover falls mid-load.
	tc.Eventually(t, 30*time.Second, func() error {
		if n := load.Acked(); n < 40 {
			return fmt.Errorf("%d increments acknowledged before the kill, want 40", n)
		}
		return nil
	})
	before := load.Acked()
	t.Logf("killing node%d, leader of %s-0's shard, after %d increments", victim+1, cfg.Prefix, before)
	c.Kill(victim)
	// Enough increments after the kill that some were in flight through
	// the failover and many came after it.
	tc.Eventually(t, 60*time.Second, func() error {
		if n := load.Acked(); n < before+100 {
			return fmt.Errorf("%d increments acknowledged after the kill, want 100", n-before)
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
