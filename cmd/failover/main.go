// Command failover runs the failover experiment: a real three-node cluster
// on loopback under chat load, whose busiest leader is killed with -9 and
// restarted, then paused with SIGSTOP and resumed, cycle after cycle. It
// prints what browsers saw and whether anything acknowledged was lost.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"hellochat/internal/failover"
	"hellochat/internal/flagenv"
	"hellochat/internal/launch"
)

func main() {
	cfg := failover.Config{Out: os.Stdout}
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	fs.StringVar(&cfg.Bin, "bin", "bin", "directory holding the objectnode and router binaries")
	fs.StringVar(&cfg.Dir, "data", "data/failover", "directory for the experiment's node data and logs (wiped at start)")
	fs.IntVar(&cfg.Kills, "kills", 20, "kill -9 / restart cycles")
	fs.IntVar(&cfg.Pauses, "pauses", 5, "SIGSTOP / SIGCONT cycles")
	fs.DurationVar(&cfg.PauseFor, "pause-for", 3*time.Second, "how long a paused leader stays stopped (past the election timeout)")
	fs.IntVar(&cfg.Rooms, "rooms", 30, "rooms under load")
	fs.IntVar(&cfg.Clients, "clients", 2, "browsers (WebSocket clients) per room")
	fs.Float64Var(&cfg.Rate, "rate", 4, "messages per second each client sends")
	flagenv.ParseOrExit(fs, "Runs the failover experiment against real processes on 127.0.0.1.")
	if cfg.Kills < 0 || cfg.Pauses < 0 || cfg.Rooms < 1 || cfg.Clients < 1 || cfg.Rate <= 0 {
		fmt.Fprintln(os.Stderr, "failover: --kills and --pauses must be >= 0; --rooms, --clients and --rate > 0")
		os.Exit(2)
	}
	if err := launch.PrepareDir(cfg.Dir); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := failover.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
