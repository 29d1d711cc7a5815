// Package failover is the failover experiment users run (`make failover`,
// and `make netlab` on a lab of network namespaces): a real cluster under
// steady chat load that grows (a node added), shrinks (a node
// decommissioned), loses a node's disk (kill -9, data dir deleted,
// restart), and has nodes killed with -9 and restarted or paused with
// SIGSTOP past the election timeout and resumed; on a network that can cut
// links, nodes are also partitioned from the rest of the cluster, or cut
// off one way only, and healed. Victims
// rotate over all nodes, leaders of the busiest rooms and nodes leading
// none of them. After every step it waits until every shard's voters are
// the ring's replicas again. It measures what a browser would see and how
// much data each step moved, and checks that nothing acknowledged was
// lost, duplicated or reordered, and that exactly the ring's replicas hold
// each shard, identically.
package failover

import (
	"context"
	"fmt"
	"io"
	"time"

	"hellochat/internal/launch"
)

// Config of one experiment.
type Config struct {
	Bin      string        // directory with objectnode and router
	Dir      string        // data and logs
	Kills    int           // kill -9 / restart cycles
	Pauses   int           // SIGSTOP / SIGCONT cycles
	Adds     int           // nodes added (3 -> 3+Adds)
	Removes  int           // nodes decommissioned; at most Adds, so the cluster keeps 3 nodes or more
	Wipes    int           // kill -9, data dir deleted, restart on the empty dir
	PauseFor time.Duration // how long a paused node stays stopped
	// Network faults, on a Network that can cut links (Cuts): the victim
	// cut off from every other node and the router both ways (Partitions),
	// only its packets out dropped (Mutes), only packets to it dropped
	// (Deafs), each for CutFor, then healed.
	Partitions, Mutes, Deafs int
	CutFor                   time.Duration
	// Network places the cluster's processes (nil: loopback); Cuts, when
	// not nil, cuts and heals links between them (hosts named after the
	// processes).
	Network launch.Network
	Cuts    Cutter
	// PlaceTimeout bounds each step: from its start until every shard's
	// voters are the ring's replicas again.
	PlaceTimeout time.Duration
	// MaxWritePause is the longest a planned move (add, remove) may pause
	// a room's writes.
	MaxWritePause time.Duration
	Rooms         int
	Clients       int     // per room
	Rate          float64 // messages per second per client
	Out           io.Writer
	// Report is the directory for report.html and report.json ("": Dir).
	Report string
}

// Cutter cuts and heals links between a network's hosts (netlab.Lab).
type Cutter interface {
	// Cut drops packets from host from to each of to.
	Cut(from string, to ...string) error
	// Heal removes every cut.
	Heal()
}

// Founders is the number of nodes the cluster starts with; it never has
// fewer.
const Founders = 3

// Check reports a configuration the experiment cannot run.
func (cfg Config) Check() error {
	switch {
	case cfg.Kills < 0 || cfg.Pauses < 0 || cfg.Adds < 0 || cfg.Removes < 0 || cfg.Wipes < 0 ||
		cfg.Partitions < 0 || cfg.Mutes < 0 || cfg.Deafs < 0:
		return fmt.Errorf("cycle counts must be >= 0")
	case cfg.Partitions+cfg.Mutes+cfg.Deafs > 0 && cfg.Cuts == nil:
		return fmt.Errorf("partitions and one-way cuts need a network whose links can be cut (--netlab)")
	case cfg.Partitions+cfg.Mutes+cfg.Deafs > 0 && cfg.CutFor <= 0:
		return fmt.Errorf("cut-for must be > 0")
	case cfg.Removes > cfg.Adds:
		return fmt.Errorf("%d removes after %d adds would leave fewer than %d nodes", cfg.Removes, cfg.Adds, Founders)
	case cfg.Rooms < 1 || cfg.Clients < 1 || cfg.Rate <= 0:
		return fmt.Errorf("rooms, clients and rate must be > 0")
	case cfg.PlaceTimeout <= 0 || cfg.MaxWritePause <= 0:
		return fmt.Errorf("place timeout and max write pause must be > 0")
	}
	return nil
}

