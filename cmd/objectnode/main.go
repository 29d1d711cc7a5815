// Command objectnode runs one object node: it hosts room objects on the
// shards it leads and replicates every shard it holds in its Pebble DB.
package main

import (
	"flag"
	"os"

	"hellochat/internal/flagenv"
	"hellochat/objectnode"
)

func main() {
	cfg := objectnode.DefaultConfig()
	fs := flag.NewFlagSet("objectnode", flag.ExitOnError)
	fs.StringVar(&cfg.ID, "id", cfg.ID, "node id, unique and stable across restarts (it places rooms)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory for this node's Pebble DB")
	fs.StringVar(&cfg.GRPCListen, "grpc-addr", cfg.GRPCListen, "host:port to serve gRPC (routers and peers connect here)")
	fs.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "host:port routers and peers should dial, if not --grpc-addr")
	fs.IntVar(&cfg.Expect, "expect", cfg.Expect, "serve rooms only once this many object nodes are known (first start of a cluster)")
	fs.DurationVar(&cfg.RoomIdle, "room-idle", cfg.RoomIdle, "evict a room from memory after this long with nobody in it")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per shard (Raft group size); fewer only while the cluster has fewer nodes")
	fs.DurationVar(&cfg.RaftTick, "raft-tick", cfg.RaftTick, "Raft clock tick; the leader sends heartbeats every tick")
	fs.IntVar(&cfg.ElectionTicks, "election-ticks", cfg.ElectionTicks, "ticks without a leader before an election (randomized up to twice this)")
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
	flagenv.ServeUntilSignal(cfg.Logger, n.Shutdown)
}
