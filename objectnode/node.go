// Package objectnode hosts durable objects of the registered classes,
// each a single-threaded actor on the leader of its shard, whose every
// write is committed through the shard's Raft group before anyone sees
// it. Routers reach them over gRPC (proto/roompb).
//
// node.go holds the node's lifecycle; config.go its settings;
// replication.go the Raft groups' wiring; objects.go the registry of live
// actors; objectevents.go how events reach objects;
// objectservice.go and socketservice.go the Objects gRPC service;
// gateways.go what objects send to routers' sockets; alarms.go the
// alarm wake-ups; redirect.go where to send a caller instead;
// formation.go, identity.go, decommission.go and known.go the node's
// place in its cluster.
package objectnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"hellochat/apps"
	"hellochat/cluster"
	"hellochat/objectclient"
	pb "hellochat/proto/roompb"
	"hellochat/shard"
	"hellochat/storage"
)

// Node is one object node process.
type Node struct {
	cfg       Config
	log       *slog.Logger
	store     *storage.Store
	committer Committer
	// objectCommits counts the durable objects' batches committed here
	// (Status's object_commits: the cluster view's commit rate).
	objectCommits atomic.Uint64
	host          atomic.Pointer[shard.Host] // nil until the cluster has formed
	raftSrv       *shard.Server
	members       *cluster.Membership
	grpc          *grpc.Server
	lis           net.Listener
	health        healthService
	adminLis      net.Listener // nil without AdminListen
	admin         *http.Server
	reg           *prometheus.Registry
	metrics       *metrics

	objects  *objectHost // durable objects' actors (objects.go)
	gateways *gatewayHub // what they send to routers' sockets (gateways.go)
	// peers and stub carry calls between objects (durable.State.Call) to
	// the nodes that lead the called objects' shards.
	peers *objectclient.Pool
	stub  *objectclient.Client

	stopping     chan struct{} // closed when shutdown begins
	loopDone     chan struct{} // closed when startReplication returns
	shutdownOnce sync.Once

	ident     identity
	identMu   sync.Mutex // guards ident changes (Cluster, Leaving)
	fatalOnce sync.Once
	fatal     chan struct{} // closed when the node must exit (fatalErr says why)
	fatalErr  error
}

// Stats are the node's counters.
type Stats struct {
	// RefusedPeers counts replication streams refused because the caller's
	// certificate did not name the node its messages claimed to be from.
	RefusedPeers uint64
	// RefusedRaft counts Raft messages dropped from accepted streams:
	// from a replica that is not the sender's own, or not plausible.
	RefusedRaft uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	st := Stats{RefusedPeers: n.raftSrv.Refused()}
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
	if cfg.Apps == nil {
		cfg.Apps, _ = apps.NewRegistry() // none: cannot fail
	}
	if cfg.ObjectIdle <= 0 {
		cfg.ObjectIdle = DefaultObjectIdle
	}
	if cfg.GatewayGrace <= 0 {
		cfg.GatewayGrace = DefaultGatewayGrace
	}
	if cfg.Expect < 0 {
		cfg.Expect = 0
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		health:   newHealthService(),
		reg:      prometheus.NewRegistry(),
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
	n.gateways = newGatewayHub(func(from objectRef, socket string) { n.objects.socketGone(from, socket, cfg.GatewayGrace) },
		n.log, n.stopping, cfg.GatewayGrace)
	n.gateways.faults = cfg.GatewayFaults
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
	n.peers = objectclient.NewPool(cfg.Security.ClientCreds())
	n.stub = objectclient.New(members.Placement, n.peers.Conn)

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
	go n.gateways.sweep()
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

// Serves reports whether this node leads the shard of the object whose
// storage is under object (durable.ID.StorageObject) and serves it.
func (n *Node) Serves(object string) bool {
	h := n.host.Load()
	if h == nil {
		return false
	}
	serving, _ := h.Serving(shardOf(object))
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

// ShardLog is how far this node's replica of shard has applied, and the
// last index its Raft log dropped; ok is false before the node runs.
func (n *Node) ShardLog(s int) (applied, compacted uint64, ok bool) {
	h := n.host.Load()
	if h == nil {
		return 0, 0, false
	}
	return h.Applied(s), h.Compacted(s), true
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

// Shutdown leaves the cluster, lets objects finish their batch in flight,
// stops gRPC and closes the store. It is idempotent; ctx bounds the graceful part.
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
		close(n.stopping)
		<-n.loopDone

		// Objects finish their batch in flight, which needs Raft running.
		n.objects.closeAll()
		n.peers.Close()
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
		close(n.stopping)
		// Only once startReplication returned is the host (if any) known.
		<-n.loopDone
		if h := n.host.Load(); h != nil {
			h.Stop()
		}
		n.objects.closeAll() // their commits in flight failed with Raft
		n.peers.Close()
		n.store.Close()
	})
}

func shardOf(object string) int { return cluster.Shard(object) }
