// Command objectnode runs one object node: it hosts room objects on the
// shards it leads and replicates every shard it holds in its Pebble DB.
//
// `objectnode decommission HOST:PORT` asks the node serving gRPC there to
// move every replica off itself and stop.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"hellochat/internal/flagenv"
	"hellochat/objectnode"
	pb "hellochat/proto/roompb"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "decommission" {
		os.Exit(decommission(os.Args[2:]))
	}
	cfg := objectnode.DefaultConfig()
	fs := flag.NewFlagSet("objectnode", flag.ExitOnError)
	fs.StringVar(&cfg.ID, "id", cfg.ID, "node id, unique and stable across restarts (it places rooms)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory for this node's Pebble DB")
	fs.StringVar(&cfg.GRPCListen, "grpc-addr", cfg.GRPCListen, "host:port to serve gRPC (routers and peers connect here)")
	fs.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "host:port routers and peers should dial, if not --grpc-addr")
	fs.IntVar(&cfg.Expect, "expect", cfg.Expect, "form a new cluster once this many fresh object nodes are known (first start of a cluster); 0: only join an existing cluster (adding a node)")
	fs.DurationVar(&cfg.RoomIdle, "room-idle", cfg.RoomIdle, "evict a room from memory after this long with nobody in it")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per shard (Raft group size); fewer only while the cluster has fewer nodes")
	fs.DurationVar(&cfg.RaftTick, "raft-tick", cfg.RaftTick, "Raft clock tick; the leader sends heartbeats every tick")
	fs.IntVar(&cfg.ElectionTicks, "election-ticks", cfg.ElectionTicks, "ticks without a leader before an election (randomized up to twice this)")
	fs.IntVar(&cfg.MaxMoves, "max-moves", 0, "replicas this node, as leader, moves at once (0: default)")
	fs.IntVar(&cfg.SnapshotRate, "snapshot-rate", 0, "bytes per second this node streams when it moves shard replicas (0: default 32 MiB/s)")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", "", "serve Go pprof profiles on this host:port (e.g. 127.0.0.1:6061)")
	member := flagenv.MemberFlags(fs, &cfg.GossipListen, &cfg.GossipAdvertise, &cfg.Timings)
	flagenv.ParseOrExit(fs, "Runs one hellochat object node.")
	cfg.Seeds = member.Seeds()
	cfg.Logger, cfg.LogOutput = member.Logger(cfg.ID)

	n, err := objectnode.Start(cfg)
	if err != nil {
		cfg.Logger.Error("cannot start", "err", err)
		os.Exit(1)
	}
	flagenv.ServeUntil(cfg.Logger, n.Failed(), n.Err, n.Shutdown)
}

// decommission asks a running node to leave the cluster for good.
func decommission(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: objectnode decommission HOST:PORT   (the node's --grpc-addr)")
		return 2
	}
	conn, err := grpc.NewClient(args[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "decommission: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := pb.NewRoomsClient(conn).Decommission(ctx, &pb.DecommissionRequest{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "decommission %s: %v\n", args[0], err)
		return 1
	}
	fmt.Printf("%s is leaving: it holds %d shard replicas, which move to other nodes; it stops once it holds none\n",
		st.NodeId, st.Replicas)
	return 0
}
