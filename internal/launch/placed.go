package launch

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

// Replicas is the shard group size the nodes use (objectnode's default).
const Replicas = 3

// Ring is the placement of the cluster's current nodes, as every member
// computes it once gossip has converged: retired nodes have no place.
func (c *Cluster) Ring() *cluster.Placement {
	var metas []cluster.Meta
	for _, n := range c.Nodes {
		metas = append(metas, cluster.Meta{ID: n.Name, Role: cluster.RoleNode})
	}
	return cluster.NewPlacement(metas)
}

// RingReplicas lists the ring's replicas of a shard.
func RingReplicas(ring *cluster.Placement, shard int) ([]string, error) {
	reps, err := ring.Replicas(shard, Replicas)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(reps))
	for i, r := range reps {
		ids[i] = r.ID
	}
	return ids, nil
}

// Placed checks, by asking every node, that the cluster is placed: each
// shard has one serving leader, the ring's first replica, whose voters are
// exactly the ring's replicas (no learner, no replica of a wiped node's
// earlier incarnation) and whose own ring agrees; and each node holds
// exactly the replicas the ring gives it. The nodes' answers are
// authoritative where the router's gossiped view can lag (a node killed
// and restarted quickly may still look like the leader it was).
func (c *Cluster) Placed(ctx context.Context) error {
	ring := c.Ring()
	want := make([][]string, cluster.Partitions)
	holds := map[string]int{}
	for s := range want {
		ids, err := RingReplicas(ring, s)
		if err != nil {
			return err
		}
		want[s] = ids
		for _, id := range ids {
			holds[id]++
		}
	}
	type report struct {
		node string
		st   *pb.ShardStatus
	}
	led := make([][]report, cluster.Partitions)
	replicas := map[string]uint32{}
	for _, n := range c.Nodes {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.Status(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: status: %v", n.Name, err)
		}
		if st.Leaving {
			return fmt.Errorf("%s is leaving", n.Name)
		}
		replicas[n.Name] = st.Replicas
		for _, ss := range st.Shards {
			if s := int(ss.Shard); s < cluster.Partitions {
				led[s] = append(led[s], report{n.Name, ss})
			}
		}
	}
	for s, reports := range led {
		switch len(reports) {
		case 0:
			return fmt.Errorf("shard %d: no serving leader", s)
		case 1:
		default:
			return fmt.Errorf("shard %d: %s and %s both serve it", s, reports[0].node, reports[1].node)
		}
		if reports[0].node != want[s][0] {
			return fmt.Errorf("shard %d: led by %s, its preferred replica (the ring's first) is %s", s, reports[0].node, want[s][0])
		}
		for _, r := range reports {
			for _, v := range r.st.Voters {
				if strings.Contains(v, "(old)") {
					return fmt.Errorf("shard %d (led by %s): voter %s of an earlier incarnation remains", s, r.node, v)
				}
			}
			if !SameSet(r.st.Voters, want[s]) || len(r.st.Learners) > 0 {
				return fmt.Errorf("shard %d (led by %s): voters %v learners %v, ring wants %v", s, r.node, r.st.Voters, r.st.Learners, want[s])
			}
			if !SameSet(r.st.Want, want[s]) {
				return fmt.Errorf("shard %d: its leader %s places it on %v, the ring of %d nodes on %v", s, r.node, r.st.Want, len(c.Nodes), want[s])
			}
		}
	}
	// A replica removed from its group deletes itself a moment after the
	// group applied its removal.
	for _, n := range c.Nodes {
		if int(replicas[n.Name]) != holds[n.Name] {
			return fmt.Errorf("%s holds %d shard replicas, the ring places %d on it", n.Name, replicas[n.Name], holds[n.Name])
		}
	}
	return nil
}

// OldVoter names, from every node's status, a voter of a shard that no
// current node holds ("" when there is none): a replica of a wiped node's
// earlier incarnation, or of a forgotten node, not yet replaced. Until it
// is, its group counts it toward its quorum though it will never answer,
// so one more disk lost in that group could leave it without a quorum for
// good.
func (c *Cluster) OldVoter(ctx context.Context) (string, error) {
	for _, n := range c.Nodes {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.Status(sctx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s: status: %v", n.Name, err)
		}
		for _, ss := range st.Shards {
			for _, v := range ss.Voters {
				if strings.Contains(v, "(old)") {
					return fmt.Sprintf("shard %d (led by %s): voter %s", ss.Shard, n.Name, v), nil
				}
			}
		}
	}
	return "", nil
}

