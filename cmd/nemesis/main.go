// Command nemesis runs seeded random interleavings of kill -9,
// SIGSTOP/SIGCONT, wiped disks, added and removed nodes, a replica lagging
// through a grow-and-shrink and (with --netlab) partitions and one-way
// cuts against a real cluster under chat load, and checks acks,
// deliveries, histories, replicas and that the cluster settles. A failing
// seed prints its operations and is shrunk to a shorter list that still
// fails; --ops replays a list.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hellochat/internal/flagenv"
	"hellochat/internal/nemesis"
	"hellochat/internal/netlab"
)

// maxSeeds bounds --seeds.
const maxSeeds = 100

func main() {
	cfg := nemesis.Config{Out: os.Stdout}
	fs := flag.NewFlagSet("nemesis", flag.ExitOnError)
	fs.StringVar(&cfg.Bin, "bin", "bin", "directory holding the objectnode and router binaries")
	data := fs.String("data", "data/nemesis", "directory for the runs' node data and logs (emptied at the start of each run)")
	seeds := fs.String("seeds", "1", "comma-separated seeds, one run each (at most 100)")
	duration := fs.Duration("duration", 2*time.Minute, "window in which a seed's operations start")
	ops := fs.String("ops", "", `replay this list of operations ("12.5s kill node2 3s; 20s add; ...", as a failure prints it) instead of a seed's`)
	shrinkRuns := fs.Int("shrink-runs", 8, "re-runs a failure may take to shrink its list of operations (0: do not shrink)")
	lab := fs.Bool("netlab", false, "run on a lab of Linux network namespaces (root) and cut links too")
	fs.IntVar(&cfg.Rooms, "rooms", 10, "rooms under load")
	fs.IntVar(&cfg.Clients, "clients", 2, "browsers (WebSocket clients) per room")
	fs.Float64Var(&cfg.Rate, "rate", 4, "messages per second each client sends")
	fs.DurationVar(&cfg.Settle, "settle", nemesis.DefaultSettle, "the cluster must be placed within this of the last operation")
	fs.IntVar(&cfg.SnapshotRate, "snapshot-rate", 0, "throttle every node's snapshot streams to this many bytes per second (0: the nodes' default): slow snapshots, so moves overlap the faults")
	fs.DurationVar(&cfg.OpWait, "op-wait", nemesis.DefaultOpWait, "an operation the cluster does not allow within this of its time is skipped")
	flagenv.ParseOrExit(fs, "Runs seeded fault interleavings against real processes and checks what they did to the chat.")
	os.Exit(run(cfg, *data, *seeds, *duration, *ops, *shrinkRuns, *lab))
}

