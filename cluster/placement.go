// Package cluster is the membership and placement layer that routers and
// object nodes share: who is in the cluster (gossip, hashicorp/memberlist)
// and where each room lives (consistent hashing, buraksezer/consistent).
package cluster

import (
	"fmt"
	"sort"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"

	"hellochat/partition"
)

// Partitions is the number of shards a room name hashes into
// (partition.Count).
const Partitions = partition.Count

// ringLoad and ringReplicas are chosen so that consistent v0.10.0 never
// panics ("not enough room to distribute partitions"): with a load factor
// above 1 the members' total capacity always exceeds Partitions, and with at
// least two points per member the bounded-load walk reaches every member.
// TestPlacementNeverPanics checks 1..64 members.
const (
	ringLoad     = 1.25
	ringReplicas = 40
)

type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

type ringMember string

func (m ringMember) String() string { return string(m) }

// Placement is an immutable view of the cluster: the known object nodes,
// which of them are alive, and the ring built from them. Every process that
// builds a Placement from the same known set gets the same owners, because
// liveness never changes the ring: a crashed node keeps its place, so a crash
// never reshuffles rooms.
type Placement struct {
	version uint64
	ring    *consistent.Consistent
	nodes   map[string]Meta // known object nodes by id
	alive   map[string]bool // ids of members gossip currently sees
	routers []Meta
	size    int // nodes in the ring
}

func newPlacement(version uint64, known map[string]Meta, alive map[string]bool, routers map[string]Meta) *Placement {
	p := &Placement{version: version, nodes: map[string]Meta{}, alive: map[string]bool{}}
	var members []consistent.Member
	for id, m := range known {
		if m.Role == RoleNode {
			p.nodes[id] = m
			// A leaving node keeps its entry (its address, for the moves
			// off it) but no place in the ring.
			if !m.Leaving {
				members = append(members, ringMember(id))
			}
		}
	}
	for id, m := range routers {
		if alive[id] {
			p.routers = append(p.routers, m)
		}
	}
	for id, ok := range alive {
		if ok {
			p.alive[id] = true
		}
	}
	sort.Slice(p.routers, func(i, j int) bool { return p.routers[i].ID < p.routers[j].ID })
	// In a fixed order, not the map's: consistent names a member's ring
	// points by its id and the point's number run together, so node1's
	// points 10-19 are node11's 0-9, and the member added last takes them.
	// In map order every view of the same nodes was a coin toss, and
	// leaders handed shards back and forth between node1 and node11.
	sort.Slice(members, func(i, j int) bool { return members[i].String() < members[j].String() })
	p.size = len(members)
	if len(members) > 0 {
		p.ring = consistent.New(members, consistent.Config{
			Hasher:            hasher{},
			PartitionCount:    Partitions,
			ReplicationFactor: ringReplicas,
			Load:              ringLoad,
		})
	}
	return p
}

// NewPlacement builds the ring of the given object nodes, all taken as
// down: what-if views, such as the ring before a node joined.
func NewPlacement(nodes []Meta) *Placement {
	known := map[string]Meta{}
	for _, m := range nodes {
		known[m.ID] = m
	}
	return newPlacement(0, known, nil, nil)
}

// Version increases with every change the local process has seen.
func (p *Placement) Version() uint64 { return p.version }

// Shard is the partition a room belongs to (partition.Of).
func Shard(room string) int { return partition.Of(room) }

// Owner is the node that hosts the room (the first replica of its shard).
// ok is false while no object node is known.
func (p *Placement) Owner(room string) (Meta, bool) {
	return p.ShardOwner(Shard(room))
}

// ShardOwner is the first replica of a shard.
func (p *Placement) ShardOwner(shard int) (Meta, bool) {
	if p.ring == nil {
		return Meta{}, false
	}
	m := p.ring.GetPartitionOwner(shard)
	if m == nil {
		return Meta{}, false
	}
	meta, ok := p.nodes[m.String()]
	return meta, ok
}

// Replicas lists up to r nodes for a shard, the owner first.
func (p *Placement) Replicas(shard, r int) ([]Meta, error) {
	if p.ring == nil {
		return nil, fmt.Errorf("cluster: no object nodes known")
	}
	if r > p.size {
		r = p.size
	}
	ms, err := p.ring.GetClosestNForPartition(shard, r)
	if err != nil {
		return nil, fmt.Errorf("cluster: replicas of shard %d: %w", shard, err)
	}
	out := make([]Meta, 0, len(ms))
	for _, m := range ms {
		out = append(out, p.nodes[m.String()])
	}
	return out, nil
}

