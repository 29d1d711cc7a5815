// Command router runs the HTTP/WebSocket edge: it serves the chat page and
// relays each room to the object node that owns it.
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
	"hellochat/router"
)

func main() {
	cfg := router.DefaultConfig()
	fs := flag.NewFlagSet("router", flag.ExitOnError)
	fs.StringVar(&cfg.ID, "id", cfg.ID, "router id, unique in the cluster")
	fs.StringVar(&cfg.HTTPListen, "http-addr", cfg.HTTPListen, "host:port to serve browsers (page and WebSocket)")
	fs.StringVar(&cfg.HTTPAdvertise, "http-advertise", "", "host:port browsers reach, if not --http-addr")
	fs.StringVar(&cfg.GossipListen, "gossip-addr", cfg.GossipListen, "host:port for gossip (memberlist, TCP and UDP)")
	fs.StringVar(&cfg.GossipAdvertise, "gossip-advertise", "", "host:port others should gossip with, if not --gossip-addr")
	seeds := fs.String("join", "", "comma-separated gossip addresses of members to join")
	fs.Float64Var(&cfg.SendRate, "send-rate", cfg.SendRate, "messages per second one browser may send (0: unlimited)")
	fs.IntVar(&cfg.SendBurst, "send-burst", cfg.SendBurst, "messages one browser may send at once above --send-rate")
	fs.BoolVar(&cfg.AllowAnyOrigin, "allow-any-origin", false, "accept WebSockets from pages served by other origins")
	fs.DurationVar(&cfg.Timings.ProbeInterval, "probe-interval", cfg.Timings.ProbeInterval, "gossip failure-detector probe interval")
	fs.DurationVar(&cfg.Timings.ProbeTimeout, "probe-timeout", cfg.Timings.ProbeTimeout, "gossip probe timeout")
	fs.IntVar(&cfg.Timings.SuspicionMult, "suspicion-mult", cfg.Timings.SuspicionMult, "gossip suspicion multiplier (higher: slower to declare death)")
	debug := fs.Bool("debug", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: router [flags]\n\nRuns one hellochat router. Every flag can also be set by its environment variable.\n\n")
		fs.PrintDefaults()
	}
	if err := flagenv.Parse(fs, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(2)
	}
	cfg.Seeds = flagenv.List(*seeds)
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	cfg.Logger, cfg.LogOutput = logging.New(cfg.ID, os.Stderr, level)

	rt, err := router.Start(cfg)
	if err != nil {
		cfg.Logger.Error("cannot start", "err", err)
		os.Exit(1)
	}
	cfg.Logger.Info("open the chat", "url", "http://"+rt.Addr()+"/")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	s := <-sig
	cfg.Logger.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rt.Shutdown(ctx); err != nil {
		cfg.Logger.Error("shutdown", "err", err)
		os.Exit(1)
	}
}
