package shard

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// Replica ids. Every replica of a shard's group has a Raft id of its own
// that the group never hands out again: a shard that leaves a node and
// later returns to it comes back as a new replica, with a new id, so
// nothing said to or by the old one (a vote, an acknowledged append, a
// removal) can be taken for the new one's. A leader adding a replica takes
// the group's next id (a counter in the replicated state) and puts the
// node and incarnation it is for in the configuration change, so every
// replica knows which node holds which id. The replicas a new shard starts
// with have the id of their node incarnation (cluster.RaftID), which is
// what every replica had before ids were per replica.
//
// A node that gives a replica up (it was removed, or it is an orphan)
// leaves a tombstone: it never again answers to, or recreates, that id.
// A message for an id it does not hold on this incarnation is dropped.

// replicaDesc is the node incarnation holding one replica of a group.
type replicaDesc struct {
	node, incarnation string
}

// unknownIncarnation marks a replica whose incarnation this node could
// not tell (state from before replica ids, of a node since wiped): it is
// no node's current one.
const unknownIncarnation = "(unknown)"

// maxCounterID keeps counter ids apart from node-incarnation ids, which
// are hashes: a counter id is below it, a hash almost never is, and an id
// the group already uses is skipped anyway.
const maxCounterID = 1 << 32

// decodeReplicaSet reads a group's replica table (nil or empty: none).
func decodeReplicaSet(b []byte) (map[uint64]replicaDesc, uint64, error) {
	if len(b) == 0 {
		return nil, 0, nil
	}
	set := &pb.ReplicaSet{}
	if err := proto.Unmarshal(b, set); err != nil {
		return nil, 0, fmt.Errorf("decode replica set: %w", err)
	}
	reps := make(map[uint64]replicaDesc, len(set.Replicas))
	for _, r := range set.Replicas {
		reps[r.Id] = replicaDesc{node: r.Node, incarnation: r.Incarnation}
	}
	return reps, set.NextId, nil
}

// encodeReplicaSet is the replica table as persisted and as sent in
// snapshots; ids in order, so equal tables encode equally.
func (g *group) encodeReplicaSet() []byte {
	set := &pb.ReplicaSet{NextId: g.nextID}
	ids := make([]uint64, 0, len(g.reps))
	for id := range g.reps {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		d := g.reps[id]
		set.Replicas = append(set.Replicas, &pb.ReplicaDesc{Id: id, Node: d.node, Incarnation: d.incarnation})
	}
	b, err := proto.Marshal(set)
	if err != nil {
		panic(fmt.Sprintf("shard: encode replica set: %v", err)) // plain fields: cannot fail
	}
	return b
}

// legacyDesc tells which node incarnation holds a node-incarnation id,
// from what membership knows, for groups from before replica tables.
func (h *Host) legacyDesc(id uint64) (replicaDesc, bool) {
	for _, n := range h.cfg.Members.Placement().Nodes() {
		if n.RaftID() == id {
			return replicaDesc{node: n.ID, incarnation: n.Replica}, true
		}
	}
	if n, ok := h.names[id]; ok {
		return replicaDesc{node: n, incarnation: unknownIncarnation}, true
	}
	return replicaDesc{}, false
}

// fillLegacy describes members the table lacks (groups created before
// replica tables, or changes made by leaders that predate them).
func (h *Host) fillLegacy(g *group) {
	if g.reps == nil {
		g.reps = map[uint64]replicaDesc{}
	}
	for _, id := range slices.Concat(g.confState.GetVoters(), g.confState.GetLearners()) {
		if _, ok := g.reps[id]; ok {
			continue
		}
		if id == g.id {
			g.reps[id] = replicaDesc{node: h.cfg.NodeID, incarnation: h.cfg.Replica}
		} else if d, ok := h.legacyDesc(id); ok {
			g.reps[id] = d
		}
	}
}

// noteReplicas keeps the replica table in step with an applied change and
// reports whether it changed: an added replica's descriptor comes in the
// change's context; the table keeps members and the removed replicas the
// group still remembers.
func (h *Host) noteReplicas(g *group, cc *raftpb.ConfChange) bool {
	changed := false
	id := cc.GetNodeId()
	if t := cc.GetType(); t == raftpb.ConfChangeAddNode || t == raftpb.ConfChangeAddLearnerNode {
		if len(cc.GetContext()) > 0 {
			d := &pb.ReplicaDesc{}
			if err := proto.Unmarshal(cc.GetContext(), d); err == nil && d.Id == id && d.Node != "" {
				if old, ok := g.reps[id]; !ok || old.node != d.Node || old.incarnation != d.Incarnation {
					g.reps[id] = replicaDesc{node: d.Node, incarnation: d.Incarnation}
					changed = true
				}
			} else {
				h.log.Warn("configuration change with an unreadable replica descriptor", "shard", g.shard, "replica", id)
			}
		}
		if id < maxCounterID && id >= g.nextID {
			g.nextID = id + 1
			changed = true
		}
	}
	before := len(g.reps)
	h.fillLegacy(g)
	for rid := range g.reps {
		if !g.member(rid) && !slices.Contains(g.removedIDs, rid) {
			delete(g.reps, rid)
		}
	}
	return changed || len(g.reps) != before
}

// newReplicaID is the id a leader gives the next replica it adds.
func (g *group) newReplicaID() uint64 {
	id := max(g.nextID, 1)
	for {
		if _, used := g.reps[id]; !used && !slices.Contains(g.removedIDs, id) {
			return id
		}
		id++
	}
}

