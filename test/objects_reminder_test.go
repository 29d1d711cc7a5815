package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"hellochat/apps/reminder"
	tc "hellochat/internal/testcluster"
)

// reminderObject is the storage object (and so the shard) of a list.
func reminderObject(name string) string { return reminder.Namespace.IDFromName(name).StorageObject() }

// scheduleReminder posts a reminder with its own key, resending it (same
// key, so it schedules once) until a router answers it.
func scheduleReminder(t *testing.T, base, name, key string, after time.Duration) reminder.Reminder {
	t.Helper()
	var rem reminder.Reminder
	tc.Eventually(t, 30*time.Second, func() error {
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/reminder/%s?after=%d", base, name, after.Milliseconds()), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Idempotency-Key", key)
		return doJSON(req, &rem)
	})
	return rem
}

// listReminders reads a list through a router (which wakes its object).
func listReminders(t *testing.T, base, name string) []reminder.Reminder {
	t.Helper()
	var l reminder.List
	tc.Eventually(t, 30*time.Second, func() error {
		req, err := http.NewRequest(http.MethodGet, base+"/reminder/"+name, nil)
		if err != nil {
			return err
		}
		return doJSON(req, &l)
	})
	return l.Reminders
}

func doJSON(req *http.Request, out any) error {
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

// storedReminders reads a list's reminders from the store of the node
// that serves its shard, without calling the object: a call would start
// its actor, and so arm its alarm, which is what the cluster must do by
// itself.
func storedReminders(c *tc.Cluster, name string) ([]reminder.Reminder, error) {
	object := reminderObject(name)
	for _, n := range c.Nodes {
		if n == nil || !n.Serves(object) {
			continue
		}
		// The class's keys are stored under 'u'; its reminders are "r/".
		kvs, err := n.ObjectKeys(object, []byte("ur/"), []byte("ur0"))
		if err != nil {
			return nil, err
		}
		out := make([]reminder.Reminder, 0, len(kvs))
		for _, kv := range kvs {
			var r reminder.Reminder
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return nil, fmt.Errorf("stored %q: %w", kv.Key, err)
			}
			out = append(out, r)
		}
		return out, nil
	}
	return nil, fmt.Errorf("no node serves list %q", name)
}

// waitAllFired waits until every list has want reminders stored, all fired.
func waitAllFired(t *testing.T, c *tc.Cluster, want map[string]int, timeout time.Duration) {
	t.Helper()
	tc.Eventually(t, timeout, func() error {
		for name, n := range want {
			rems, err := storedReminders(c, name)
			if err != nil {
				return err
			}
			fired := 0
			for _, r := range rems {
				if r.Fired != nil {
					fired++
				}
			}
			if len(rems) != n || fired != n {
				return fmt.Errorf("list %s: %d of %d reminders stored, %d fired", name, len(rems), n, fired)
			}
		}
		return nil
	})
}

// checkFiredOnce checks, through the router, that each list holds exactly
// the reminders scheduled on it, each fired by one successful run, not
// before its time.
func checkFiredOnce(t *testing.T, base string, scheduled map[string][]reminder.Reminder) {
	t.Helper()
	var worst time.Duration
	for name, want := range scheduled {
		got := map[string]reminder.Reminder{}
		for _, r := range listReminders(t, base, name) {
			got[r.ID] = r
		}
		if len(got) != len(want) {
			t.Errorf("list %s holds %d reminders, want %d", name, len(got), len(want))
		}
		for _, w := range want {
			r, ok := got[w.ID]
			switch {
			case !ok:
				t.Errorf("list %s: reminder %s missing", name, w.ID)
			case r.Fired == nil || r.FiredRuns != 1:
				t.Errorf("list %s: reminder %s fired %d times (fired %v), want once", name, w.ID, r.FiredRuns, r.Fired)
			case r.Fired.Before(w.Scheduled) || !r.Scheduled.Equal(w.Scheduled):
				t.Errorf("list %s: reminder %s scheduled %v, fired %v: early", name, w.ID, r.Scheduled, r.Fired)
			default:
				worst = max(worst, r.Fired.Sub(r.Scheduled))
			}
		}
	}
	t.Logf("latest firing: %v after its time", worst)
}

