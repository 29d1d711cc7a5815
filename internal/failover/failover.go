// Package failover is the failover experiment users run (`make failover`):
// a real cluster on loopback under steady chat load, whose busiest leader
// is killed with -9 and restarted, then paused with SIGSTOP past the
// election timeout and resumed, again and again. It measures what a browser
// would see and checks that nothing acknowledged was lost, duplicated or
// reordered, and that all replicas end up identical.
package failover

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"hellochat/cluster"
	"hellochat/internal/chatclient"
	"hellochat/internal/launch"
	"hellochat/storage"
)

// Config of one experiment.
type Config struct {
	Bin      string        // directory with objectnode and router
	Dir      string        // data and logs
	Kills    int           // kill -9 / restart cycles
	Pauses   int           // SIGSTOP / SIGCONT cycles
	PauseFor time.Duration // how long a paused leader stays stopped
	Rooms    int
	Clients  int     // per room
	Rate     float64 // messages per second per client
	Out      io.Writer
}

// cycle is what one kill or pause measured.
type cycle struct {
	kind      string // "kill" or "pause"
	victim    string
	shards    int           // shards the victim led
	rooms     int           // of our rooms
	writable  time.Duration // until every affected room acked a message sent after the fault
	recovered time.Duration // until the cluster was settled again
	err       error
}

// sent is one message a client sent, with what happened to it.
type sent struct {
	at    time.Time
	acked time.Time
	seq   uint64
}

// client is one simulated browser: it sends at a steady rate and records
// every ack and every message it is shown.
type client struct {
	room, name string
	cc         *chatclient.Client

	mu       sync.Mutex
	sends    map[string]*sent // by client id
	order    []string         // ids in send order
	seen     []seenMsg        // messages shown, in arrival order
	closedAt time.Time
}

type seenMsg struct {
	seq uint64
	id  string
}

// Run runs the experiment and returns an error when any check failed.
func Run(ctx context.Context, cfg Config) error {
	out := cfg.Out
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	say("failover: starting 3 object nodes and a router from %s (data and logs in %s)", cfg.Bin, cfg.Dir)
	c, err := launch.Start(launch.Options{Bin: cfg.Bin, Dir: cfg.Dir})
	if err != nil {
		return err
	}
	defer c.Kill()
	say("failover: cluster up at %s; %d rooms x %d clients x %.1f msg/s", c.Base, cfg.Rooms, cfg.Clients, cfg.Rate)

	var clients []*client
	byRoom := map[string][]*client{}
	for r := 0; r < cfg.Rooms; r++ {
		room := fmt.Sprintf("fo-%d", r)
		for i := 0; i < cfg.Clients; i++ {
			cl := &client{room: room, name: fmt.Sprintf("c%d-%d", r, i), sends: map[string]*sent{}}
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			cl.cc, err = chatclient.Dial(dctx, c.Base, room, cl.name, true)
			cancel()
			if err != nil {
				return err
			}
			clients = append(clients, cl)
			byRoom[room] = append(byRoom[room], cl)
		}
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(2)
		go func() { defer wg.Done(); cl.read() }()
		go func() { defer wg.Done(); cl.send(loadCtx, cfg.Rate) }()
	}
	time.Sleep(2 * time.Second) // let the load reach steady state

	var cycles []cycle
	total := cfg.Kills + cfg.Pauses
	for i := 0; i < total && ctx.Err() == nil; i++ {
		kind := "kill"
		if i >= cfg.Kills {
			kind = "pause"
		}
		cy := runCycle(c, kind, cfg, byRoom)
		cycles = append(cycles, cy)
		if cy.err != nil {
			say("failover: %-5s %2d/%d: %s: ERROR %v", kind, i+1, total, cy.victim, cy.err)
			break
		}
		say("failover: %-5s %2d/%d: %s (led %d shards, %d of our rooms) -> writable again after %v; settled %v later",
			kind, i+1, total, cy.victim, cy.shards, cy.rooms, cy.writable.Round(time.Millisecond), cy.recovered.Round(time.Millisecond))
	}

	say("failover: stopping the load and waiting for outstanding acks")
	stopLoad()
	drainUntil := time.Now().Add(15 * time.Second)
	for time.Now().Before(drainUntil) && unacked(clients) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	res := verify(ctx, c, byRoom)
	for _, cl := range clients {
		cl.cc.Conn.Close(1000, "done")
	}
	wg.Wait()

	say("failover: stopping the cluster and comparing replicas")
	if err := c.Stop(20 * time.Second); err != nil {
		return err
	}
	res.divergent, res.divergeErr = compareReplicas(cfg.Dir, len(c.Nodes), byRoom)

	report(out, cycles, res)
	if res.failed() {
		return fmt.Errorf("failover: checks failed")
	}
	for _, cy := range cycles {
		if cy.err != nil {
			return cy.err
		}
	}
	return nil
}

