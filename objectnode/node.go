// Package objectnode hosts room objects: single-threaded actors, one per
// active room, whose every write is durable in the node's Pebble DB before
// anyone sees it. Routers reach them over gRPC (proto/roompb).
package objectnode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"hellochat/apps"
	"hellochat/cluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
	"hellochat/shard"
	"hellochat/storage"
)

// Config configures a node. Every address is host:port.
type Config struct {
	ID              string
	DataDir         string
	GRPCListen      string
	GRPCAdvertise   string // empty: the listener's address
	GossipListen    string
	GossipAdvertise string
	Seeds           []string
	// Security is the node's certificate, the CA it trusts and the gossip
	// key (security.Dev, security.Load), or security.Insecure().
	Security *security.Settings
	// Expect matters only on a fresh data dir: such a node joins the
	// cluster its peers belong to, or, when none does, forms a new one
	// once Expect fresh nodes are known (like Consul's bootstrap-expect),
	// so the founders agree on the first replica sets. 0 means never form:
	// only join (a node added to a running cluster).
	Expect   int
	Timings  cluster.Timings
	RoomIdle time.Duration // evict a room with nobody attached after this
	// Apps are the durable object classes the node runs (nil: none; the
	// binary passes apps/builtin, so this package depends on no app);
	// ObjectIdle closes an object's actor
	// after that long without calls (0: DefaultObjectIdle).
	Apps       *apps.Registry
	ObjectIdle time.Duration
	// Replicas is how many nodes hold each shard (Raft group size).
	Replicas int
	// RaftTick and ElectionTicks set Raft's clock: a dead leader is
	// replaced within about ElectionTicks to 2*ElectionTicks ticks, sooner
	// when gossip or the transport reports it dead.
	RaftTick      time.Duration
	ElectionTicks int
	// SnapshotEvery and KeepEntries bound each shard's Raft log (see
	// shard.Config); zero means the defaults.
	SnapshotEvery, KeepEntries uint64
	// StreamQueue and StreamQueueBytes bound the events waiting to be sent
	// to a router on one room's stream; zero means DefaultStreamQueue and
	// DefaultStreamQueueBytes.
	StreamQueue, StreamQueueBytes int
	// RaftFaults, when set, loses Raft traffic between this node and its
	// peers (tests cut nodes off with it).
	RaftFaults shard.Faults
	// FS is where the node's Pebble DB lives; nil is the disk. Tests give
	// one that fails on demand.
	FS vfs.FS
	// MaxMoves and SnapshotRate pace replica moves (see shard.Config);
	// zero means the defaults.
	MaxMoves, SnapshotRate int
	// AdminListen, when set, serves the operator's endpoints there:
	// /livez, /readyz, /healthz, /metrics and, with Pprof, Go's profiles.
	// Keep it on loopback or a private network.
	AdminListen string
	Pprof       bool
	Logger      *slog.Logger
	LogOutput   io.Writer // memberlist's log lines
}

// verifyPeer checks that a replication stream comes from the node its
// messages name: a node's identity is its certificate.
func (n *Node) verifyPeer(ctx context.Context, fromNode string) error {
	id, err := n.cfg.Security.Authorize(ctx, security.RoleNode)
	if err != nil {
		n.log.Warn("refused a replication stream", "claims", fromNode, "err", err)
		return err
	}
	if !n.cfg.Security.Insecure && id.ID != fromNode {
		n.log.Warn("refused a replication stream", "claims", fromNode, "certificate", id.String())
		return status.Errorf(codes.PermissionDenied, "certificate names %s, messages claim %s", id, fromNode)
	}
	return nil
}

// DefaultConfig is a single node on loopback.
func DefaultConfig() Config {
	return Config{
		ID:            "node1",
		DataDir:       "data/node1",
		GRPCListen:    "127.0.0.1:9101",
		GossipListen:  "127.0.0.1:7101",
		Expect:        1,
		Timings:       cluster.DefaultTimings(),
		RoomIdle:      time.Minute,
		Replicas:      3,
		RaftTick:      100 * time.Millisecond,
		ElectionTicks: 10,
	}
}