// RingSize counts the nodes in the ring (known nodes that are not leaving).
func (p *Placement) RingSize() int { return p.size }

// Moved counts the shard replicas (of r per shard) that next places on a
// node p does not: what a change of the ring makes move.
func (p *Placement) Moved(next *Placement, r int) int {
	moved := 0
	for s := 0; s < Partitions; s++ {
		before := map[string]bool{}
		if reps, err := p.Replicas(s, r); err == nil {
			for _, m := range reps {
				before[m.ID] = true
			}
		}
		after, err := next.Replicas(s, r)
		if err != nil {
			continue
		}
		for _, m := range after {
			if !before[m.ID] {
				moved++
			}
		}
	}
	return moved
}

// Nodes lists the known object nodes, sorted by id.
func (p *Placement) Nodes() []Meta {
	out := make([]Meta, 0, len(p.nodes))
	for _, m := range p.nodes {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Routers lists the live routers, sorted by id.
func (p *Placement) Routers() []Meta { return p.routers }

// Node returns the known object node with this id.
func (p *Placement) Node(id string) (Meta, bool) {
	m, ok := p.nodes[id]
	return m, ok
}

// Alive reports whether gossip currently sees the member.
func (p *Placement) Alive(id string) bool { return p.alive[id] }

// Serving reports whether every room can be served now: some object node
// is alive and every shard has a leader.
func (p *Placement) Serving() bool { return p.LiveNodes() > 0 && p.LedShards() == Partitions }

// LedShards counts the shards some live node claims to lead.
func (p *Placement) LedShards() int {
	led := 0
	for s := 0; s < Partitions; s++ {
		if len(p.Leaders(s)) > 0 {
			led++
		}
	}
	return led
}

// LiveNodes counts the known object nodes that are alive.
func (p *Placement) LiveNodes() int {
	n := 0
	for id := range p.nodes {
		if p.alive[id] {
			n++
		}
	}
	return n
}

// NodeCounts counts the object nodes that health endpoints report, and
// how many of them are alive: the known nodes, less those that left (a
// decommissioned node, once down, is not coming back). Forgotten nodes
// are not known at all.
func (p *Placement) NodeCounts() (alive, total int) {
	for id, m := range p.nodes {
		switch {
		case p.alive[id]:
			alive++
			total++
		case !m.Leaving:
			total++
		}
	}
	return alive, total
}

// Leaders lists the live nodes that claim to lead a shard (normally one;
// two for a moment while leadership moves or an old leader is paused).
func (p *Placement) Leaders(shard int) []Meta {
	var out []Meta
	for _, m := range p.Nodes() {
		if p.alive[m.ID] && m.Leads&(1<<uint(shard)) != 0 {
			out = append(out, m)
		}
	}
	return out
}

// Target chooses the node to ask for an object of shard: the node a
// redirect named (hintID, hintAddr; hintID may be empty, but a named node
// must be alive), else the live node that gossips leadership of the
// shard, else one of the ring's live replicas, rotating with *attempt (it
// answers with a redirect if it is not leader). Rooms and durable objects
// both use it.
func (p *Placement) Target(shard int, hintID, hintAddr string, attempt *int) (Meta, bool) {
	if hintAddr != "" && (hintID == "" || p.Alive(hintID)) {
		return Meta{ID: hintID, GRPC: hintAddr}, true
	}
	if leaders := p.Leaders(shard); len(leaders) > 0 {
		return leaders[0], true
	}
	replicas, live := p.liveReplicas(shard, "")
	if len(replicas) == 0 {
		return Meta{}, false
	}
	if len(live) == 0 {
		return replicas[0], replicas[0].GRPC != ""
	}
	// Rotate through the replicas on retries, so a dead first replica
	// does not hide the others.
	*attempt++
	return live[*attempt%len(live)], true
}

// OtherReplica is a live replica of shard other than avoid, rotating with
// *attempt.
func (p *Placement) OtherReplica(shard int, avoid string, attempt *int) (Meta, bool) {
	_, live := p.liveReplicas(shard, avoid)
	if len(live) == 0 {
		return Meta{}, false
	}
	*attempt++
	return live[*attempt%len(live)], true
}

// liveReplicas are the ring's replicas of shard (none if the ring is
// empty), and those of them alive other than avoid.
func (p *Placement) liveReplicas(shard int, avoid string) (replicas, live []Meta) {
	replicas, err := p.Replicas(shard, 3)
	if err != nil {
		return nil, nil
	}
	for _, r := range replicas {
		if r.ID != avoid && p.Alive(r.ID) {
			live = append(live, r)
		}
	}
	return replicas, live
}