// runCycle faults the leader of the busiest shard (the one holding most of
// our rooms), waits until every room it led accepts writes again, then
// brings it back and waits until leadership has returned to it.
func runCycle(c *launch.Cluster, kind string, cfg Config, byRoom map[string][]*client) cycle {
	cy := cycle{kind: kind}
	v, err := c.View()
	if err != nil {
		cy.err = err
		return cy
	}
	perShard := map[int]int{}
	for room := range byRoom {
		perShard[cluster.Shard(room)]++
	}
	busiest := -1
	for s, n := range perShard {
		if busiest < 0 || n > perShard[busiest] || n == perShard[busiest] && s < busiest {
			busiest = s
		}
	}
	cy.victim = v.Leaders[busiest]
	victim := c.Node(cy.victim)
	if victim == nil {
		cy.err = fmt.Errorf("shard %d has no leader", busiest)
		return cy
	}
	var affected []string
	for s, l := range v.Leaders {
		if l == cy.victim {
			cy.shards++
			for room := range byRoom {
				if cluster.Shard(room) == s {
					affected = append(affected, room)
				}
			}
		}
	}
	cy.rooms = len(affected)

	t0 := time.Now()
	if kind == "kill" {
		victim.Kill9()
	} else {
		victim.Signal(syscall.SIGSTOP)
	}
	cy.writable, cy.err = waitWritable(byRoom, affected, t0, 20*time.Second)
	if kind == "kill" {
		if err := victim.Start(); err != nil && cy.err == nil {
			cy.err = err
		}
	} else {
		if rest := cfg.PauseFor - time.Since(t0); rest > 0 {
			time.Sleep(rest)
		}
		victim.Signal(syscall.SIGCONT)
	}
	back := time.Now()
	if _, err := c.Settled(60 * time.Second); err != nil && cy.err == nil {
		cy.err = err
	}
	cy.recovered = time.Since(back)
	return cy
}

