package test

import (
	"fmt"
	"testing"
	"time"

	"hellochat/apps/reminder"
	tc "hellochat/internal/testcluster"
	"hellochat/partition"
)

// reminderKills is how many times TestReminderAlarmsThroughLeaderKill9s
// kills -9 the leader of a reminder list's shard: issue 20's target.
const reminderKills = 20

// TestReminderAlarmsThroughLeaderKill9s runs the real binaries: reminders
// on two lists come due one every 0.8 s while, 20 times, the process
// leading one list's shard (alternately) is killed with SIGKILL and
// started again once another node leads it. Nobody calls the lists until
// the end: every reminder must fire, each by exactly one successful run,
// never early.
func TestReminderAlarmsThroughLeaderKill9s(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	_, _, c := startProcesses(t)
	names := []string{"standup", "payroll"}
	scheduled := map[string][]reminder.Reminder{}
	var first, last time.Time
	const total = 40
	for i := range total {
		name := names[i%len(names)]
		r := scheduleReminder(t, c.Base, name, fmt.Sprintf("r%02d", i), 2*time.Second+time.Duration(i)*800*time.Millisecond)
		scheduled[name] = append(scheduled[name], r)
		if first.IsZero() || r.Scheduled.Before(first) {
			first = r.Scheduled
		}
		if r.Scheduled.After(last) {
			last = r.Scheduled
		}
	}

	// leaderOf is the live node the router sees leading shard ("" if none).
	leaderOf := func(shard int) (string, error) {
		v, err := c.View()
		if err != nil {
			return "", err
		}
		leader := v.Leaders[shard]
		for _, m := range v.Members {
			if m.ID == leader && m.Alive {
				return leader, nil
			}
		}
		return "", fmt.Errorf("shard %d has no live leader (view names %q)", shard, leader)
	}
	alive := func(id string) error {
		v, err := c.View()
		if err != nil {
			return err
		}
		for _, m := range v.Members {
			if m.ID == id && m.Alive {
				return nil
			}
		}
		return fmt.Errorf("%s not alive yet", id)
	}
	var kills []time.Time
	for k := range reminderKills {
		name := names[k%len(names)]
		shard := partition.Of(reminderObject(name))
		var victim string
		tc.Eventually(t, 30*time.Second, func() (err error) {
			victim, err = leaderOf(shard)
			return err
		})
		c.Node(victim).Kill9()
		kills = append(kills, time.Now())
		tc.Eventually(t, 30*time.Second, func() error {
			l, err := leaderOf(shard)
			if err == nil && l == victim {
				err = fmt.Errorf("%s still named leader of shard %d", victim, shard)
			}
			return err
		})
		if err := c.Node(victim).Start(); err != nil {
			t.Fatalf("restart %s after kill %d: %v", victim, k+1, err)
		}
		tc.Eventually(t, 30*time.Second, func() error { return alive(victim) })
	}
	t.Logf("%d kill -9 from %v to %v after the first reminder was due; the last was due %v after the first",
		len(kills), kills[0].Sub(first).Round(time.Millisecond), kills[len(kills)-1].Sub(first).Round(time.Millisecond),
		last.Sub(first))
	if !kills[len(kills)-1].After(first) || !kills[0].Before(last) {
		t.Fatalf("the kills (%v to %v) did not overlap the reminders' times (%v to %v): the test proves nothing",
			kills[0], kills[len(kills)-1], first, last)
	}

	// Now the lists may be called: wait until every reminder fired.
	tc.Eventually(t, time.Until(last)+60*time.Second, func() error {
		for name, want := range scheduled {
			fired := 0
			for _, r := range listReminders(t, c.Base, name) {
				if r.Fired != nil {
					fired++
				}
			}
			if fired != len(want) {
				return fmt.Errorf("list %s: %d of %d fired", name, fired, len(want))
			}
		}
		return nil
	})
	checkFiredOnce(t, c.Base, scheduled)
}