// plan orders the steps: the adds grow the cluster first, the faults
// (kills, pauses and wipes taking turns) hit the grown cluster, and the
// removes shrink it back, so it never has fewer than Founders nodes.
func plan(cfg Config) []string {
	var steps []string
	for i := 0; i < cfg.Adds; i++ {
		steps = append(steps, kindAdd)
	}
	faults := []struct {
		kind string
		left int
	}{{kindKill, cfg.Kills}, {kindPause, cfg.Pauses}, {kindWipe, cfg.Wipes},
		{kindPartition, cfg.Partitions}, {kindMute, cfg.Mutes}, {kindDeaf, cfg.Deafs}}
	for more := true; more; {
		more = false
		for i := range faults {
			if faults[i].left > 0 {
				steps = append(steps, faults[i].kind)
				faults[i].left--
				more = true
			}
		}
	}
	for i := 0; i < cfg.Removes; i++ {
		steps = append(steps, kindRemove)
	}
	return steps
}

// Run runs the experiment and returns an error when any check failed.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Check(); err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	out := cfg.Out
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	say("failover: starting %d object nodes and a router from %s (data and logs in %s)", Founders, cfg.Bin, cfg.Dir)
	c, err := launch.Start(launch.Options{Bin: cfg.Bin, Dir: cfg.Dir, Nodes: Founders, Network: cfg.Network, NodeFlags: LogFlags})
	if err != nil {
		return err
	}
	defer c.Kill()
	if err := c.WaitPlaced(ctx, cfg.PlaceTimeout, 0, nil); err != nil {
		return err
	}
	say("failover: cluster up at %s; %d rooms x %d clients x %.1f msg/s", c.Base, cfg.Rooms, cfg.Clients, cfg.Rate)

	load, err := StartLoad(ctx, c, "fo", cfg.Rooms, cfg.Clients, cfg.Rate)
	if err != nil {
		return err
	}
	clients, byRoom, loadStart := load.clients, load.byRoom, load.started // the HTML report's time axis starts at loadStart

	steps := plan(cfg)
	cuts := ""
	if cfg.Cuts != nil {
		cuts = fmt.Sprintf(", %d partitions, %d mutes, %d deafs", cfg.Partitions, cfg.Mutes, cfg.Deafs)
	}
	say("failover: %d steps: %d adds (%d -> %d nodes), %d kills, %d pauses, %d wipes%s, %d removes (-> %d nodes); each must be placed within %v",
		len(steps), cfg.Adds, Founders, Founders+cfg.Adds, cfg.Kills, cfg.Pauses, cfg.Wipes, cuts, cfg.Removes, Founders+cfg.Adds-cfg.Removes, cfg.PlaceTimeout)
	r := &runner{ctx: ctx, cfg: cfg, c: c, byRoom: byRoom, clients: clients, out: out}
	var cycles []cycle
	for i, kind := range steps {
		if ctx.Err() != nil {
			break
		}
		cy := r.run(kind, i+1, len(steps))
		cycles = append(cycles, cy)
		if cy.err != nil {
			say("failover: stopping after the failed step; node logs are in %s", cfg.Dir)
			break
		}
	}

	say("failover: stopping the load and waiting for outstanding acks")
	checks := load.Finish(ctx, c, 15*time.Second)

	say("failover: stopping the cluster and comparing replicas")
	if err := c.Stop(20 * time.Second); err != nil {
		return err
	}
	checks.CompareReplicas(c, load.Rooms())
	checks.ScanLogs(c)
	res := checks.res

	report(out, cfg, cycles, res)
	dir := cfg.Report
	if dir == "" {
		dir = cfg.Dir
	}
	htmlPath, jsonPath, reportErr := writeReport(dir, buildReport(cfg, loadStart, len(steps), cycles, clients, res))
	if reportErr != nil {
		// The text report above holds the results: say so, and fail only
		// after the checks' own errors.
		say("failover: writing the HTML report: %v", reportErr)
	} else {
		say("failover: report in %s (its data in %s)", htmlPath, jsonPath)
	}
	if res.failed() {
		return fmt.Errorf("failover: checks failed")
	}
	for _, cy := range cycles {
		if cy.err != nil {
			return fmt.Errorf("failover: %s %s failed: %w", cy.kind, cy.victim, cy.err)
		}
		if cy.slow {
			return fmt.Errorf("failover: %s %s paused writes for %v, over the %v limit of a planned move",
				cy.kind, cy.victim, cy.stall.worst().Round(time.Millisecond), cfg.MaxWritePause)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("failover: interrupted after %d of %d steps", len(cycles), len(steps))
	}
	if reportErr != nil {
		return fmt.Errorf("failover: writing the HTML report: %w", reportErr)
	}
	return nil
}
