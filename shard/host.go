// Package shard replicates the node's shards: each shard (a partition of
// the placement ring) is a Raft group (go.etcd.io/raft/v3) over its
// replicas, and a Host drives every group this node is a replica of from
// one loop, so one round of work for all shards costs one fsync and one
// batch of messages per peer.
//
// The loop (this file) takes messages, proposals and reports; round.go
// persists and sends each round's work, apply.go applies committed entries,
// group.go creates and destroys replicas, placement.go moves replicas to
// where the ring wants them, leadership.go publishes and steers leadership,
// snapshot.go streams whole shards to replicas that need them.
package shard

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"google.golang.org/grpc/credentials"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

var (
	// ErrNotLeader fails a proposal made on a replica that does not lead its
	// shard (or stopped leading it before the proposal was applied). The
	// proposal may still commit under the new leader; callers resend it
	// there with the same client ids, and the room dedupes.
	ErrNotLeader = errors.New("shard: not the leader")
	// ErrStopped fails proposals once the host is shutting down.
	ErrStopped = errors.New("shard: stopped")
	// ErrConflict fails a proposal whose guards did not hold when it was
	// applied: its proposer's view of the object was stale. Nothing of it
	// was written.
	ErrConflict = errors.New("shard: conditional write refused")
)

// Config configures a Host.
type Config struct {
	NodeID string
	// Replica is this node's incarnation (cluster.Meta.Replica): with
	// NodeID it makes the node's Raft id.
	Replica string
	Store   *storage.Store
	Members Members
	// Creds secure the connections to peers; nil is plaintext.
	Creds credentials.TransportCredentials
	// Bootstrap creates, for every shard the ring places on this node and
	// that has no state on disk, the group's initial state with the ring's
	// replicas as voters. Only the nodes that form a new cluster do this;
	// afterwards groups exist only by Raft: from disk, or created when a
	// leader adds this node.
	Bootstrap bool
	Replicas  int // R: replicas per shard, fewer only while the cluster has fewer nodes
	// Tick is Raft's clock. Elections take ElectionTicks to ElectionTicks*2
	// ticks; the leader sends heartbeats every HeartbeatTicks.
	Tick           time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// A shard's replica takes a snapshot and truncates its log once it can
	// drop at least SnapshotEvery entries. It keeps TrailEntries behind
	// what it applied, and as leader also what a follower still lacks, up
	// to KeepEntries behind (see compactPoint).
	SnapshotEvery uint64
	TrailEntries  uint64
	KeepEntries   uint64
	// MaxMoves bounds the replicas this node, as leader, moves at once (a
	// learner being added and caught up counts until it is promoted).
	MaxMoves int
	// SnapshotRate bounds the bytes per second this node streams in shard
	// snapshots, so moving a shard leaves room for chat traffic.
	SnapshotRate int
	Logger       *slog.Logger
	// OnLeadership is called from the Raft loop whenever this node starts or
	// stops serving a shard. It must not block.
	OnLeadership func(shard int, serving bool, leader string)
	// OnReplicas is called from the Raft loop whenever the number of shard
	// replicas on this node changes. It must not block.
	OnReplicas func(count int)
	// Metrics are what the host counts and times (nil: counted, and
	// registered nowhere).
	Metrics *Metrics
	// Faults, when set, injects network faults between this node and its
	// peers (tests).
	Faults Faults
	// OnFatal is called, once, when the Raft loop stops because this
	// node's log could not be made durable (a failed write or fsync: disk
	// full, disk gone). The node must stop: it can no longer lead, vote or
	// acknowledge, and its peers elect another leader.
	OnFatal func(error)
}

// Members is where a Host learns the ring and who is up: gossip
// (*cluster.Membership) in a node, a fixed placement in a simulation.
type Members interface {
	Placement() *cluster.Placement
	// Changed is closed at the next change of Placement.
	Changed() <-chan struct{}
}

// Faults decides which Raft traffic is lost: tests cut a node off from its
// peers through it.
type Faults interface {
	// Drop reports whether messages between this node and peer (both
	// directions) are lost now.
	Drop(peer string) bool
}

// DropFunc is Faults as a function.
type DropFunc func(peer string) bool