// waitWritable waits until each affected room has acked a message that
// was sent after t0, and returns the time the last of them took.
func waitWritable(byRoom map[string][]*client, rooms []string, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := t0.Add(timeout)
	for {
		worst, missing := time.Duration(0), ""
		for _, room := range rooms {
			first := time.Time{}
			for _, cl := range byRoom[room] {
				if at := cl.firstAckAfter(t0); !at.IsZero() && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			if first.IsZero() {
				missing = room
				break
			}
			worst = max(worst, first.Sub(t0))
		}
		if missing == "" {
			return worst, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("room %s accepted no write within %v", missing, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (cl *client) firstAckAfter(t0 time.Time) time.Time {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var first time.Time
	for i := len(cl.order) - 1; i >= 0; i-- {
		s := cl.sends[cl.order[i]]
		if s.at.Before(t0) {
			break
		}
		if !s.acked.IsZero() && (first.IsZero() || s.acked.Before(first)) {
			first = s.acked
		}
	}
	return first
}

func (cl *client) send(ctx context.Context, rate float64) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id := fmt.Sprintf("%s-%d", cl.name, n)
		cl.mu.Lock()
		cl.sends[id] = &sent{at: time.Now()}
		cl.order = append(cl.order, id)
		cl.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := cl.cc.Post(wctx, id, "load "+id)
		cancel()
		if err != nil {
			return
		}
	}
}

func (cl *client) read() {
	for {
		select {
		case f := <-cl.cc.Frames:
			cl.mu.Lock()
			switch f.Type {
			case "ack":
				if s := cl.sends[f.ID]; s != nil && s.acked.IsZero() {
					s.acked, s.seq = time.Now(), f.Seq
				}
			case "message":
				cl.seen = append(cl.seen, seenMsg{seq: f.Seq, id: f.ID})
			}
			cl.mu.Unlock()
		case <-cl.cc.Closed:
			cl.mu.Lock()
			cl.closedAt = time.Now()
			cl.mu.Unlock()
			return
		}
	}
}

func unacked(clients []*client) int {
	n := 0
	for _, cl := range clients {
		cl.mu.Lock()
		for _, s := range cl.sends {
			if s.acked.IsZero() {
				n++
			}
		}
		cl.mu.Unlock()
	}
	return n
}

// result holds the correctness checks.
type result struct {
	sent, acked, unacked  int
	lost, dup, reordered  int
	disconnects           int
	divergent             int
	verifyErr, divergeErr error
	historyMessages       int
	lostExamples, dupIDs  []string
	reorderExamples       []string
	divergentRooms        []string
}

func (r result) failed() bool {
	return r.lost > 0 || r.dup > 0 || r.reordered > 0 || r.disconnects > 0 || r.divergent > 0 ||
		r.verifyErr != nil || r.divergeErr != nil
}

// verify reads every room's whole history through the router and checks
// each client's acks and view against it.
func verify(ctx context.Context, c *launch.Cluster, byRoom map[string][]*client) result {
	var res result
	rooms := make([]string, 0, len(byRoom))
	for room := range byRoom {
		rooms = append(rooms, room)
	}
	sort.Strings(rooms)
	for _, room := range rooms {
		hist, err := history(ctx, c.Base, room)
		if err != nil {
			res.verifyErr = err
			return res
		}
		res.historyMessages += len(hist)
		seqOf := map[string]uint64{}
		for i, id := range hist {
			if _, dup := seqOf[id]; dup {
				res.dup++
				res.dupIDs = append(res.dupIDs, room+"/"+id)
			}
			seqOf[id] = uint64(i + 1)
		}
		for _, cl := range byRoom[room] {
			cl.mu.Lock()
			for id, s := range cl.sends {
				res.sent++
				if s.acked.IsZero() {
					res.unacked++
					continue
				}
				res.acked++
				if seqOf[id] != s.seq {
					res.lost++
					res.lostExamples = append(res.lostExamples, fmt.Sprintf("%s/%s acked as seq %d, history has it at %d", room, id, s.seq, seqOf[id]))
				}
			}
			for i, m := range cl.seen {
				if m.seq == 0 || m.seq > uint64(len(hist)) || hist[m.seq-1] != m.id || (i > 0 && m.seq != cl.seen[i-1].seq+1) {
					res.reordered++
					if len(res.reorderExamples) < 5 {
						res.reorderExamples = append(res.reorderExamples, fmt.Sprintf("%s: %s saw seq %d = %s", room, cl.name, m.seq, m.id))
					}
				}
			}
			if !cl.closedAt.IsZero() {
				res.disconnects++
			}
			cl.mu.Unlock()
		}
	}
	return res
}

// history pages back through a room's whole history; it returns the
// client ids in seq order.
func history(ctx context.Context, base, room string) ([]string, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cc, err := chatclient.Dial(dctx, base, room, "verifier", true)
	if err != nil {
		return nil, err
	}
	defer cc.Conn.Close(1000, "")
	next := func(match func(chatclient.Frame) bool) (chatclient.Frame, error) {
		for {
			select {
			case f := <-cc.Frames:
				if match(f) {
					return f, nil
				}
			case <-dctx.Done():
				return chatclient.Frame{}, fmt.Errorf("history of %s: %w", room, dctx.Err())
			}
		}
	}
	h, err := next(func(f chatclient.Frame) bool { return f.Type == "history" })
	if err != nil {
		return nil, err
	}
	msgs := h.Messages
	for h.More && len(msgs) > 0 {
		before := msgs[0].Seq
		if err := cc.WriteJSON(dctx, map[string]any{"type": "history", "before": before, "limit": 100}); err != nil {
			return nil, err
		}
		h, err = next(func(f chatclient.Frame) bool { return f.Type == "history" && f.Before == before })
		if err != nil {
			return nil, err
		}
		msgs = append(h.Messages, msgs...)
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			return nil, fmt.Errorf("history of %s: seq %d at position %d (gap)", room, m.Seq, i+1)
		}
		ids[i] = m.ID
	}
	return ids, nil
}

// compareReplicas opens each stopped node's store and compares every
// room's stored messages byte for byte.
func compareReplicas(dir string, nodes int, byRoom map[string][]*client) (int, error) {
	stores := make([]*storage.Store, nodes)
	for i := range stores {
		st, err := storage.OpenStore(filepath.Join(dir, fmt.Sprintf("node%d", i+1)), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return 0, err
		}
		defer st.Close()
		stores[i] = st
	}
	divergent := 0
	for room := range byRoom {
		var first []storage.KV
		for i, st := range stores {
			kvs, err := st.List(room, []byte("m"), []byte("n"), 0, false)
			if err != nil {
				return divergent, err
			}
			if i == 0 {
				first = kvs
				continue
			}
			same := len(kvs) == len(first)
			for j := 0; same && j < len(kvs); j++ {
				same = bytes.Equal(kvs[j].Key, first[j].Key) && bytes.Equal(kvs[j].Value, first[j].Value)
			}
			if !same {
				divergent++
				break
			}
		}
	}
	return divergent, nil
}

func report(out io.Writer, cycles []cycle, res result) {
	fmt.Fprintf(out, "\n%-6s %-3s %-7s %6s %6s %12s %12s\n", "cycle", "#", "victim", "shards", "rooms", "writable", "settled")
	var kills, pauses []time.Duration
	for i, cy := range cycles {
		status := cy.writable.Round(time.Millisecond).String()
		if cy.err != nil {
			status = "ERROR"
		}
		fmt.Fprintf(out, "%-6s %-3d %-7s %6d %6d %12s %12s\n", cy.kind, i+1, cy.victim, cy.shards, cy.rooms, status, cy.recovered.Round(time.Millisecond))
		if cy.err == nil {
			if cy.kind == "kill" {
				kills = append(kills, cy.writable)
			} else {
				pauses = append(pauses, cy.writable)
			}
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "writable again after kill -9:  %s\n", stats(kills))
	fmt.Fprintf(out, "writable again after SIGSTOP:  %s\n", stats(pauses))
	fmt.Fprintf(out, "messages sent %d, acknowledged %d, never acknowledged %d, in history %d\n",
		res.sent, res.acked, res.unacked, res.historyMessages)
	check := func(name string, n int, examples []string) {
		mark := "ok"
		if n > 0 {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "%-42s %6d  %s\n", name, n, mark)
		for _, e := range examples[:min(len(examples), 5)] {
			fmt.Fprintf(out, "    %s\n", e)
		}
	}
	check("acknowledged messages lost", res.lost, res.lostExamples)
	check("messages duplicated in history", res.dup, res.dupIDs)
	check("messages out of order at a client", res.reordered, res.reorderExamples)
	check("browser-side disconnects", res.disconnects, nil)
	check("rooms whose replicas differ", res.divergent, nil)
	if res.verifyErr != nil {
		fmt.Fprintf(out, "history check failed: %v\n", res.verifyErr)
	}
	if res.divergeErr != nil {
		fmt.Fprintf(out, "replica comparison failed: %v\n", res.divergeErr)
	}
}

func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("median %v, worst %v, best %v (n=%d)", med.Round(time.Millisecond),
		s[len(s)-1].Round(time.Millisecond), s[0].Round(time.Millisecond), len(s))
}
