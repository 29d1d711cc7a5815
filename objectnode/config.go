package objectnode

import (
	"io"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/vfs"

	"hellochat/apps"
	"hellochat/cluster"
	"hellochat/security"
	"hellochat/shard"
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
	Expect  int
	Timings cluster.Timings
	// Apps are the durable object classes the node runs (nil: none; the
	// binary passes apps/builtin, so this package depends on no app);
	// ObjectIdle closes an object's actor
	// after that long without calls (0: DefaultObjectIdle).
	Apps       *apps.Registry
	ObjectIdle time.Duration
	// GatewayGrace is how long sends to a router without a Gateway stream
	// wait before the router is taken for gone (0: DefaultGatewayGrace).
	GatewayGrace time.Duration
	// Replicas is how many nodes hold each shard (Raft group size).
	Replicas int
	// RaftTick and ElectionTicks set Raft's clock: a dead leader is
	// replaced within about ElectionTicks to 2*ElectionTicks ticks, sooner
	// when gossip or the transport reports it dead.
	RaftTick      time.Duration
	ElectionTicks int
	// SnapshotEvery, TrailEntries and KeepEntries bound each shard's Raft
	// log (see shard.Config); zero means the defaults.
	SnapshotEvery, TrailEntries, KeepEntries uint64
	// RaftFaults, when set, loses Raft traffic between this node and its
	// peers (tests cut nodes off with it).
	RaftFaults shard.Faults
	// GatewayFaults, when set, loses what this node streams to routers
	// (tests lose the frames a node would die holding with it).
	GatewayFaults GatewayFaults
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

// DefaultConfig is a single node on loopback.
func DefaultConfig() Config {
	return Config{
		ID:            "node1",
		DataDir:       "data/node1",
		GRPCListen:    "127.0.0.1:9101",
		GossipListen:  "127.0.0.1:7101",
		Expect:        1,
		Timings:       cluster.DefaultTimings(),
		Replicas:      3,
		RaftTick:      100 * time.Millisecond,
		ElectionTicks: 10,
	}
}
