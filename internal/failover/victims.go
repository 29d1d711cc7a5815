package failover

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"hellochat/cluster"
	"hellochat/internal/launch"
)

// leadership is who leads what, as the nodes report it at a cycle's start.
type leadership struct {
	busiest       int    // the shard holding most of our rooms
	busiestLeader string // its leader
	shards        map[string]int
	rooms         map[string][]string // node -> our rooms on shards it leads
}

// leaders asks every node which shards it leads and serves, until the
// busiest shard has exactly one leader.
func leaders(ctx context.Context, c *launch.Cluster, byRoom map[string][]*client, timeout time.Duration) (leadership, error) {
	perShard := map[int]int{}
	for room := range byRoom {
		perShard[cluster.Shard(room)]++
	}
	l := leadership{busiest: -1}
	for s, n := range perShard {
		if l.busiest < 0 || n > perShard[l.busiest] || n == perShard[l.busiest] && s < l.busiest {
			l.busiest = s
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		led, err := leadersOnce(ctx, c)
		if err == nil && len(led[l.busiest]) != 1 {
			err = fmt.Errorf("shard %d is served by %v", l.busiest, led[l.busiest])
		}
		if err == nil {
			l.busiestLeader = led[l.busiest][0]
			l.shards, l.rooms = map[string]int{}, map[string][]string{}
			for _, ids := range led {
				if len(ids) == 1 {
					l.shards[ids[0]]++
				}
			}
			for room := range byRoom {
				if ids := led[cluster.Shard(room)]; len(ids) == 1 {
					l.rooms[ids[0]] = append(l.rooms[ids[0]], room)
				}
			}
			return l, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return l, fmt.Errorf("who leads what: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leadersOnce lists, per shard, the nodes that say they lead and serve it.
func leadersOnce(ctx context.Context, c *launch.Cluster) (map[int][]string, error) {
	led := map[int][]string{}
	for _, n := range c.Nodes {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := n.Status(sctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: status: %w", n.Name, err)
		}
		for _, s := range st.Leading {
			led[int(s)] = append(led[int(s)], n.Name)
		}
	}
	return led, nil
}

// picker chooses the victim of each cycle so that every node gets its
// turn: leaders of our rooms and nodes that lead none of them, founders
// and added nodes.
type picker struct {
	count map[string]int  // cycles of each kind so far
	last  string          // the last node the rotation chose
	gone  map[string]bool // nodes already wiped or removed
}

// pick returns the victim of a cycle of kind. Each kind alternates
// between the leader of the busiest shard (the one holding most of our
// rooms) and the next node in id order that is not it, preferring one
// that leads none of our rooms: kills, pauses, network cuts and removes start with the
// busiest leader, wipes with the rotation. Wipes and removes avoid a node
// one of them already hit while another is left.
func (pk *picker) pick(kind string, c *launch.Cluster, l leadership) string {
	if pk.count == nil {
		pk.count, pk.gone = map[string]int{}, map[string]bool{}
	}
	pk.count[kind]++
	odd := pk.count[kind]%2 == 1
	notBusiest := func(id string) bool { return id != l.busiestLeader }
	leadsNone := func(id string) bool { return len(l.rooms[id]) == 0 }
	fresh := func(id string) bool { return !pk.gone[id] }
	and := func(ps ...func(string) bool) func(string) bool {
		return func(id string) bool {
			for _, p := range ps {
				if !p(id) {
					return false
				}
			}
			return true
		}
	}
	var busiestTurn bool
	var prefs []func(string) bool
	switch kind {
	case kindKill, kindPause, kindPartition, kindMute, kindDeaf:
		busiestTurn = odd
		prefs = []func(string) bool{and(notBusiest, leadsNone), notBusiest}
	case kindRemove, kindWipe:
		busiestTurn = odd == (kind == kindRemove) && fresh(l.busiestLeader)
		prefs = []func(string) bool{and(notBusiest, leadsNone, fresh), and(notBusiest, fresh), fresh}
	}
	victim := l.busiestLeader
	if !busiestTurn {
		victim = pk.rotate(c, prefs)
	}
	if kind == kindRemove || kind == kindWipe {
		pk.gone[victim] = true
	}
	return victim
}

// rotate returns the first node after the last one it chose, in id order
// and wrapping around, that the first preference accepts; failing that,
// the second, and so on.
func (pk *picker) rotate(c *launch.Cluster, prefs []func(string) bool) string {
	var ids []string
	for _, n := range c.Nodes {
		ids = append(ids, n.Name)
	}
	sort.Slice(ids, func(i, j int) bool { return nodeNum(ids[i]) < nodeNum(ids[j]) })
	start := sort.Search(len(ids), func(i int) bool { return nodeNum(ids[i]) > nodeNum(pk.last) })
	prefs = append(prefs, func(string) bool { return true })
	for _, pref := range prefs {
		for i := range ids {
			id := ids[(start+i)%len(ids)]
			if pref(id) {
				pk.last = id
				return id
			}
		}
	}
	return ""
}

// nodeNum is the number in a node id ("node12" -> 12).
func nodeNum(id string) int {
	n, _ := strconv.Atoi(strings.TrimLeft(id, "abcdefghijklmnopqrstuvwxyz"))
	return n
}
