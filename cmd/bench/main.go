// Command bench runs the benchmark suite (`make bench`): a real cluster on
// loopback, eight scenarios one after another, one table, JSON, and a
// regenerated docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"hellochat/internal/bench"
	"hellochat/internal/flagenv"
	"hellochat/internal/launch"
)

func main() {
	cfg := bench.Config{Out: os.Stdout}
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.StringVar(&cfg.Bin, "bin", "bin", "directory holding the objectnode and router binaries")
	fs.StringVar(&cfg.Dir, "data", "data/bench", "directory for the cluster's data and logs (wiped at start)")
	fs.Func("scenario", "run only these scenarios, in the suite's order, on one cluster (1-9, or a list: 3,4; 0: all)", func(v string) error {
		only, err := bench.ParseScenarios(v)
		cfg.Only = only
		return err
	})
	fs.Func("steps", "offered rates (msgs/s) replacing the ramp and overload scenarios' steps, each run even past one over its target: 7000, or 4000,7000", func(v string) error {
		steps, err := bench.ParseSteps(v)
		cfg.Steps = steps
		return err
	})
	fs.BoolVar(&cfg.Short, "short", false, "shorter measuring windows")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go pprof profiles on every process's admin address (printed at start)")
	fs.StringVar(&cfg.Target, "target", "", "load a running router at this URL instead of starting a cluster (loopback only)")
	fs.StringVar(&cfg.TargetAdmin, "target-admin", "http://127.0.0.1:8081", "the admin endpoints of the --target router (loopback only)")
	jsonOut := fs.String("json", "data/bench/results.json", "write the results here as JSON")
	md := fs.String("markdown", "docs/benchmarks.md", "regenerate this file with the table (empty: do not; only for full runs)")
	flagenv.ParseOrExit(fs, "Runs the hellochat benchmark suite against its own cluster on 127.0.0.1.")
	if err := launch.PrepareDir(cfg.Dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	results, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println()
	bench.Table(os.Stdout, results)
	if err := os.MkdirAll(filepath.Dir(*jsonOut), 0o755); err == nil {
		if err := bench.WriteJSON(*jsonOut, results); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}
	if *md != "" && len(cfg.Only) == 0 && len(cfg.Steps) == 0 && !cfg.Short {
		command := "make bench"
		if len(os.Args) > 1 {
			command = "bench " + strings.Join(os.Args[1:], " ")
		}
		if err := bench.Markdown(*md, command, results, time.Since(start)); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		} else {
			fmt.Printf("bench: wrote %s\n", *md)
		}
	}
}
