package failover

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"hellochat/apps/counter"
	"hellochat/internal/chatclient"
	"hellochat/internal/countercheck"
	"hellochat/internal/launch"
)

// Load is steady chat load on a cluster: rooms with clients that each
// send at a steady rate and record every ack, refusal, error frame and
// message they are shown, for the checks; beside it, clients of the
// counter app record every increment and read for porcupine. The failover
// experiment and the nemesis share it.
type Load struct {
	clients  []*client
	byRoom   map[string][]*client
	counters *countercheck.Load
	stop     context.CancelFunc
	wg       sync.WaitGroup
	started  time.Time
}

// counterCheckTimeout bounds porcupine's search of one counter's history;
// a history of the load's shape takes well under a second.
const counterCheckTimeout = time.Minute

// StartLoad connects clients to every room (named prefix-0, prefix-1, ...)
// through the cluster's router and starts their sending, and starts the
// counter load (counters prefix-ctr-0, ...); it returns once every chat
// client has had a few messages acknowledged and every counter client an
// increment.
func StartLoad(ctx context.Context, c *launch.Cluster, prefix string, rooms, clients int, rate float64) (*Load, error) {
	if rooms < 1 || clients < 1 || rate <= 0 {
		return nil, fmt.Errorf("load: rooms, clients and rate must be > 0")
	}
	l := &Load{byRoom: map[string][]*client{}}
	hc := c.HTTPClient(0)
	for r := 0; r < rooms; r++ {
		room := fmt.Sprintf("%s-%d", prefix, r)
		for i := 0; i < clients; i++ {
			cl := &client{room: room, name: fmt.Sprintf("c%d-%d", r, i), sends: map[string]*sent{}}
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var err error
			cl.cc, err = chatclient.DialVia(dctx, hc, c.Base, room, cl.name, true)
			cancel()
			if err != nil {
				l.closeAll()
				return nil, fmt.Errorf("load: connect %s to %s: %w", cl.name, room, err)
			}
			l.clients = append(l.clients, cl)
			l.byRoom[room] = append(l.byRoom[room], cl)
		}
	}
	loadCtx, stop := context.WithCancel(ctx)
	l.stop, l.started = stop, time.Now()
	for _, cl := range l.clients {
		l.wg.Add(2)
		go func() { defer l.wg.Done(); cl.read() }()
		go func() { defer l.wg.Done(); cl.send(loadCtx, rate) }()
	}
	var err error
	l.counters, err = countercheck.StartLoad(loadCtx, countercheck.DefaultLoad(c.Base, c.HTTPClient(0), prefix+"-ctr", counter.Window))
	if err == nil {
		err = waitSteady(ctx, l.clients, 3, 20*time.Second)
	}
	if err == nil {
		err = l.counters.WaitSteady(ctx, 20*time.Second)
	}
	if err != nil {
		l.stop()
		l.closeAll()
		l.wg.Wait()
		if l.counters != nil {
			l.counters.Stop()
		}
		return nil, err
	}
	return l, nil
}

func (l *Load) closeAll() {
	for _, cl := range l.clients {
		cl.cc.Conn.Close(1000, "done")
	}
}

// Rooms are the load's rooms, sorted.
func (l *Load) Rooms() []string {
	rooms := make([]string, 0, len(l.byRoom))
	for room := range l.byRoom {
		rooms = append(rooms, room)
	}
	sort.Strings(rooms)
	return rooms
}

// Progress counts the messages sent and acknowledged so far, and those
// still waiting for their ack.
func (l *Load) Progress() (sent, acked, waiting int) {
	for _, cl := range l.clients {
		cl.mu.Lock()
		sent += len(cl.sends)
		for _, s := range cl.sends {
			switch {
			case !s.acked.IsZero():
				acked++
			case s.refused == "":
				waiting++
			}
		}
		cl.mu.Unlock()
	}
	return sent, acked, waiting
}

// Finish stops the sending, waits (up to ackWait) for the outstanding
// acks, checks every client's acks, refusals, error frames and view
// against each room's history read through the router, and closes the
// clients; it checks the counters' histories too (porcupine's pictures of
// any not linearizable go to the cluster's directory). The cluster must
// still run; CompareReplicas follows once it has stopped.
func (l *Load) Finish(ctx context.Context, c *launch.Cluster, ackWait time.Duration) *Checks {
	l.stop()
	waitAcked(l.clients, time.Now(), ackWait)
	res := verify(ctx, c, l.byRoom)
	l.closeAll()
	l.wg.Wait()
	res.counter = countercheck.Check(l.counters.Finish(ctx), countercheck.Options{Timeout: counterCheckTimeout, VisualizeDir: c.Dir})
	return &Checks{res: res}
}

// Checks are the correctness checks of a run.
type Checks struct{ res result }

// CompareReplicas adds the comparison of the stopped cluster's replicas:
// each shard held by exactly the ring's replicas, byte for byte.
func (ch *Checks) CompareReplicas(c *launch.Cluster, rooms []string) {
	ch.res.replicas = compareReplicas(c, rooms)
}

// Failed reports whether any check failed or could not run.
func (ch *Checks) Failed() bool { return ch.res.failed() }

// Report prints the message counts and every check with its verdict and
// first examples.
func (ch *Checks) Report(out io.Writer) {
	res := ch.res
	fmt.Fprintf(out, "messages sent %d, acknowledged %d, never acknowledged %d (refused by an error frame %d), in history %d\n",
		res.sent, res.acked, res.unacked, res.refused, res.historyMessages)
	fmt.Fprintf(out, "replicas: %d shard replicas on disk over %d shards, %d rooms (%d messages) compared\n",
		res.replicas.holders, res.replicas.shards, res.replicas.roomsCompared, res.replicas.messagesCompared)
	fmt.Fprintf(out, "node logs: %d logs of %d processes, %d times a process became a shard's leader\n",
		res.raftLogs.logs, res.raftLogs.processes, res.raftLogs.elections)
	fmt.Fprintf(out, "counter: %s\n", res.counter.Summary())
	for _, c := range checks(Config{}, nil, res)[2:] { // the first two are the experiment's steps
		fmt.Fprintf(out, "%-48s %6d  %s\n", c.Name, c.Count, c.Mark())
		for _, e := range c.Examples {
			fmt.Fprintf(out, "    %s\n", e)
		}
	}
	for _, e := range failures(res) {
		fmt.Fprintln(out, e)
	}
}

// Violations counts what the checks found wrong: messages lost,
// duplicated, reordered or never answered, replicas misplaced or
// differing, shards and terms with two leaders, panics; a check that
// could not run counts one.
func (ch *Checks) Violations() int {
	n := len(failures(ch.res))
	for _, c := range checks(Config{}, nil, ch.res)[2:] {
		n += c.Count
	}
	return n
}

// Summary is the failed checks in one line ("" when all passed).
func (ch *Checks) Summary() string {
	s := ""
	for _, c := range checks(Config{}, nil, ch.res)[2:] {
		if !c.OK() {
			s += fmt.Sprintf("%s: %d; ", c.Name, c.Count)
		}
	}
	for _, e := range failures(ch.res) {
		s += e + "; "
	}
	if len(s) > 2 {
		s = s[:len(s)-2]
	}
	return s
}