// Node is one object node process.
type Node struct {
	cfg       Config
	log       *slog.Logger
	store     *storage.Store
	committer Committer
	host      atomic.Pointer[shard.Host] // nil until the cluster has formed
	raftSrv   *shard.Server
	members   *cluster.Membership
	grpc      *grpc.Server
	lis       net.Listener
	health    healthService
	adminLis  net.Listener // nil without AdminListen
	admin     *http.Server
	reg       *prometheus.Registry
	metrics   *metrics

	roomsMu sync.Mutex
	rooms   map[string]*room // guarded by roomsMu
	roomsWG sync.WaitGroup

	objects *objectHost // durable objects' actors (objects.go)

	stopping     chan struct{} // closed when shutdown begins
	loopDone     chan struct{} // closed when startReplication returns
	shutdownOnce sync.Once

	slowStreams atomic.Uint64 // streams dropped because their router fell behind

	ident     identity
	identMu   sync.Mutex // guards ident changes (Cluster, Leaving)
	fatalOnce sync.Once
	fatal     chan struct{} // closed when the node must exit (fatalErr says why)
	fatalErr  error
}

// Stats are the node's counters.
type Stats struct {
	// SlowStreams counts room streams dropped because their router did not
	// read them fast enough (it comes back and reads what it missed).
	SlowStreams uint64
	// RefusedPeers counts replication streams refused because the caller's
	// certificate did not name the node its messages claimed to be from.
	RefusedPeers uint64
	// RefusedRaft counts Raft messages dropped from accepted streams:
	// from a replica that is not the sender's own, or not plausible.
	RefusedRaft uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	st := Stats{SlowStreams: n.slowStreams.Load(), RefusedPeers: n.raftSrv.Refused()}
	if h := n.host.Load(); h != nil {
		st.RefusedRaft = h.RefusedMessages()
	}
	return st
}

// Start opens the store, starts gRPC and gossip, and begins serving.
func Start(cfg Config) (*Node, error) {
	if cfg.ID == "" {
		return nil, errors.New("objectnode: node id is empty")
	}
	if cfg.Security == nil {
		return nil, errors.New("objectnode: no security settings (certificates, or security.Insecure())")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RoomIdle <= 0 {
		cfg.RoomIdle = time.Minute
	}
	if cfg.Apps == nil {
		cfg.Apps, _ = apps.NewRegistry() // none: cannot fail
	}
	if cfg.ObjectIdle <= 0 {
		cfg.ObjectIdle = DefaultObjectIdle
	}
	if cfg.Expect < 0 {
		cfg.Expect = 0
	}
	if cfg.StreamQueue <= 0 {
		cfg.StreamQueue = DefaultStreamQueue
	}
	if cfg.StreamQueueBytes <= 0 {
		cfg.StreamQueueBytes = DefaultStreamQueueBytes
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		health:   newHealthService(),
		reg:      prometheus.NewRegistry(),
		rooms:    map[string]*room{},
		fatal:    make(chan struct{}),
		stopping: make(chan struct{}),
		loopDone: make(chan struct{}),
	}

	lis, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		return nil, fmt.Errorf("objectnode: listen for gRPC on %s: %w", cfg.GRPCListen, err)
	}
	n.lis = lis
	if cfg.AdminListen != "" {
		if n.adminLis, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			lis.Close()
			return nil, fmt.Errorf("objectnode: listen for the admin endpoints on %s: %w", cfg.AdminListen, err)
		}
	}
	fs := cfg.FS
	if fs == nil {
		fs = vfs.Default
	}
	store, err := storage.OpenStoreOn(fs, cfg.DataDir, cfg.Logger)
	if err != nil {
		n.closeListeners()
		return nil, err
	}
	n.store = store
	n.committer = raftCommitter{n}
	n.objects = newObjectHost(n, cfg.Apps, cfg.ObjectIdle)
	n.raftSrv = shard.NewServer(n.verifyPeer)
	n.registerMetrics()
	if n.ident, err = loadIdentity(store); err != nil {
		n.closeEarly()
		return nil, err
	}
	if err := nextIncarnation(store, &n.ident); err != nil {
		n.closeEarly()
		return nil, err
	}

	known, err := n.loadKnown()
	if err != nil {
		n.closeEarly()
		return nil, err
	}
	members, err := cluster.Start(cluster.Config{
		Meta: cluster.Meta{ID: cfg.ID, Role: cluster.RoleNode, GRPC: n.advertiseGRPC(), Gossip: cfg.GossipAdvertise,
			Started: n.ident.Incarnation,
			Replica: n.ident.Replica, Cluster: n.ident.Cluster, Leaving: n.ident.Leaving},
		Bind:       cfg.GossipListen,
		Advertise:  cfg.GossipAdvertise,
		GossipKey:  cfg.Security.GossipKey,
		Security:   cfg.Security,
		Seeds:      cfg.Seeds,
		Timings:    cfg.Timings,
		Known:      known,
		OnKnown:    n.saveKnown,
		OnConflict: n.fail,
		Logger:     cfg.Logger,
		LogOutput:  cfg.LogOutput,
	})
	if err != nil {
		n.closeEarly()
		return nil, err
	}
	n.members = members

	n.grpc = grpc.NewServer(
		grpc.Creds(cfg.Security.ServerCreds()),
		// Raft batches carry whole entries (and snapshots): the default 4 MB
		// limit would refuse a big batch forever and wedge its group.
		grpc.MaxRecvMsgSize(shard.MaxRaftMessage),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
	)
	pb.RegisterRoomsServer(n.grpc, &service{node: n})
	pb.RegisterObjectsServer(n.grpc, &objectService{node: n})
	pb.RegisterReplicationServer(n.grpc, n.raftSrv)
	healthpb.RegisterHealthServer(n.grpc, n.health)
	go func() {
		if err := n.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log.Error("gRPC server stopped", "err", err)
		}
	}()
	go n.startReplication()
	go n.objects.sweep()
	n.objects.wg.Add(1)
	go n.objects.alarms.run()
	if n.adminLis != nil {
		n.admin = n.serveAdmin(n.adminLis)
	}
	meta := members.Meta()
	n.log.Info("object node started", "id", cfg.ID, "grpc", n.advertiseGRPC(),
		"gossip", members.GossipAddr(), "data", cfg.DataDir, "expect", cfg.Expect,
		"replica", meta.Replica, "cluster", meta.Cluster)
	return n, nil
}