// newerReplica reports whether id was added to a group after held: a
// counter id after a founder's node-incarnation id, or a larger counter.
func newerReplica(id, held uint64) bool {
	return id < maxCounterID && (held >= maxCounterID || id > held)
}

// replicaContext is the descriptor an added replica's change carries.
func replicaContext(id uint64, m cluster.Meta) []byte {
	b, err := proto.Marshal(&pb.ReplicaDesc{Id: id, Node: m.ID, Incarnation: m.Replica})
	if err != nil {
		panic(fmt.Sprintf("shard: encode replica descriptor: %v", err))
	}
	return b
}

// nodeOf is the node holding replica id of g ("" when unknown): from the
// group's table, else from the authenticated senders it heard, else from
// node-incarnation ids.
func (h *Host) nodeOf(g *group, id uint64) string {
	if d, ok := g.reps[id]; ok {
		return d.node
	}
	if n, ok := g.heard[id]; ok {
		return n
	}
	return h.names[id]
}

// current reports whether replica id of g is held by its node's current
// incarnation: a replica of an incarnation since wiped is gone for good.
func (h *Host) current(g *group, id uint64) bool {
	if id == g.id {
		return true
	}
	d, ok := g.reps[id]
	if !ok {
		_, ok := h.ids[id]
		return ok || g.heard[id] != ""
	}
	m, ok := h.cfg.Members.Placement().Node(d.node)
	return ok && m.Replica == d.incarnation
}

// live reports whether replica id of g is held by a current incarnation
// that gossip says is up.
func (h *Host) live(g *group, id uint64) bool {
	return id == g.id || (h.current(g, id) && h.cfg.Members.Placement().Alive(h.nodeOf(g, id)))
}

// replicaOn is g's member (voter or learner) held by node incarnation m,
// or 0.
func (g *group) replicaOn(m cluster.Meta) uint64 {
	for _, id := range slices.Concat(g.confState.GetVoters(), g.confState.GetLearners()) {
		if d, ok := g.reps[id]; ok && d.node == m.ID && d.incarnation == m.Replica {
			return id
		}
	}
	return 0
}

// ringMetas are the ring's replicas of a shard, the preferred first.
func (h *Host) ringMetas(shard int) []cluster.Meta {
	reps, err := h.cfg.Members.Placement().Replicas(shard, h.cfg.Replicas)
	if err != nil {
		return nil
	}
	return reps
}

// wanted are g's members on the ring's replicas of its shard, in ring
// order (the first is where leadership should be).
func (h *Host) wanted(g *group) []uint64 {
	var ids []uint64
	for _, m := range h.ringMetas(g.shard) {
		if id := g.replicaOn(m); id != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// tombstoned reports whether this node gave up replica id of shard.
func (h *Host) tombstoned(shard int, id uint64) bool {
	ids, err := h.cfg.Store.Tombstones(shard)
	if err != nil {
		h.log.Error("read tombstones", "shard", shard, "err", err)
		return true // when in doubt, do not answer for it
	}
	return slices.Contains(ids, id)
}

// mayCreate reports why this node may not start replica id of shard on a
// leader's word ("" when it may): the id must be meant for this very
// incarnation, and not one it gave up.
func (h *Host) mayCreate(shard int, id uint64, toIncarnation string) string {
	switch {
	case toIncarnation == "" && id != h.raftID:
		return "no incarnation named, and not this incarnation's own id"
	case toIncarnation != "" && toIncarnation != h.cfg.Replica:
		return "for another incarnation of this node"
	case h.tombstoned(shard, id):
		return "a replica this node gave up"
	}
	return ""
}

// maxHeard bounds the senders a group remembers outside its table.
const maxHeard = 16

// heardFrom checks and records that replica id spoke for node from (an
// authenticated peer): it is refused when the group knows id as another
// node's.
func (h *Host) heardFrom(g *group, id uint64, from string) error {
	if n := h.nodeOf(g, id); n != "" {
		if n != from {
			return fmt.Errorf("replica %x is %s's, not %s's", id, n, from)
		}
		return nil
	}
	if len(g.heard) >= maxHeard {
		clear(g.heard)
	}
	if g.heard == nil {
		g.heard = map[uint64]string{}
	}
	g.heard[id] = from
	return nil
}

// snapshotIdentity is what an install of a snapshot with data writes as
// g's replica identity, in the same atomic step: g's id and the snapshot's
// replica table (none from a leader that predates tables: then the table
// is derived as on load).
func (h *Host) snapshotIdentity(g *group, data []byte) (storage.ReplicaIdentity, error) {
	if _, _, err := decodeReplicaSet(data); err != nil {
		return storage.ReplicaIdentity{}, fmt.Errorf("shard %d: snapshot: %w", g.shard, err)
	}
	id := storage.ReplicaIdentity{Self: g.id}
	if len(data) > 0 {
		id.Set = data
	}
	return id, nil
}

// takeReplicaSet adopts the replica table of a snapshot g just installed
// (snapshotIdentity made it durable with the install).
func (h *Host) takeReplicaSet(g *group, data []byte) error {
	reps, next, err := decodeReplicaSet(data)
	if err != nil {
		return fmt.Errorf("shard %d: installed snapshot: %w", g.shard, err)
	}
	g.reps, g.nextID = reps, next
	clear(g.heard)
	return nil
}
