package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	tc "hellochat/internal/testcluster"
	"hellochat/router"
)

// clusterViewNodes and clusterViewShards read the drawn view: what the
// SVG shows, not the data behind it.
const (
	clusterViewNodes  = `Array.from(document.querySelectorAll('#nodes g.node')).map(g => g.dataset.node + '=' + g.dataset.state)`
	clusterViewShards = `Array.from(document.querySelectorAll('#shards g.shard')).map(g => g.dataset.leader)`
)

// TestClusterViewShowsAKill opens the live cluster view (/cluster on the
// router's admin listener) in headless Chromium, checks it draws three
// live nodes and 64 led shards, kills the node leading the most shards, and
// waits until the view shows it down and every one of its shards under a
// new leader.
func TestClusterViewShowsAKill(t *testing.T) {
	chrome := browserFindChromium(t)
	c := tc.New(t, 3, tc.Options{})
	allocCtx, console := browserStart(t, chrome)
	tab := browserOpenTab(t, allocCtx, "viewer", console)
	defer tab.close()
	tab.navigate("http://" + c.Router.AdminAddr() + "/cluster")

	everyShardLed := func(leaders []string, not string) error {
		if len(leaders) != 64 {
			return fmt.Errorf("%d shards drawn", len(leaders))
		}
		for s, l := range leaders {
			if l == "" || l == not {
				return fmt.Errorf("shard %d drawn with leader %q", s, l)
			}
		}
		return nil
	}
	browserWaitEval(tab, "three live nodes", clusterViewNodes, func(nodes []string) error {
		if strings.Join(nodes, " ") != "node1=alive node2=alive node3=alive" {
			return fmt.Errorf("nodes drawn: %v", nodes)
		}
		return nil
	})
	leaders := browserWaitEval(tab, "64 led shards", clusterViewShards, func(l []string) error { return everyShardLed(l, "") })
	count := map[string]int{}
	for _, l := range leaders {
		count[l]++
	}
	victim := "node1"
	for id, n := range count {
		if n > count[victim] {
			victim = id
		}
	}
	summary := browserEval[string](tab, "summary", `document.getElementById('summary').textContent`)
	if !strings.Contains(summary, "3 of 3 nodes alive") || !strings.Contains(summary, "64 of 64 shards led") {
		t.Fatalf("summary %q", summary)
	}

	start := time.Now()
	c.Kill(c.NodeIndex(victim))
	browserWaitEval(tab, victim+" shown down, its shards under new leaders",
		`[`+clusterViewNodes+`, `+clusterViewShards+`]`, func(v [][]string) error {
			if len(v) != 2 {
				return fmt.Errorf("eval gave %v", v)
			}
			down := false
			for _, n := range v[0] {
				down = down || n == victim+"=down"
			}
			if !down {
				return fmt.Errorf("nodes drawn: %v", v[0])
			}
			return everyShardLed(v[1], victim)
		})
	t.Logf("%s led %d shards; the view showed it down and all of them under new leaders %v after the kill",
		victim, count[victim], time.Since(start).Round(10*time.Millisecond))
	tab.screenshot("/tmp/hellochat-clusterview.png")
}

// TestClusterEventsOutliveTheReadTimeout: the admin server bounds how long
// a request may take to read, and the cluster view's stream is one long
// request; it must keep sending past that bound.
func TestClusterEventsOutliveTheReadTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("takes the read timeout")
	}
	c := tc.New(t, 3, tc.Options{})
	resp, err := http.Get("http://" + c.Router.AdminAddr() + "/cluster/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	// A browser talks meanwhile: its messages show as its room's leader's
	// commit rate.
	ann := tc.Dial(t, c.URL(), "view-rate", "ann", true)
	leader := c.Config(c.Leader("view-rate")).ID
	start := time.Now()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	events, late, rated := 0, 0, 0.0
	for time.Since(start) < router.ReadTimeout+2*time.Second {
		if !sc.Scan() {
			t.Fatalf("the stream ended after %v and %d events: %v", time.Since(start).Round(time.Millisecond), events, sc.Err())
		}
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		events++
		if time.Since(start) > router.ReadTimeout {
			late++
		}
		var ev struct{ Rates map[string]float64 }
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %d: %v", events, err)
		}
		rated = max(rated, ev.Rates[leader])
		ann.Post(fmt.Sprintf("v-%d", events), "hello")
	}
	// Counted past the read timeout, not against the interval: a loaded
	// machine (-race, two cores) takes longer than the interval to
	// gather some views.
	if late == 0 {
		t.Fatalf("%d events in %v, none after the read timeout (%v)", events, time.Since(start), router.ReadTimeout)
	}
	// One message per event, an event every interval: about 2 msg/s.
	if rated <= 0 {
		t.Fatalf("%s, which leads the room, never showed a commit rate over %d events", leader, events)
	}
}