// TestObjectsReminderAlarmsThroughLeaderKills: 20 reminders on four lists
// are scheduled, then the leader of one list's shard is killed before any
// is due, and later the leader of another's, while reminders are still
// pending. Nobody calls the lists meanwhile: every reminder must fire on
// whichever node leads its shard then, each exactly once.
func TestObjectsReminderAlarmsThroughLeaderKills(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	names := []string{"chores", "meds", "calls", "bills"}
	const total = 20
	scheduled := map[string][]reminder.Reminder{}
	want := map[string]int{}
	earliest := time.Time{}
	// Scheduled latest-first, so the last one posted is the first due and
	// the kill below comes about 3 s before any is due.
	for i := total - 1; i >= 0; i-- {
		name := names[i%len(names)]
		r := scheduleReminder(t, c.URL(), name, fmt.Sprintf("k%02d", i), 3*time.Second+time.Duration(i)*400*time.Millisecond)
		scheduled[name] = append(scheduled[name], r)
		want[name]++
		if earliest.IsZero() || r.Scheduled.Before(earliest) {
			earliest = r.Scheduled
		}
	}
	victim := c.ObjectLeader(reminderObject(names[0]))
	c.Kill(victim)
	if killed := time.Now(); !killed.Before(earliest) {
		t.Fatalf("the first kill came %v after the first reminder was due: the test proves nothing", killed.Sub(earliest))
	}
	t.Logf("killed node%d, leader of %s's shard", victim+1, names[0])
	c.ObjectLeader(reminderObject(names[0])) // a new leader serves it
	c.Start(victim)

	// Once some have fired, kill the leader of another list's shard while
	// later reminders are pending.
	tc.Eventually(t, 30*time.Second, func() error {
		rems, err := storedReminders(c, names[1])
		if err != nil {
			return err
		}
		for _, r := range rems {
			if r.Fired != nil {
				return nil
			}
		}
		return fmt.Errorf("none of %s fired yet", names[1])
	})
	victim2 := c.ObjectLeader(reminderObject(names[1]))
	c.Kill(victim2)
	t.Logf("killed node%d, leader of %s's shard", victim2+1, names[1])
	c.ObjectLeader(reminderObject(names[1]))
	c.Start(victim2)

	waitAllFired(t, c, want, 40*time.Second)
	checkFiredOnce(t, c.URL(), scheduled)
}

// TestObjectsReminderAlarmsAfterIdleClose: reminders due after the lists'
// actors were closed for idleness still fire, woken by their shards'
// leaders, with nobody calling the lists.
func TestObjectsReminderAlarmsAfterIdleClose(t *testing.T) {
	c := tc.New(t, 3, tc.Options{ObjectIdle: 200 * time.Millisecond})
	names := []string{"plants", "walks"}
	scheduled := map[string][]reminder.Reminder{}
	want := map[string]int{}
	for i := range 6 {
		name := names[i%len(names)]
		// Further out than objectnode's wake-ahead (3 s), so the actors
		// are closed when idle, not kept for their alarm.
		r := scheduleReminder(t, c.URL(), name, fmt.Sprintf("i%d", i), 7*time.Second+time.Duration(i)*200*time.Millisecond)
		scheduled[name] = append(scheduled[name], r)
		want[name]++
	}
	tc.Eventually(t, 5*time.Second, func() error {
		for i, n := range c.Nodes {
			if a := n.ActiveObjects(); a != 0 {
				return fmt.Errorf("node%d runs %d actors", i+1, a)
			}
		}
		return nil
	})
	for name, rems := range scheduled {
		for _, r := range rems {
			if !time.Now().Before(r.Scheduled) {
				t.Fatalf("list %s's actor closed only after reminder %s was due: the test proves nothing", name, r.ID)
			}
		}
	}
	waitAllFired(t, c, want, 30*time.Second)
	checkFiredOnce(t, c.URL(), scheduled)
}

// TestObjectsReminderAlarmsThroughMembershipChange: reminders pending on
// three lists while a fourth node joins (shards move to it) and then the
// node that leads one list's shard is decommissioned. Nobody calls the
// lists: each reminder must fire once, on whichever node leads its shard
// when it is due.
func TestObjectsReminderAlarmsThroughMembershipChange(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	names := []string{"rent", "dentist", "taxes"}
	scheduled := map[string][]reminder.Reminder{}
	want := map[string]int{}
	var last time.Time
	for i := range 12 {
		name := names[i%len(names)]
		r := scheduleReminder(t, c.URL(), name, fmt.Sprintf("m%02d", i), 5*time.Second+time.Duration(i)*2*time.Second)
		scheduled[name] = append(scheduled[name], r)
		want[name]++
		if r.Scheduled.After(last) {
			last = r.Scheduled
		}
	}
	victim := c.ObjectLeader(reminderObject(names[0]))
	added := c.AddNode()
	c.WaitPlaced(90 * time.Second)
	t.Logf("node%d joined and shards moved; decommissioning node%d, leader of %s's shard", added+1, victim+1, names[0])
	if !time.Now().Before(last) {
		t.Fatalf("the last reminder was due %v before the decommission began: the test proves nothing", time.Since(last))
	}
	c.Decommission(victim, 90*time.Second)
	c.WaitPlaced(90 * time.Second)

	waitAllFired(t, c, want, 60*time.Second)
	checkFiredOnce(t, c.URL(), scheduled)
}
