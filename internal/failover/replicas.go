package failover

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"

	"hellochat/apps/chat"
	"hellochat/cluster"
	"hellochat/internal/launch"
	"hellochat/storage"
)

// replicaCheck is what the stopped nodes' data dirs hold.
type replicaCheck struct {
	// misplaced counts shards whose holders (nodes with a replica of the
	// shard on disk) are not exactly the ring's replicas, and rooms whose
	// messages a node that is no replica of their shard still stores.
	misplaced int
	// divergent counts rooms whose holders store different messages.
	divergent                      int
	misplacedEx, divergentEx       []string
	err                            error
	holders, shards, roomsCompared int
	messagesCompared               int // in the first holder of each room
}

func (r replicaCheck) failed() bool { return r.misplaced > 0 || r.divergent > 0 || r.err != nil }

// compareReplicas opens every node's store (all stopped, retired ones
// too) and checks that each shard is held by exactly the ring's replicas
// of the final cluster, that a node holding no replica of a room's shard
// keeps none of its messages, and that a room's holders store the same
// messages byte for byte.
func compareReplicas(c *launch.Cluster, rooms []string) replicaCheck {
	var res replicaCheck
	type node struct {
		id string
		st *storage.Store
	}
	var nodes []node
	for _, p := range c.EveryNode() {
		if _, err := os.Stat(p.DataDir()); err != nil {
			res.err = fmt.Errorf("data dir of %s: %w", p.Name, err)
			return res
		}
		st, err := storage.OpenStore(p.DataDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			res.err = fmt.Errorf("open the store of %s: %w", p.Name, err)
			return res
		}
		defer st.Close()
		nodes = append(nodes, node{p.Name, st})
	}
	ring := c.Ring()
	holders := make([][]int, cluster.Partitions) // indexes into nodes
	for s := range holders {
		want, err := launch.RingReplicas(ring, s)
		if err != nil {
			res.err = err
			return res
		}
		var ids []string
		for i, n := range nodes {
			_, found, err := n.st.LoadRaft(s)
			if err != nil {
				res.err = fmt.Errorf("%s: raft state of shard %d: %w", n.id, s, err)
				return res
			}
			if found {
				holders[s] = append(holders[s], i)
				ids = append(ids, n.id)
			}
		}
		res.shards++
		res.holders += len(ids)
		if !launch.SameSet(ids, want) {
			res.misplaced++
			sort.Strings(ids)
			res.misplacedEx = append(res.misplacedEx, fmt.Sprintf("shard %d is held by %v, the ring places it on %v", s, ids, want))
		}
	}
	for _, room := range rooms {
		object, start, end := chat.StoredMessages(room)
		s := cluster.Shard(object)
		var first []storage.KV
		for i, n := range nodes {
			kvs, err := n.st.List(object, start, end, 0, false)
			if err != nil {
				res.err = err
				return res
			}
			if !slices.Contains(holders[s], i) {
				if len(kvs) > 0 {
					res.misplaced++
					res.misplacedEx = append(res.misplacedEx, fmt.Sprintf("%s holds no replica of shard %d but still stores %d messages of %s", n.id, s, len(kvs), room))
				}
				continue
			}
			if i == holders[s][0] {
				first = kvs
				res.messagesCompared += len(kvs)
				continue
			}
			same := len(kvs) == len(first)
			for j := 0; same && j < len(kvs); j++ {
				same = bytes.Equal(kvs[j].Key, first[j].Key) && bytes.Equal(kvs[j].Value, first[j].Value)
			}
			if !same {
				res.divergent++
				res.divergentEx = append(res.divergentEx, fmt.Sprintf("%s: %s stores %d messages, %s %d (or they differ)",
					room, nodes[holders[s][0]].id, len(first), n.id, len(kvs)))
				break
			}
		}
		res.roomsCompared++
	}
	if res.roomsCompared > 0 && res.messagesCompared == 0 {
		// Rooms under load store messages: finding none means reading
		// where the rooms do not keep them, a comparison that could not
		// fail.
		res.err = fmt.Errorf("no store holds a message of the %d rooms: the check reads the wrong keys", res.roomsCompared)
	}
	return res
}