func run(cfg nemesis.Config, data, seedList string, duration time.Duration, opsText string, shrinkRuns int, lab bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	seeds, err := parseSeeds(seedList)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nemesis:", err)
		return 2
	}
	var replay []nemesis.Op
	if opsText != "" {
		if replay, err = nemesis.Parse(opsText); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		seeds = seeds[:1]
	}
	if cfg.Rooms < 1 || cfg.Clients < 1 || cfg.Rate <= 0 || shrinkRuns < 0 || cfg.SnapshotRate < 0 {
		fmt.Fprintln(os.Stderr, "nemesis: rooms, clients and rate must be > 0, shrink-runs and snapshot-rate >= 0")
		return 2
	}
	if lab {
		if why := netlab.Usable(); why != "" {
			fmt.Fprintln(os.Stderr, "nemesis:", why)
			return 2
		}
		l, err := netlab.New()
		if err != nil {
			fmt.Fprintln(os.Stderr, "nemesis:", err)
			return 1
		}
		defer l.Close()
		nw, err := l.Network("load")
		if err != nil {
			fmt.Fprintln(os.Stderr, "nemesis:", err)
			return 1
		}
		cfg.Network, cfg.Cuts = nw, l
	}

	var verdicts []nemesis.Verdict
	status := 0
	for _, seed := range seeds {
		ops := replay
		if ops == nil {
			if ops, err = nemesis.Generate(seed, duration, cfg.Cuts != nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
		cfg.Dir = filepath.Join(data, fmt.Sprintf("seed%d", seed))
		fmt.Printf("nemesis: seed %d, %d operations: %s\n", seed, len(ops), nemesis.Format(ops))
		out := nemesis.Run(ctx, cfg, ops)
		v := nemesis.Verdict{Seed: seed, Ops: ops, Out: out}
		switch {
		case out.Err != nil:
			fmt.Fprintf(os.Stderr, "nemesis: seed %d: %v\n", seed, out.Err)
			return 1
		case out.Failed:
			status = 1
			fmt.Printf("nemesis: seed %d FAILED after %v: %s\n", seed, out.Took.Round(time.Second), out.Why)
			fmt.Printf("nemesis: seed %d operations: %s\n", seed, nemesis.Format(ops))
			fmt.Printf("nemesis: node logs in %s\n", cfg.Dir)
			if shrinkRuns > 0 && len(ops) > 1 {
				v.Shortest, v.Minimal = shrink(ctx, cfg, data, seed, ops, shrinkRuns)
				v.Shrunk = true
			}
		default:
			fmt.Printf("nemesis: seed %d passed in %v\n", seed, out.Took.Round(time.Second))
		}
		verdicts = append(verdicts, v)
		if ctx.Err() != nil {
			break
		}
	}

	nemesis.WriteSummary(os.Stdout, verdicts)
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "nemesis: interrupted")
		return 1
	}
	return status
}

// shrink re-runs a failing list with operations dropped and returns the
// shortest list that still failed.
func shrink(ctx context.Context, cfg nemesis.Config, data string, seed uint64, ops []nemesis.Op, maxRuns int) ([]nemesis.Op, bool) {
	fmt.Printf("nemesis: seed %d: shrinking its %d operations (at most %d re-runs)\n", seed, len(ops), maxRuns)
	quiet := cfg
	attempt := 0
	fails := func(cand []nemesis.Op) bool {
		if ctx.Err() != nil {
			return false
		}
		attempt++
		quiet.Dir = filepath.Join(data, fmt.Sprintf("seed%d-shrink%d", seed, attempt))
		log, err := os.Create(quiet.Dir + ".log")
		if err != nil {
			fmt.Fprintf(os.Stderr, "nemesis: %v\n", err)
			return false
		}
		defer log.Close()
		quiet.Out = log
		fmt.Printf("nemesis: shrink %d: %d operations: %s\n", attempt, len(cand), nemesis.Format(cand))
		out := nemesis.Run(ctx, quiet, cand)
		return out.Err == nil && out.Failed
	}
	shortest, minimal := nemesis.Shrink(ops, maxRuns, fails, func(cand []nemesis.Op, failed bool) {
		word := "passed: keep the operations"
		if failed {
			word = "still FAILS"
		}
		fmt.Printf("nemesis: shrink %d: %s (its output: %s)\n", attempt, word, quiet.Dir+".log")
	})
	how := "no single operation can be dropped"
	if !minimal {
		how = "the re-run budget ran out first"
	}
	fmt.Printf("nemesis: seed %d: shortest failing list, %d of %d operations (%s): %s\n", seed, len(shortest), len(ops), how, nemesis.Format(shortest))
	return shortest, minimal
}

// parseSeeds reads "1,2,3".
func parseSeeds(s string) ([]uint64, error) {
	var seeds []uint64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q: want a number", f)
		}
		if !slices.Contains(seeds, n) {
			seeds = append(seeds, n)
		}
	}
	switch {
	case len(seeds) == 0:
		return nil, fmt.Errorf("no seed given")
	case len(seeds) > maxSeeds:
		return nil, fmt.Errorf("%d seeds: at most %d", len(seeds), maxSeeds)
	}
	return seeds, nil
}