// Drop implements Faults.
func (f DropFunc) Drop(peer string) bool { return f(peer) }

// Defaults of Config.
const (
	DefaultMaxMoves     = 4
	DefaultSnapshotRate = 32 << 20
	// A replica truncates its log in steps of at least 256 entries (one
	// range deletion each), keeps 128 behind what it applied, and as
	// leader keeps up to 2,000 for a follower that lags: at the hot room's
	// few hundred entries a second, a follower paused for seconds still
	// catches up from the log.
	DefaultSnapshotEvery = 256
	DefaultTrailEntries  = 128
	DefaultKeepEntries   = 2000
)

func (cfg *Config) setDefaults() {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	if cfg.ElectionTicks <= 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.HeartbeatTicks <= 0 {
		cfg.HeartbeatTicks = 1
	}
	// A follower more than KeepEntries behind needs a whole-shard snapshot:
	// keep enough entries that a follower briefly slowed by load catches up
	// from the log instead.
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = DefaultSnapshotEvery
	}
	if cfg.TrailEntries == 0 {
		cfg.TrailEntries = DefaultTrailEntries
	}
	if cfg.KeepEntries == 0 {
		cfg.KeepEntries = DefaultKeepEntries
	}
	if cfg.MaxMoves <= 0 {
		cfg.MaxMoves = DefaultMaxMoves
	}
	if cfg.SnapshotRate <= 0 {
		cfg.SnapshotRate = DefaultSnapshotRate
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OnLeadership == nil {
		cfg.OnLeadership = func(int, bool, string) {}
	}
	if cfg.OnReplicas == nil {
		cfg.OnReplicas = func(int) {}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
}

// proposal is a batch waiting to be proposed.
type proposal struct {
	shard  int
	object string
	ops    []storage.Op
	guards storage.Guards
	done   func(error)
}

// incomingSnapshot is a snapshot whose data is on disk, ready to step.
type incomingSnapshot struct {
	shard int
	msg   []byte // the raftpb.Message (MsgSnap)
	file  string
	from  string
	// toIncarnation is the incarnation of this node the sender meant.
	toIncarnation string
	done          chan error
}

// Host runs the Raft groups of every shard this node is a replica of.
type Host struct {
	cfg    Config
	raftID uint64
	log    *slog.Logger
	// refusedMsgs counts peers' Raft messages dropped: from a replica that
	// is not the sending node's own, or not plausible (see plausible).
	refusedMsgs atomic.Uint64
	tr          outbound
	snaps       snapshotStarter

	props       chan *proposal
	readsIn     chan *readRequest
	inbox       chan *pb.RaftBatch
	snapIn      chan *incomingSnapshot
	unreachable chan string
	peerDown    chan string
	snapDone    chan snapReport
	stop        chan struct{}
	done        chan struct{}
	stopOnce    sync.Once

	status   []atomic.Pointer[ShardStatus] // by shard
	replicas atomic.Int32                  // groups on this node
	// applied is each replica's applied index once it is in the store
	// (0: no replica here), for whoever waits for replicas to converge.
	applied []atomic.Uint64
	// compacted is each replica's last index its log dropped: it holds
	// the entries after it.
	compacted []atomic.Uint64

	// Owned by the loop.
	groups   map[int]*group
	ids      map[uint64]string // raft id -> node id, current incarnations
	names    map[uint64]string // raft id -> node id, every incarnation seen
	notices  map[string][]*pb.Removal
	nextProp uint64
	nextRead uint64
	ticks    int
}

// Start creates (or reloads) this node's shard replicas and starts the
// Raft loop.
func Start(cfg Config) (*Host, error) {
	h, err := newHost(cfg)
	if err != nil {
		return nil, err
	}
	h.tr = newTransport(h)
	h.snaps = newSnapshotSender(h)
	go h.loop()
	h.log.Info("raft groups started", "groups", len(h.groups), "replicas", cfg.Replicas, "raft_id", h.raftID)
	return h, nil
}

// newHost opens the node's shard replicas, with no loop and no way out:
// Start adds the gRPC transport and the loop; a simulation adds its own
// network and drives tick, step, propose and round itself, on one
// goroutine, so one seed replays one run.
func newHost(cfg Config) (*Host, error) {
	cfg.setDefaults()
	h := &Host{
		cfg:         cfg,
		raftID:      cluster.RaftID(cfg.NodeID, cfg.Replica),
		log:         cfg.Logger,
		props:       make(chan *proposal, 4096),
		readsIn:     make(chan *readRequest, 1024),
		inbox:       make(chan *pb.RaftBatch, 1024),
		snapIn:      make(chan *incomingSnapshot, 16),
		unreachable: make(chan string, 64),
		peerDown:    make(chan string, 64),
		snapDone:    make(chan snapReport, 1024),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		status:      make([]atomic.Pointer[ShardStatus], cluster.Partitions),
		applied:     make([]atomic.Uint64, cluster.Partitions),
		compacted:   make([]atomic.Uint64, cluster.Partitions),
		groups:      map[int]*group{},
		ids:         map[uint64]string{},
		names:       map[uint64]string{},
		notices:     map[string][]*pb.Removal{},
	}
	for i := range h.status {
		h.status[i].Store(&ShardStatus{Shard: i})
	}
	p := cfg.Members.Placement()
	h.learnIDs(p)
	for s := 0; s < cluster.Partitions; s++ {
		var voters []cluster.Meta
		if cfg.Bootstrap {
			voters = h.founders(p, s)
		}
		g, err := h.openGroup(s, voters)
		if err != nil {
			return nil, err
		}
		if g != nil {
			h.groups[s] = g
			h.showLog(g)
		}
	}
	h.replicas.Store(int32(len(h.groups)))
	return h, nil
}

// Propose replicates an object's batch through its shard's group and calls
// done once it is applied here (or failed). It never blocks for long.
func (h *Host) Propose(shard int, object string, ops []storage.Op, guards storage.Guards, done func(error)) {
	select {
	case h.props <- &proposal{shard: shard, object: object, ops: ops, guards: guards, done: done}:
	case <-h.done:
		done(ErrStopped)
	}
}

// Serving reports whether this node leads the shard and may serve its
// objects, and otherwise which node leads it ("" when unknown).
func (h *Host) Serving(shard int) (serving bool, leader string) {
	l := h.status[shard].Load()
	return l.Serving, l.Leader
}

// Status is what this node knows of a shard's group.
func (h *Host) Status(shard int) ShardStatus { return *h.status[shard].Load() }

// Applied is the index this node's replica of shard has applied to the
// store, 0 when it holds none. A replica whose Applied is the leader's
// holds every committed entry in its store: identical data.
func (h *Host) Applied(shard int) uint64 { return h.applied[shard].Load() }

// Compacted is the last index this node's replica of shard dropped from
// its log: the log holds the entries after it.
func (h *Host) Compacted(shard int) uint64 { return h.compacted[shard].Load() }

// showLog makes g's applied index and log start visible to Applied and
// Compacted, after either moved other than by applying entries.
func (h *Host) showLog(g *group) {
	h.applied[g.shard].Store(g.applied)
	h.compacted[g.shard].Store(g.snapIndex)
}

// RefusedMessages counts peers' Raft messages dropped: from a replica that
// is not the sending node's own, or not plausible.
func (h *Host) RefusedMessages() uint64 { return h.refusedMsgs.Load() }

// Replicas counts the shard replicas this node holds.
func (h *Host) Replicas() int { return int(h.replicas.Load()) }

// Leads returns a bitmask of the shards this node serves, for gossip.
func (h *Host) Leads() uint64 {
	var m uint64
	for s := range h.status {
		if h.status[s].Load().Serving {
			m |= 1 << uint(s)
		}
	}
	return m
}

// Queued counts the proposals and peers' batches waiting for the loop.
func (h *Host) Queued() (proposals, batches int) { return len(h.props), len(h.inbox) }

// Handle takes a batch of Raft messages from a peer (transport server).
func (h *Host) Handle(b *pb.RaftBatch) error {
	select {
	case h.inbox <- b:
		return nil
	case <-h.done:
		return ErrStopped
	}
}

// Stop ends the loop and fails every pending proposal.
func (h *Host) Stop() {
	h.stopOnce.Do(func() {
		close(h.stop)
		<-h.done
		h.snaps.close()
		h.tr.close()
	})
}

// Done is closed once the loop has ended (after Stop, or after a failed
// round made the node stop replicating).
func (h *Host) Done() <-chan struct{} { return h.done }

// Ticks between two passes of the placement and leadership checks.
const placeTicks = 5

func (h *Host) loop() {
	defer close(h.done)
	ticker := time.NewTicker(h.cfg.Tick)
	defer ticker.Stop()
	changed := h.cfg.Members.Changed()
	for {
		select {
		case <-ticker.C:
			h.tick()
		case b := <-h.inbox:
			h.step(b)
		case in := <-h.snapIn:
			h.stepSnapshot(in)
		case p := <-h.props:
			h.propose(p)
		case r := <-h.readsIn:
			h.readIndex(r)
		case node := <-h.unreachable:
			for _, g := range h.groups {
				for _, id := range slices.Concat(g.confState.GetVoters(), g.confState.GetLearners()) {
					if id != g.id && h.nodeOf(g, id) == node {
						g.rn.ReportUnreachable(id)
					}
				}
			}
		case id := <-h.peerDown:
			h.leaderDown(id, 0) // its connection broke: no doubt left
		case r := <-h.snapDone:
			h.snapshotReported(r)
		case <-changed:
			changed = h.cfg.Members.Changed()
			h.membersChanged(h.cfg.Members.Placement())
		case <-h.stop:
			for _, g := range h.groups {
				h.failPending(g, ErrStopped)
			}
			h.drainProposals()
			return
		}
		// Take whatever else is already queued before the (fsyncing) round.
		for more := true; more; {
			select {
			case b := <-h.inbox:
				h.step(b)
			case p := <-h.props:
				h.propose(p)
			default:
				more = false
			}
		}
		if err := h.round(); err != nil {
			// The log could not be made durable: stop rather than ack or
			// vote on state we may not have. Peers elect another leader.
			h.log.Error("raft round failed; stopping replication", "err", err)
			for _, g := range h.groups {
				h.failPending(g, err)
			}
			h.drainProposals()
			if h.cfg.OnFatal != nil {
				h.cfg.OnFatal(err)
			}
			return
		}
	}
}

// snapshotReported tells Raft how a snapshot stream to a replica ended.
func (h *Host) snapshotReported(r snapReport) {
	if g := h.groups[r.shard]; g != nil {
		status := raft.SnapshotFinish
		if !r.ok {
			status = raft.SnapshotFailure
		}
		g.rn.ReportSnapshot(r.to, status)
	}
}

func (h *Host) tick() {
	// In shard order: a tick may start an election, which draws a random
	// timeout from a source all groups share, so a simulation replays
	// only if groups draw in the same order every run.
	for _, g := range h.inOrder() {
		g.rn.Tick()
		g.silent++
		if g.recampaign > 0 {
			if g.recampaign--; g.recampaign == 0 && g.rn.BasicStatus().Lead == raft.None {
				g.rn.Campaign()
			}
		}
		if g.confBusy > 0 {
			g.confBusy--
		}
	}
	if h.ticks++; h.ticks%placeTicks == 0 {
		h.preferLeaders()
		h.place()
		h.collectOrphans()
	}
}

// inOrder lists the groups by shard.
func (h *Host) inOrder() []*group {
	gs := make([]*group, 0, len(h.groups))
	for _, g := range h.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *group) int { return a.shard - b.shard })
	return gs
}

func (h *Host) drainProposals() {
	for _, g := range h.groups {
		h.failReads(g, ErrStopped)
	}
	for {
		select {
		case p := <-h.props:
			p.done(ErrStopped)
		case r := <-h.readsIn:
			r.done(ErrStopped)
		default:
			return
		}
	}
}

// learnIDs maps the Raft ids of the placement's nodes to their node ids.
func (h *Host) learnIDs(p *cluster.Placement) {
	clear(h.ids)
	for _, n := range p.Nodes() {
		id := n.RaftID()
		h.ids[id] = n.ID
		h.names[id] = n.ID
	}
}

func (h *Host) dropped(peer string) bool {
	return h.cfg.Faults != nil && h.cfg.Faults.Drop(peer)
}
