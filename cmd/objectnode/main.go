// Command objectnode runs one object node: it hosts room objects and
// stores their data in its own Pebble DB.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"hellochat/internal/flagenv"
	"hellochat/internal/logging"
	"hellochat/objectnode"
)

func main() {
	cfg := objectnode.DefaultConfig()
	fs := flag.NewFlagSet("objectnode", flag.ExitOnError)
	fs.StringVar(&cfg.ID, "id", cfg.ID, "node id, unique and stable across restarts (it places rooms)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory for this node's Pebble DB")
	fs.StringVar(&cfg.GRPCListen, "grpc-addr", cfg.GRPCListen, "host:port to serve gRPC (routers connect here)")
	fs.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "host:port routers should dial, if not --grpc-addr")
	fs.StringVar(&cfg.GossipListen, "gossip-addr", cfg.GossipListen, "host:port for gossip (memberlist, TCP and UDP)")
	fs.StringVar(&cfg.GossipAdvertise, "gossip-advertise", "", "host:port others should gossip with, if not --gossip-addr")
	seeds := fs.String("join", "", "comma-separated gossip addresses of members to join")
	fs.IntVar(&cfg.Expect, "expect", cfg.Expect, "serve rooms only once this many object nodes are known (first start of a cluster)")
	fs.DurationVar(&cfg.RoomIdle, "room-idle", cfg.RoomIdle, "evict a room from memory after this long with nobody in it")
	fs.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "replicas per shard (Raft group size); fewer only while the cluster has fewer nodes")
	fs.DurationVar(&cfg.RaftTick, "raft-tick", cfg.RaftTick, "Raft clock tick; the leader sends heartbeats every tick")
	fs.IntVar(&cfg.ElectionTicks, "election-ticks", cfg.ElectionTicks, "ticks without a leader before an election (randomized up to twice this)")
	fs.DurationVar(&cfg.Timings.ProbeInterval, "probe-interval", cfg.Timings.ProbeInterval, "gossip failure-detector probe interval")
	fs.DurationVar(&cfg.Timings.ProbeTimeout, "probe-timeout", cfg.Timings.ProbeTimeout, "gossip probe timeout")
	fs.IntVar(&cfg.Timings.SuspicionMult, "suspicion-mult", cfg.Timings.SuspicionMult, "gossip suspicion multiplier (higher: slower to declare death)")
	debug := fs.Bool("debug", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: objectnode [flags]\n\nRuns one hellochat object node. Every flag can also be set by its environment variable.\n\n")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "objectnode:", err)
		os.Exit(2)
	}
	cfg.Seeds = flagenv.List(*seeds)
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	cfg.Logger, cfg.LogOutput = logging.New(cfg.ID, os.Stderr, level)

	n, err := objectnode.Start(cfg)
	if err != nil {
		cfg.Logger.Error("cannot start", "err", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	cfg.Logger.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		cfg.Logger.Error("shutdown", "err", err)
		os.Exit(1)
	}
}
