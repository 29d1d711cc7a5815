// Package flagenv lets every command-line flag also be set by an
// environment variable, HELLOCHAT_<FLAG> (dashes become underscores), which
// is how container and systemd deployments usually configure a process.
// A flag given on the command line wins over the variable.
package flagenv

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"hellochat/cluster"
	"hellochat/internal/logging"
)

// EnvName is the variable that sets a flag.
func EnvName(flagName string) string {
	return "HELLOCHAT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse applies the environment to fs, then parses args. Usage lists each
// flag's variable.
func Parse(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage += fmt.Sprintf(" [$%s]", EnvName(f.Name))
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok && err == nil {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("$%s=%q: %w", EnvName(f.Name), v, serr)
			}
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

// List splits a comma-separated flag value, dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Member holds the flags every cluster member (node or router) shares.
type Member struct {
	GossipListen, GossipAdvertise *string
	seeds                         *string
	debug                         *bool
	format                        *string
}

// MemberFlags defines the gossip and logging flags shared by every member,
// writing gossip timings straight into t.
func MemberFlags(fs *flag.FlagSet, gossipListen, gossipAdvertise *string, t *cluster.Timings) *Member {
	fs.StringVar(gossipListen, "gossip-addr", *gossipListen, "host:port for gossip (memberlist, TCP and UDP)")
	fs.StringVar(gossipAdvertise, "gossip-advertise", "", "host:port others should gossip with, if not --gossip-addr")
	fs.DurationVar(&t.ProbeInterval, "probe-interval", t.ProbeInterval, "gossip failure-detector probe interval")
	fs.DurationVar(&t.ProbeTimeout, "probe-timeout", t.ProbeTimeout, "gossip probe timeout")
	fs.IntVar(&t.SuspicionMult, "suspicion-mult", t.SuspicionMult, "gossip suspicion multiplier (higher: slower to declare death)")
	return &Member{
		seeds:  fs.String("join", "", "comma-separated gossip addresses of members to join"),
		debug:  fs.Bool("debug", false, "log debug messages"),
		format: fs.String("log-format", logging.FormatText, "log as text (lines start with the process id) or json (one object per line, for collectors)"),
	}
}

// Seeds is the parsed --join list.
func (m *Member) Seeds() []string { return List(*m.seeds) }

// Logger returns the process's logger and raw log writer, naming id in
// every line; it exits with status 2 on an unknown --log-format.
func (m *Member) Logger(id string) (*slog.Logger, io.Writer) {
	level := slog.LevelInfo
	if *m.debug {
		level = slog.LevelDebug
	}
	log, raw, err := logging.New(id, os.Stderr, level, *m.format)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return log, raw
}

// ParseOrExit parses args (after the environment) and exits with status 2
// and the cause on a bad flag or variable.
func ParseOrExit(fs *flag.FlagSet, usage string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\n%s Every flag can also be set by its environment variable.\n\n", fs.Name(), usage)
		fs.PrintDefaults()
	}
	if err := Parse(fs, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", fs.Name(), err)
		os.Exit(2)
	}
}

// ServeUntilSignal waits for SIGINT or SIGTERM, then shuts down with a
// 10-second budget; it exits non-zero when shutdown fails.
func ServeUntilSignal(log *slog.Logger, shutdown func(context.Context) error) {
	ServeUntil(log, nil, nil, shutdown)
}

// ServeUntil is ServeUntilSignal that also shuts down when failed is
// closed; it then exits non-zero if failure() is not nil.
func ServeUntil(log *slog.Logger, failed <-chan struct{}, failure func() error, shutdown func(context.Context) error) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var cause error
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	case <-failed:
		cause = failure()
		log.Info("shutting down", "err", cause)
	}
	defer func() {
		if cause != nil {
			fmt.Fprintf(os.Stderr, "%v\n", cause)
			os.Exit(1)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil {
		log.Error("shutdown", "err", err)
		os.Exit(1)
	}
}
