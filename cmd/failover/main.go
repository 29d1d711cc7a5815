// Command failover runs the failover experiment: a real cluster on
// loopback under chat load that grows by added nodes, has nodes killed
// with -9 and restarted, paused with SIGSTOP and resumed, and restarted on
// a wiped disk, then shrinks by decommissioned nodes. With --netlab the
// cluster runs on a lab of network namespaces instead, a host per process,
// and nodes are also partitioned and cut off one way. After each step it
// waits until every shard's replicas are the ring's again, and it prints
// what browsers saw, what each step moved, and whether anything
// acknowledged was lost; it also writes the results as an HTML page with
// plots and as JSON.
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
	"hellochat/internal/netlab"
)

func main() {
	cfg := failover.Config{Out: os.Stdout}
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	fs.StringVar(&cfg.Bin, "bin", "bin", "directory holding the objectnode and router binaries")
	fs.StringVar(&cfg.Dir, "data", "data/failover", "directory for the experiment's node data and logs (wiped at start)")
	fs.StringVar(&cfg.Report, "report", "", "directory for report.html (plots of the load through the steps) and report.json (default: the data directory)")
	fs.IntVar(&cfg.Kills, "kills", 20, "kill -9 / restart cycles")
	fs.IntVar(&cfg.Pauses, "pauses", 5, "SIGSTOP / SIGCONT cycles")
	fs.IntVar(&cfg.Adds, "adds", 2, "nodes added to the 3 founders (--expect 0), before the kills, pauses and wipes")
	fs.IntVar(&cfg.Removes, "removes", 2, "nodes decommissioned at the end (at most --adds: the cluster keeps 3 nodes)")
	fs.IntVar(&cfg.Wipes, "wipes", 1, "kill -9 / delete the data dir / restart cycles")
	fs.DurationVar(&cfg.PauseFor, "pause-for", 3*time.Second, "how long a paused node stays stopped (past the election timeout)")
	fs.DurationVar(&cfg.PlaceTimeout, "place-timeout", 120*time.Second, "a step fails unless every shard's voters are the ring's replicas within this")
	fs.DurationVar(&cfg.MaxWritePause, "max-write-pause", time.Second, "an add or remove fails if it pauses a room's writes longer")
	fs.IntVar(&cfg.Rooms, "rooms", 30, "rooms under load")
	fs.IntVar(&cfg.Clients, "clients", 2, "browsers (WebSocket clients) per room")
	lab := fs.Bool("netlab", false, "run the cluster on a lab of Linux network namespaces (root; a host per process, one for the load) and cut links too")
	skip := fs.Bool("skip-unusable", false, "with --netlab: say why and exit 0 when this machine cannot build the lab (not with CI=true: then it fails)")
	fs.IntVar(&cfg.Partitions, "partitions", 0, "with --netlab: cut a node off from the other nodes and the router, both ways, then heal")
	fs.IntVar(&cfg.Mutes, "mutes", 0, "with --netlab: drop what a node sends the others and the router (one way), then heal")
	fs.IntVar(&cfg.Deafs, "deafs", 0, "with --netlab: drop what the others and the router send a node (one way), then heal")
	fs.DurationVar(&cfg.CutFor, "cut-for", 3*time.Second, "how long a network cut lasts (past the election timeout)")
	fs.Float64Var(&cfg.Rate, "rate", 4, "messages per second each client sends")
	flagenv.ParseOrExit(fs, "Runs the failover experiment against real processes on 127.0.0.1, or on a lab of network namespaces (--netlab).")
	os.Exit(run(cfg, *lab, *skip))
}

// run runs the experiment (on a lab of network namespaces it builds and
// tears down when lab is set) and returns the exit status.
func run(cfg failover.Config, lab, skipUnusable bool) int {
	// Caught from the start, so that Ctrl-C while the lab is being built
	// still tears it down.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if lab {
		if why := netlab.Usable(); why != "" {
			if skipUnusable && !netlab.Required() {
				fmt.Println("failover: skipped, no network lab here:", why)
				return 0
			}
			if skipUnusable {
				fmt.Fprintln(os.Stderr, "failover: CI=true: an unusable network lab fails the run instead of skipping it")
			}
			fmt.Fprintln(os.Stderr, "failover:", why)
			return 2
		}
		l, err := netlab.New()
		if err != nil {
			fmt.Fprintln(os.Stderr, "failover:", err)
			return 1
		}
		defer l.Close()
		nw, err := l.Network("load")
		if err != nil {
			fmt.Fprintln(os.Stderr, "failover:", err)
			return 1
		}
		cfg.Network, cfg.Cuts = nw, l
	}
	if err := cfg.Check(); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		return 2
	}
	if err := launch.PrepareDir(cfg.Dir); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		return 1
	}
	if err := failover.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