// WaitPlaced waits until the cluster is placed (Placed) and settled (every
// node alive and every shard led by its preferred replica, as the router
// sees it). progress, if not nil, is called about every interval with the
// time waited and what is still missing.
func (c *Cluster) WaitPlaced(ctx context.Context, timeout, interval time.Duration, progress func(waited time.Duration, missing error)) error {
	start := time.Now()
	deadline := start.Add(timeout)
	nextReport := start.Add(interval)
	var last error
	for {
		for _, n := range c.Nodes {
			if code, exited := n.Exited(); exited {
				return fmt.Errorf("launch: %s exited (status %d) while waiting for placement", n.Name, code)
			}
		}
		last = c.Placed(ctx)
		if last == nil {
			var v View
			if v, last = c.View(); last == nil {
				// Under load a follower is often an entry or two behind:
				// placement does not wait for that, Settled does.
				last = settled(v, len(c.Nodes), false)
			}
		}
		if last == nil {
			return nil
		}
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("launch: cluster not placed after %v: %w", timeout, last)
		}
		if progress != nil && interval > 0 && now.After(nextReport) {
			progress(now.Sub(start), last)
			nextReport = now.Add(interval)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("launch: waiting for placement: %w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SameSet reports whether a and b hold the same strings.
func SameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string{}, a...), append([]string{}, b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// View is the router's /api/cluster answer (the parts we use).
type View struct {
	Members []struct {
		ID    string `json:"id"`
		Role  string `json:"role"`
		Alive bool   `json:"alive"`
	} `json:"members"`
	Shards  map[int]string `json:"shards"`
	Leaders map[int]string `json:"leaders"`
	Nodes   []struct {
		ID    string `json:"id"`
		Ready bool   `json:"ready"`
		Error string `json:"error"`
	} `json:"nodes"`
	Groups []struct {
		Shard  int      `json:"shard"`
		Behind []string `json:"behind"`
	} `json:"groups"`
	GroupsReported int `json:"groups_reported"`
}

// View asks the router how it sees the cluster.
func (c *Cluster) View() (View, error) {
	var v View
	resp, err := c.HTTPClient(3 * time.Second).Get(c.Admin + "/api/cluster")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

// Settled waits until every node is alive and answers, every shard is led
// by its preferred replica, every shard's leader answers, and no replica
// has applied less than its leader, as the router sees it: then a clean
// stop leaves identical replicas. Gossip alone can call a node that was
// just restarted alive and leading before it has even started.
func (c *Cluster) Settled(timeout time.Duration) (View, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		v, err := c.View()
		if err == nil {
			err = settled(v, len(c.Nodes), true)
		}
		if err == nil {
			return v, nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return View{}, fmt.Errorf("launch: cluster not settled after %v: %w", timeout, last)
}

// settled checks a view; caughtUp also asks that no replica be behind its
// leader, which holds only in a quiet cluster.
func settled(v View, nodes int, caughtUp bool) error {
	alive := map[string]bool{}
	for _, m := range v.Members {
		if m.Role == cluster.RoleNode && m.Alive {
			alive[m.ID] = true
		}
	}
	if len(alive) != nodes {
		return fmt.Errorf("%d of %d nodes alive", len(alive), nodes)
	}
	if len(v.Shards) != cluster.Partitions {
		return fmt.Errorf("%d of %d shards placed", len(v.Shards), cluster.Partitions)
	}
	for s, owner := range v.Shards {
		if v.Leaders[s] != owner {
			return fmt.Errorf("shard %d led by %q, preferred %s", s, v.Leaders[s], owner)
		}
	}
	// A node gone for good (down, or decommissioned and left) is not
	// waited for: only those gossip calls alive must answer.
	for _, n := range v.Nodes {
		if alive[n.ID] && (n.Error != "" || !n.Ready) {
			return fmt.Errorf("node %s not ready: %s", n.ID, n.Error)
		}
	}
	if v.GroupsReported != cluster.Partitions {
		return fmt.Errorf("leaders of %d of %d shards answered", v.GroupsReported, cluster.Partitions)
	}
	for _, g := range v.Groups {
		if caughtUp && len(g.Behind) > 0 {
			return fmt.Errorf("shard %d: %v behind its leader", g.Shard, g.Behind)
		}
	}
	return nil
}