func (n *Node) closeEarly() {
	n.closeListeners()
	n.store.Close()
}

func (n *Node) closeListeners() {
	n.lis.Close()
	if n.adminLis != nil {
		n.adminLis.Close()
	}
}

// AdminAddr is where the admin endpoints are served ("" when nowhere).
func (n *Node) AdminAddr() string {
	if n.adminLis == nil {
		return ""
	}
	return n.adminLis.Addr().String()
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// GRPCAddr is the address routers use.
func (n *Node) GRPCAddr() string { return n.advertiseGRPC() }

// GossipAddr is the address other members join.
func (n *Node) GossipAddr() string { return n.members.GossipAddr() }

// Serves reports whether this node leads the room's shard and serves it.
func (n *Node) Serves(room string) bool {
	h := n.host.Load()
	if h == nil {
		return false
	}
	serving, _ := h.Serving(shardOf(room))
	return serving
}

// ShardStatus is the node's view of a shard's group; ok is false before
// replication has started.
func (n *Node) ShardStatus(s int) (st shard.ShardStatus, ok bool) {
	h := n.host.Load()
	if h == nil {
		return st, false
	}
	return h.Status(s), true
}

// ActiveObjects counts the durable objects with an actor on this node,
// started or starting.
func (n *Node) ActiveObjects() int { return n.objects.count() }

// Replicas counts the shard replicas the node holds.
func (n *Node) Replicas() int {
	if h := n.host.Load(); h != nil {
		return h.Replicas()
	}
	return 0
}

// Members is the node's membership view.
func (n *Node) Members() *cluster.Membership { return n.members }

func (n *Node) advertiseGRPC() string {
	if n.cfg.GRPCAdvertise != "" {
		return n.cfg.GRPCAdvertise
	}
	return n.lis.Addr().String()
}

func (n *Node) ready() bool {
	return n.host.Load() != nil
}

// fail makes the node exit: Failed is closed and Err says why.
func (n *Node) fail(err error) {
	n.fatalOnce.Do(func() {
		n.health.set(false)
		n.fatalErr = err
		if err != nil {
			n.log.Error("node must stop", "err", err)
		}
		close(n.fatal)
	})
}

// Failed is closed when the node cannot go on (another live process uses
// its id, or its decommission is complete: Err is nil then); the process
// should shut down and exit.
func (n *Node) Failed() <-chan struct{} { return n.fatal }

// Err says why Failed was closed; nil after a completed decommission.
func (n *Node) Err() error {
	select {
	case <-n.fatal:
		return n.fatalErr
	default:
		return nil
	}
}

// redirectFor is nil when this node should host the room now: it leads
// the room's shard and has applied everything committed before its term.
// Otherwise it says where to go instead ("not leader, try X").
func (n *Node) redirectFor(room string) *pb.Redirect {
	select {
	case <-n.stopping:
		return &pb.Redirect{Reason: "node shutting down"}
	default:
	}
	h := n.host.Load()
	if h == nil {
		return &pb.Redirect{Reason: "this node has not joined its cluster yet"}
	}
	serving, leader := h.Serving(shardOf(room))
	if serving {
		return nil
	}
	return n.redirectTo(leader, "not leader")
}

func (n *Node) redirectTo(leader, reason string) *pb.Redirect {
	if leader == "" || leader == n.cfg.ID {
		return &pb.Redirect{Reason: reason + "; no leader elected yet"}
	}
	meta, _ := n.members.Placement().Node(leader)
	return &pb.Redirect{OwnerId: leader, OwnerAddr: meta.GRPC, Reason: reason}
}

// attach binds a stream to the room's actor, starting the actor if the room
// is not active. It retries when it races with an actor that is exiting.
func (n *Node) attach(ctx context.Context, name string, st *stream) (*room, error) {
	for {
		r := n.room(name)
		if r == nil {
			return nil, ErrRoomStopped
		}
		q := roomReq{attach: &attachReq{st: st, result: make(chan error, 1)}}
		err := r.enqueue(ctx, q)
		if errors.Is(err, ErrRoomStopped) {
			if r.loadErr != nil {
				return nil, r.loadErr
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		select {
		case err := <-q.attach.result:
			if errors.Is(err, ErrRoomStopped) {
				continue
			}
			return r, err
		case <-r.done:
			if r.loadErr != nil {
				return nil, r.loadErr
			}
			continue
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// room returns the active actor for name, starting one if needed; nil once
// the node is shutting down.
func (n *Node) room(name string) *room {
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	select {
	case <-n.stopping:
		return nil
	default:
	}
	if r, ok := n.rooms[name]; ok {
		return r
	}
	// Checked under roomsMu, which leadershipChanged also takes: a room is
	// either refused here or stopped there, never live on a non-leader.
	if n.redirectFor(name) != nil {
		return nil
	}
	r := newRoom(n, name)
	n.rooms[name] = r
	n.roomsWG.Add(1)
	go func() {
		defer n.roomsWG.Done()
		r.run()
	}()
	return r
}

// dropSlow ends a stream whose router fell too far behind. The redirect
// names this node: the router comes straight back, sending less at once.
func (n *Node) dropSlow(room string, st *stream) {
	if st.endSlow(&pb.Redirect{OwnerId: n.cfg.ID, OwnerAddr: n.advertiseGRPC(), Reason: "stream too slow", TooSlow: true}) {
		n.slowStreams.Add(1)
		n.log.Warn("dropping slow stream", "room", room, "router", st.router, "queued", st.queued())
	}
}

// evict forgets r if it is still the active actor for its room; it reports
// whether it did. Once forgotten, the next attach starts a fresh actor that
// reloads the room from the store.
func (n *Node) evict(r *room) bool {
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	if n.rooms[r.name] != r {
		return false
	}
	delete(n.rooms, r.name)
	return true
}

func (n *Node) activeRooms() []*room {
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	out := make([]*room, 0, len(n.rooms))
	for _, r := range n.rooms {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// startReplication starts the Raft groups once this node knows which
// cluster it is in. A node with a cluster id on disk loads its replicas. A
// fresh node joins a cluster that already exists (it holds no replica until
// leaders add it) or, when Expect nodes are known and none belongs to a
// cluster yet, forms one with them: each founding node bootstraps the
// groups the ring places on it.
func (n *Node) startReplication() {
	defer close(n.loopDone)
	bootstrap := false
	deciding := time.Now()
	// The grace a founder waits for its view can end without a change.
	grace := time.NewTimer(FounderGrace)
	defer grace.Stop()
	graceEnds := grace.C
	for n.identity().Cluster == "" {
		p := n.members.Placement()
		action, id := formStep(p.Nodes(), n.cfg.Expect, time.Since(deciding))
		switch action {
		case formFound:
			n.setIdentity(func(ident *identity) { ident.Cluster = id })
			bootstrap = true
			n.log.Info("forming a new cluster", "cluster", id, "nodes", len(p.Nodes()))
		case formJoin:
			n.setIdentity(func(ident *identity) { ident.Cluster = id })
			before := n.ringWithout(p)
			n.log.Info("joining cluster", "cluster", id,
				"moves", fmt.Sprintf("%d of %d shard replicas move to reach this node", before.Moved(p, n.cfg.Replicas), cluster.Partitions*n.cfg.Replicas))
		default:
			select {
			case <-n.members.Changed():
			case <-graceEnds:
				graceEnds = nil // a founder's grace ends once
			case <-n.stopping:
				return
			}
		}
	}
	ident := n.identity()
	n.members.SetCluster(ident.Cluster)
	h, err := shard.Start(shard.Config{
		Metrics:       n.metrics.raft,
		NodeID:        n.cfg.ID,
		Replica:       ident.Replica,
		Bootstrap:     bootstrap,
		Store:         n.store,
		Members:       n.members,
		Replicas:      n.cfg.Replicas,
		Tick:          n.cfg.RaftTick,
		ElectionTicks: n.cfg.ElectionTicks,
		SnapshotEvery: n.cfg.SnapshotEvery,
		KeepEntries:   n.cfg.KeepEntries,
		MaxMoves:      n.cfg.MaxMoves,
		SnapshotRate:  n.cfg.SnapshotRate,
		Faults:        n.cfg.RaftFaults,
		Creds:         n.cfg.Security.ClientCreds(),
		OnFatal: func(err error) {
			n.fail(fmt.Errorf("this node's storage failed, so it stops and another replica takes over its shards: %w", err))
		},
		Logger:       n.log,
		OnLeadership: n.leadershipChanged,
		OnReplicas:   n.replicasChanged,
	})
	if err != nil {
		n.log.Error("cannot start replication", "err", err)
		return
	}
	n.host.Store(h)
	n.health.set(!n.leaving()) // as /readyz: a node being decommissioned is not ready
	n.raftSrv.SetHost(h)
	n.replicasChanged(h.Replicas())
	go n.watchRing(h)
}

// ringWithout is p's ring without this node, to count what joining moves.
func (n *Node) ringWithout(p *cluster.Placement) *cluster.Placement {
	var others []cluster.Meta
	for _, m := range p.Nodes() {
		if m.ID != n.cfg.ID {
			others = append(others, m)
		}
	}
	return cluster.NewPlacement(others)
}

// watchRing logs how many shard replicas each change of the ring moves,
// and ends a decommissioned node once it holds no replica.
func (n *Node) watchRing(h *shard.Host) {
	p := n.members.Placement()
	for {
		select {
		case <-n.members.Changed():
		case <-h.Done():
			return
		case <-n.stopping:
			return
		}
		next := n.members.Placement()
		if !sameRing(p, next) {
			n.log.Info("ring changed", "nodes", next.RingSize(),
				"moves", fmt.Sprintf("%d of %d shard replicas move", p.Moved(next, n.cfg.Replicas), cluster.Partitions*n.cfg.Replicas))
		}
		p = next
	}
}

func sameRing(a, b *cluster.Placement) bool {
	if a.RingSize() != b.RingSize() {
		return false
	}
	for s := 0; s < cluster.Partitions; s++ {
		x, _ := a.ShardOwner(s)
		y, _ := b.ShardOwner(s)
		if x.ID != y.ID {
			return false
		}
	}
	return true
}

func (n *Node) leaving() bool { return n.identity().Leaving }

// identity is a copy of the node's identity (startReplication and
// Decommission change it).
func (n *Node) identity() identity {
	n.identMu.Lock()
	defer n.identMu.Unlock()
	return n.ident
}

func (n *Node) setIdentity(change func(*identity)) {
	n.identMu.Lock()
	defer n.identMu.Unlock()
	change(&n.ident)
	if err := saveIdentity(n.store, n.ident); err != nil {
		n.fail(fmt.Errorf("persist node identity: %w", err))
	}
}

// Decommission takes this node out of the ring for good: every member
// stops placing replicas here, the shards' leaders move them to other
// nodes, and once this node holds none, Failed is closed (with a nil Err)
// so the process exits. It survives a restart.
func (n *Node) Decommission() {
	n.setIdentity(func(id *identity) { id.Leaving = true })
	n.members.SetLeaving()
	n.health.set(false)
	n.log.Info("decommissioning: moving every replica off this node")
	if h := n.host.Load(); h != nil {
		n.replicasChanged(h.Replicas())
	}
}

// replicasChanged runs on the Raft loop whenever this node gains or loses
// a shard replica.
func (n *Node) replicasChanged(count int) {
	if n.leaving() && count == 0 {
		n.log.Info("decommissioned: this node holds no replica; stopping")
		n.fail(nil)
	}
}

// leadershipChanged runs on the Raft loop. A shard this node stopped
// serving has its rooms stopped at once, their streams redirected to the
// new leader; a shard it began serving is scanned for objects' alarms at
// once (alarms.go); either way, gossip learns which shards this node
// leads.
func (n *Node) leadershipChanged(s int, serving bool, leader string) {
	if h := n.host.Load(); h != nil {
		n.members.SetLeads(h.Leads())
	}
	if serving {
		n.objects.alarms.shardServed(s)
		return
	}
	n.objects.shardLost(s)
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	for _, r := range n.rooms {
		if r.shard == s {
			r.stop(n.redirectTo(leader, "leadership moved"))
		}
	}
}

const knownKey = "members"

func (n *Node) loadKnown() ([]cluster.Meta, error) {
	b, err := n.store.SystemGet(knownKey)
	if err != nil || b == nil {
		return nil, err
	}
	var metas []cluster.Meta
	if err := json.Unmarshal(b, &metas); err != nil {
		return nil, fmt.Errorf("objectnode: decode known members: %w", err)
	}
	return metas, nil
}

func (n *Node) saveKnown(metas []cluster.Meta) {
	b, err := json.Marshal(metas)
	if err == nil {
		err = n.store.SystemPut(knownKey, b)
	}
	if err != nil {
		n.log.Error("persist known members", "err", err)
	}
}

// Shutdown leaves the cluster, hands every stream a redirect, stops gRPC
// and closes the store. It is idempotent; ctx bounds the graceful part.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.shutdownOnce.Do(func() {
		n.health.Shutdown() // NOT_SERVING from now on, and for good
		// The admin server goes first: a scrape must not read the store
		// while it closes.
		if n.admin != nil {
			n.admin.Close()
		}
		if lerr := n.members.Leave(500 * time.Millisecond); lerr != nil {
			n.log.Warn("leave cluster", "err", lerr)
		}
		n.roomsMu.Lock()
		close(n.stopping)
		n.roomsMu.Unlock()
		<-n.loopDone

		// Rooms and objects finish their batch in flight, which needs Raft
		// running.
		n.roomsWG.Wait()
		n.objects.closeAll()
		n.raftSrv.Close()
		stopped := make(chan struct{})
		go func() {
			n.grpc.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-ctx.Done():
			n.grpc.Stop()
			<-stopped
		}
		if h := n.host.Load(); h != nil {
			h.Stop()
		}
		if merr := n.members.Shutdown(); merr != nil {
			n.log.Warn("stop gossip", "err", merr)
		}
		err = n.store.Close()
		n.log.Info("object node stopped", "id", n.cfg.ID)
	})
	return err
}

// Kill stops the node abruptly, as close to kill -9 as an in-process test
// can get: no leave, no redirects, no flush; only synced writes survive.
func (n *Node) Kill() {
	n.shutdownOnce.Do(func() {
		if n.admin != nil {
			n.admin.Close()
		}
		n.grpc.Stop()
		n.members.Shutdown()
		n.roomsMu.Lock()
		close(n.stopping)
		n.roomsMu.Unlock()
		// Only once startReplication returned is the host (if any) known.
		<-n.loopDone
		if h := n.host.Load(); h != nil {
			h.Stop()
		}
		n.roomsWG.Wait()
		n.objects.closeAll() // their commits in flight failed with Raft
		n.store.Close()
	})
}

func shardOf(room string) int { return cluster.Shard(room) }
