// Command objectnode runs one object node: it hosts room objects on the
// shards it leads and replicates every shard it holds in its Pebble DB.
//
// `objectnode decommission HOST:PORT` asks the node serving gRPC there to
// move every replica off itself and stop. `objectnode forget HOST:PORT
// NODE` records, through the node at HOST:PORT, that NODE is gone for good
// (forget.go). `objectnode dev-cert` copies one
// process's certificate out of a development PKI (deploy/compose.yaml).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"

	"hellochat/apps/builtin"
	"hellochat/internal/flagenv"
	"hellochat/objectnode"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "decommission" {
		os.Exit(decommission(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "forget" {
		os.Exit(forget(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "dev-cert" {
		os.Exit(devCert(os.Args[2:]))
	}
	cfg := objectnode.DefaultConfig()
	fs := flag.NewFlagSet("objectnode", flag.ExitOnError)
	fs.StringVar(&cfg.ID, "id", cfg.ID, "node id, unique and stable across restarts (it places rooms)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory for this node's Pebble DB")
	fs.StringVar(&cfg.GRPCListen, "grpc-addr", cfg.GRPCListen, "host:port to serve gRPC (routers and peers connect here)")
	fs.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "host:port routers and peers should dial, if not --grpc-addr")
	fs.IntVar(&cfg.Expect, "expect", cfg.Expect, "form a new cluster once this many fresh object nodes are known (first start of a cluster); 0: only join an existing cluster (adding a node)")
	fs.DurationVar(&cfg.ObjectIdle, "object-idle", objectnode.DefaultObjectIdle, "evict an object (a chat room too) from memory after this long without events; its sockets stay open")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per shard (Raft group size); fewer only while the cluster has fewer nodes")
	fs.DurationVar(&cfg.RaftTick, "raft-tick", cfg.RaftTick, "Raft clock tick; the leader sends heartbeats every tick")
	fs.IntVar(&cfg.ElectionTicks, "election-ticks", cfg.ElectionTicks, "ticks without a leader before an election (randomized up to twice this)")
	fs.IntVar(&cfg.MaxMoves, "max-moves", 0, "replicas this node, as leader, moves at once (0: default)")
	fs.IntVar(&cfg.SnapshotRate, "snapshot-rate", 0, "bytes per second this node streams when it moves shard replicas (0: default 32 MiB/s)")
	fs.StringVar(&cfg.AdminListen, "admin-addr", "", "host:port for the operator's endpoints: /livez, /readyz, /healthz, /metrics (Prometheus), --pprof; keep it on loopback or a private network; empty: none")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go pprof profiles under /debug/pprof/ on --admin-addr")
	member := flagenv.MemberFlags(fs, &cfg.GossipListen, &cfg.GossipAdvertise, &cfg.Timings)
	sec := flagenv.SecurityFlags(fs)
	setGC := flagenv.GCFlag(fs)
	flagenv.ParseOrExit(fs, "Runs one hellochat object node.")
	setGC()
	cfg.Seeds = member.Seeds()
	cfg.Logger, cfg.LogOutput = member.Logger(cfg.ID)
	var err error
	if cfg.Security, err = sec.Settings(security.RoleNode, cfg.ID, cfg.Logger); err != nil {
		cfg.Logger.Error("cannot start", "err", err)
		os.Exit(2)
	}

	cfg.Apps = builtin.Registry(builtin.DefaultOptions())
	n, err := objectnode.Start(cfg)
	if err != nil {
		cfg.Logger.Error("cannot start", "err", err)
		os.Exit(1)
	}
	flagenv.ServeUntil(cfg.Logger, n.Failed(), n.Err, n.Shutdown)
}

// decommission asks a running node to leave the cluster for good. It calls
// as an admin: with a certificate naming role admin, or from the local
// cluster's development PKI.
func decommission(args []string) int {
	fs := flag.NewFlagSet("objectnode decommission", flag.ExitOnError)
	sec := flagenv.SecurityFlags(fs)
	force := fs.Bool("force", false, "leave even if the ring keeps fewer nodes than the replication factor (the node refuses otherwise): shards then run on fewer replicas, and one more failure can stop them")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: objectnode decommission [flags] HOST:PORT   (the node's --grpc-addr)")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, args); err != nil || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	settings, err := sec.Settings(security.RoleAdmin, "admin", slog.Default())
	if err != nil {
		fmt.Fprintf(os.Stderr, "decommission: %v\n", err)
		return 2
	}
	addr := fs.Arg(0)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(settings.ClientCreds()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "decommission: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := pb.NewRoomsClient(conn).Decommission(ctx, &pb.DecommissionRequest{Force: *force})
	if err != nil {
		fmt.Fprintf(os.Stderr, "decommission %s: %v\n", addr, err)
		return 1
	}
	if *force {
		fmt.Fprintln(os.Stderr, "WARNING: forced: the node leaves even if the ring keeps fewer nodes than the replication factor")
	}
	fmt.Printf("%s is leaving: it holds %d shard replicas, which move to other nodes; it stops once it holds none\n",
		st.NodeId, st.Replicas)
	return 0
}
