package shard

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math/rand"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/cryptotest"

	"github.com/cockroachdb/pebble/vfs"
	"go.etcd.io/raft/v3"

	"hellochat/cluster"
	"hellochat/storage"
)

// A deterministic simulation of several Hosts, the way etcd raft tests its
// core: no loop goroutines, no clocks, no sockets. One goroutine ticks the
// Hosts, runs their rounds, and delivers (or drops, delays, reorders,
// duplicates) every batch and snapshot they send; it proposes writes on
// whichever Host serves a shard, crashes Hosts (a crash keeps only what
// their stores synced) and restarts them, and cuts links one way or both.
// Raft's election timeouts come from crypto/rand, which the test makes a
// function of the seed, so one seed replays one run exactly:
//
//	SIMSEED=42 go test -race -run 'TestSim$' ./shard/
//
// replays seed 42 (SIMSTEPS overrides its length; SIMSEEDS=n runs seeds 1
// to n). After every step it
// checks that no two replicas lead a shard in one term, that replicas that
// applied index i applied the same entry there, and that a Host that starts
// serving a shard holds every write acknowledged so far. At the end it
// heals everything, waits for every shard to settle, and checks that
// every replica of a shard holds byte-identical data, with every
// acknowledged write and nothing never proposed.

const (
	// simSteps is how many actions one seed takes.
	simSteps = 2000
	// simHealRounds bounds the ticks (of every Host) the healed cluster
	// may take to settle; an election needs ElectionTicks*2 at most, a
	// snapshot a few round trips.
	simHealRounds = 400
	// simShards is how many shards the simulated cluster keeps (of the 64
	// the ring places): enough that rounds batch several groups.
	simShards = 4
	// simMaxSyncs bounds the sync a crash in the middle of a round
	// happens at: the first, or one of the few a snapshot's install adds.
	simMaxSyncs = 4
	// simFinalTries bounds the tries of each final write, which a
	// leadership handover in progress refuses.
	simFinalTries = 5
	// simElectionTicks is the Hosts' election timeout, in ticks.
	simElectionTicks = 10
	// simHistory is how many recent actions a failure report shows.
	simHistory = 40
)

// simNode is one simulated node: its disk, its store, and its current
// Host (nil while crashed).
type simNode struct {
	id, replica string
	mem         *vfs.MemFS // strict: a crash keeps only what was synced
	fs          *syncWatchFS
	syncs       atomic.Int64
	// dieAt is, while the node is to die in its next round, the count of
	// syncs at which it dies (0 otherwise).
	dieAt atomic.Int64
	// rate is how fast its clock runs: it ticks with probability rate/4
	// when the Hosts tick.
	rate int
	st   *storage.Store
	h    *Host
	// serving remembers which shards this node served at the last check,
	// so a node that starts serving one is checked for every
	// acknowledged write of it.
	serving map[int]bool
	// verified is, per shard, the last applied index whose entry was
	// compared with the other replicas'.
	verified map[int]uint64
}

// simWrite is a proposed write: a new key of its shard's plain object,
// or, versioned as a room's messages are, the next seq of its shard's
// room object, which only a proposer that has seen every earlier seq
// may take.
type simWrite struct {
	id         string
	seq        uint64 // 0: a plain write
	shard      int
	object     string
	key, value string
}

type sim struct {
	t     *testing.T
	seed  int64
	rng   *rand.Rand
	step  int
	nodes []*simNode
	net   simNet
	// cut holds one-way cuts: a message from [0] to [1] is lost.
	cut       map[[2]string]bool
	shards    []int
	placement *cluster.Placement
	// leaders is, per (shard, term), the replica seen leading.
	leaders map[[2]uint64]uint64
	// entries is, per shard and index, the term and data of the entry
	// first seen applied there.
	entries  map[int]map[uint64]string
	proposed map[string]simWrite // by id
	acked    map[string]simWrite // by id
	// seqs is, per shard, the write acknowledged for each seq of its room.
	seqs map[int]map[uint64]string
	// refused are the writes answered ErrConflict.
	refused   map[string]bool
	answered  map[string]int // done calls, by key
	next      int
	nextRead  int
	trace     hash.Hash64
	history   []string
	lines     []string // every action, when keepLines is set
	keepLines bool
	test      string   // the test that replays a seed
	answers   []string // this round's, noted in order once it is over
	stats     simStats
}

type simStats struct {
	ticks, delivered, dropped, duplicated, lost, snapshots, proposals, acked, reads, confirmed int
	contested, staleReads, refusedMsgs, crashes, restarts, cuts                                int
}

func TestSim(t *testing.T) {
	runSeeds(t, []int64{1, 2, 3, 4}, simOptions{test: "TestSim"})
}

// runSeeds runs the given seeds, or those SIMSEED or SIMSEEDS name.
func runSeeds(t *testing.T, seeds []int64, opts simOptions) {
	steps := simSteps
	if v := os.Getenv("SIMSEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("SIMSEED=%q: %v", v, err)
		}
		seeds = []int64{seed}
	}
	if v := os.Getenv("SIMSEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("SIMSEEDS=%q: want a positive number", v)
		}
		seeds = nil
		for i := 1; i <= n; i++ {
			seeds = append(seeds, int64(i))
		}
	}
	if v := os.Getenv("SIMSTEPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("SIMSTEPS=%q: want a positive number", v)
		}
		steps = n
	}
	if testing.Short() {
		steps /= 3
	}
	for _, seed := range seeds {
		t.Run("seed="+strconv.FormatInt(seed, 10), func(t *testing.T) {
			s := runSim(t, seed, steps, opts)
			t.Logf("seed %d: %d nodes, %+v, writes refused %d", seed, len(s.nodes), s.stats, len(s.refused))
		})
	}
}

// A seed replays exactly: the same actions, the same outcomes, the same
// data. Without this, SIMSEED would not reproduce a failure.
func TestSimReplaysASeed(t *testing.T) {
	const seed, steps = 7, 400
	var sums [2]uint64
	var lines [2][]string
	for i := range sums {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) {
			r := runSim(t, seed, steps, simOptions{keepLines: true, test: "TestSimReplaysASeed"})
			sums[i] = r.trace.Sum64()
			lines[i] = r.lines
		})
	}
	for i := range min(len(lines[0]), len(lines[1])) {
		if lines[0][i] != lines[1][i] {
			t.Logf("first difference: %q vs %q", lines[0][i], lines[1][i])
			break
		}
	}
	if sums[0] != sums[1] {
		t.Fatalf("seed %d ran differently twice: trace %x, then %x", seed, sums[0], sums[1])
	}
}

// simOptions vary a simulation beyond its seed.
type simOptions struct {
	keepLines bool // keep every action, to compare two runs
	// live, by cluster size, is a placement where every node is up (see
	// TestSimLive); without, every node is known and none up.
	live map[int]*cluster.Placement
	test string // the test that replays a seed, for failure reports
	// after runs on the healed cluster, before its Hosts close.
	after func(*sim)
}

// runSim runs one seed for steps actions, then heals the cluster and
// checks it.
func runSim(t *testing.T, seed int64, steps int, opts simOptions) *sim {
	cryptotest.SetGlobalRandom(t, uint64(seed))
	s := &sim{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), cut: map[[2]string]bool{},
		leaders: map[[2]uint64]uint64{}, entries: map[int]map[uint64]string{},
		proposed: map[string]simWrite{}, acked: map[string]simWrite{}, answered: map[string]int{},
		seqs: map[int]map[uint64]string{}, refused: map[string]bool{},
		trace: fnv.New64a(), keepLines: opts.keepLines, test: opts.test}
	defer func() {
		if r := recover(); r != nil {
			s.fail("panic: %v\n%s", r, debug.Stack())
		}
	}()
	defer s.closeAll()
	n := 3 + 2*int(seed%2) // three or five nodes
	var metas []cluster.Meta
	for i := 1; i <= n; i++ {
		node := &simNode{id: fmt.Sprintf("n%d", i), replica: fmt.Sprintf("r%d", i), mem: vfs.NewStrictMem(), rate: 3}
		node.fs = &syncWatchFS{FS: node.mem, syncs: &node.syncs, before: func(n int64) {
			if at := node.dieAt.Load(); at > 0 && n >= at {
				node.mem.SetIgnoreSyncs(true) // the crash: nothing from here on lasts
			}
		}}
		s.nodes = append(s.nodes, node)
		metas = append(metas, cluster.Meta{ID: node.id, Role: cluster.RoleNode, Replica: node.replica})
	}
	s.placement = cluster.NewPlacement(metas)
	if p := opts.live[n]; p != nil {
		s.placement = p
	}
	for _, sh := range s.rng.Perm(cluster.Partitions)[:simShards] {
		s.shards = append(s.shards, sh)
	}
	slices.Sort(s.shards)
	for _, node := range s.nodes {
		s.form(node)
	}
	for s.step = 1; s.step <= steps; s.step++ {
		s.act()
	}
	s.heal()
	for _, node := range s.nodes {
		s.stats.refusedMsgs += int(node.h.RefusedMessages()) // since its last restart
	}
	if opts.after != nil {
		opts.after(s)
	}
	return s
}

// fail reports a violation with what replays it.
func (s *sim) fail(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d, step %d: %s\nreplay: SIMSEED=%d go test -race -run '%s$' ./shard/\nlast actions:\n  %s",
		s.seed, s.step, fmt.Sprintf(format, args...), s.seed, s.test, strings.Join(s.history, "\n  "))
}

// note records an action in the trace and the history.
func (s *sim) note(format string, args ...any) {
	line := fmt.Sprintf("%d: ", s.step) + fmt.Sprintf(format, args...)
	io.WriteString(s.trace, line+"\n")
	if s.keepLines {
		s.lines = append(s.lines, line)
	}
	if s.history = append(s.history, line); len(s.history) > simHistory {
		s.history = s.history[1:]
	}
}

func (s *sim) config(node *simNode, bootstrap bool) Config {
	return Config{NodeID: node.id, Replica: node.replica, Store: node.st, Members: simMembers{s.placement},
		Bootstrap: bootstrap, Replicas: 3, ElectionTicks: simElectionTicks, HeartbeatTicks: 1,
		// Small, so lagging replicas need snapshots; a leader keeps more
		// than the trail for a follower that lags.
		SnapshotEvery: 8, TrailEntries: 2, KeepEntries: 12,
		SnapshotRate: 1 << 40, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// form creates a founding node's store, keeping only the simulated shards.
func (s *sim) form(node *simNode) {
	st, err := storage.OpenStoreOn(node.fs, "/data", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.fail("open store of %s: %v", node.id, err)
	}
	node.st = st
	if _, err := newHost(s.config(node, true)); err != nil {
		s.fail("bootstrap %s: %v", node.id, err)
	}
	for sh := 0; sh < cluster.Partitions; sh++ {
		if !slices.Contains(s.shards, sh) {
			if err := st.DeleteShard(sh); err != nil {
				s.fail("drop shard %d of %s: %v", sh, node.id, err)
			}
		}
	}
	s.start(node)
}

// start runs a Host on node's store, wired to the simulated network.
func (s *sim) start(node *simNode) {
	h, err := newHost(s.config(node, false))
	if err != nil {
		s.fail("start %s: %v", node.id, err)
	}
	h.tr = &simWire{net: &s.net, from: node.id, dead: node.dead}
	h.snaps = &simSnaps{net: &s.net, h: h, dead: node.dead}
	node.h = h
	node.serving = map[int]bool{}
	node.verified = map[int]uint64{}
	s.check(node)
}

// dead reports whether node died in the middle of its current round.
func (node *simNode) dead() bool {
	at := node.dieAt.Load()
	return at > 0 && node.syncs.Load() >= at
}

// crash stops node as a power loss would: its Host vanishes with its
// memory, and its disk keeps only what was synced.
func (s *sim) crash(node *simNode) {
	node.h = nil
	node.mem.SetIgnoreSyncs(true)
	if err := node.st.Close(); err != nil {
		s.fail("close store of %s: %v", node.id, err)
	}
	node.mem.ResetToSyncedState()
	node.mem.SetIgnoreSyncs(false)
	node.st = nil
	node.dieAt.Store(0)
	// Its snapshot streams die with it; batches already sent may still
	// arrive.
	s.net.pending = slices.DeleteFunc(s.net.pending, func(m *simMsg) bool { return m.snap != nil && m.from == node.id })
	s.net.fresh = len(s.net.pending)
}

func (s *sim) restart(node *simNode) {
	st, err := storage.OpenStoreOn(node.fs, "/data", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.fail("reopen store of %s after a crash: %v", node.id, err)
	}
	node.st = st
	s.start(node)
}

func (s *sim) closeAll() {
	for _, node := range s.nodes {
		if node.st != nil {
			node.st.Close()
			node.st, node.h = nil, nil
		}
	}
}

func (s *sim) up() []*simNode {
	var out []*simNode
	for _, node := range s.nodes {
		if node.h != nil {
			out = append(out, node)
		}
	}
	return out
}

func (s *sim) node(id string) *simNode {
	for _, node := range s.nodes {
		if node.id == id {
			return node
		}
	}
	return nil
}

// act takes one random action.
func (s *sim) act() {
	switch r := s.rng.Intn(1000); {
	case r < 250:
		s.tickSome()
	case r < 530:
		s.deliverSome()
	case r < 720:
		s.deliverOne()
	case r < 890:
		s.propose()
	case r < 955:
		s.read()
	case r < 958:
		s.cutLink()
	case r < 965:
		// Often a shard's leader, with a slow clock: it goes on serving
		// while the others elect another.
		node := s.nodes[s.rng.Intn(len(s.nodes))]
		if leader := s.leaderOf(s.shards[s.rng.Intn(len(s.shards))]); leader != nil && s.rng.Intn(2) == 0 {
			node = leader
			node.rate = 1
		}
		s.note("isolate %s (clock %d/4)", node.id, node.rate)
		for _, other := range s.nodes {
			if other != node {
				s.cut[[2]string{node.id, other.id}] = true
				s.cut[[2]string{other.id, node.id}] = true
			}
		}
		s.stats.cuts++
	case r < 968:
		if len(s.cut) > 0 {
			s.note("heal all cuts")
			clear(s.cut)
		}
	case r < 971:
		node := s.nodes[s.rng.Intn(len(s.nodes))]
		node.rate = 1 + s.rng.Intn(4)
		s.note("%s's clock runs at %d/4", node.id, node.rate)
	case r < 974:
		if up := s.up(); len(up) > 0 {
			node := up[s.rng.Intn(len(up))]
			s.note("crash %s", node.id)
			s.stats.crashes++
			s.crash(node)
		}
	case r < 977:
		if up := s.up(); len(up) > 0 {
			s.crashMidRound(up[s.rng.Intn(len(up))])
		}
	default:
		var down []*simNode
		for _, node := range s.nodes {
			if node.h == nil {
				down = append(down, node)
			}
		}
		if len(down) > 0 {
			node := down[s.rng.Intn(len(down))]
			s.note("restart %s", node.id)
			s.stats.restarts++
			s.restart(node)
		}
	}
}

// crashMidRound crashes node at one of the first syncs of the round its
// next input starts (a tick, or a batch or snapshot in flight to it): what
// it sent before that sync may arrive, nothing after it does, and its
// disk keeps only what earlier syncs made durable. A round syncs once;
// one that installs a snapshot syncs several times.
func (s *sim) crashMidRound(node *simNode) {
	k := 1 + s.rng.Intn(simMaxSyncs)
	s.note("crash %s at its sync %d from now", node.id, k)
	s.stats.crashes++
	node.dieAt.Store(node.syncs.Load() + int64(k))
	var inbound []int
	for i, m := range s.net.pending {
		if m.to == node.id {
			inbound = append(inbound, i)
		}
	}
	if len(inbound) > 0 && s.rng.Intn(4) > 0 {
		s.deliver(s.net.take(inbound[s.rng.Intn(len(inbound))]))
	} else {
		node.h.tick()
		s.round(node)
	}
	if node.dead() {
		s.note("%s died at a sync", node.id)
	}
	s.crash(node)
}

// tickSome ticks each running Host at its clock's rate: their clocks
// drift apart, so a deposed leader may go on believing it leads while
// the others elect another.
func (s *sim) tickSome() {
	for _, node := range s.up() {
		if s.rng.Intn(4) < node.rate {
			s.note("tick %s", node.id)
			s.stats.ticks++
			node.h.tick()
			s.round(node)
		}
	}
}

func (s *sim) cutLink() {
	a, b := s.rng.Intn(len(s.nodes)), s.rng.Intn(len(s.nodes)-1)
	if b >= a {
		b++
	}
	from, to := s.nodes[a].id, s.nodes[b].id
	s.cut[[2]string{from, to}] = true
	if s.rng.Intn(2) == 0 {
		s.cut[[2]string{to, from}] = true
		s.note("cut %s<->%s", from, to)
	} else {
		s.note("cut %s->%s", from, to)
	}
	s.stats.cuts++
}

// deliverOne delivers a random message in flight (so messages are
// delayed and reordered), sometimes dropping it or delivering it twice.
func (s *sim) deliverOne() {
	if len(s.net.pending) == 0 {
		return
	}
	i := s.rng.Intn(len(s.net.pending))
	m := s.net.pending[i]
	switch r := s.rng.Intn(100); {
	case r < 5:
		s.net.take(i)
		s.note("drop %v", m)
		s.stats.dropped++
		s.snapshotEnded(m, false)
	case r < 10 && m.batch != nil:
		s.note("duplicate %v", m)
		s.stats.duplicated++
		s.deliver(m)
	default:
		s.net.take(i)
		s.deliver(m)
	}
}

// deliverSome delivers most messages in flight, roughly in the order they
// were sent; the rest stay in flight, delayed.
func (s *sim) deliverSome() {
	flight := s.net.pending
	s.net.pending, s.net.fresh = nil, 0
	for i := 0; i+1 < len(flight); i++ {
		if s.rng.Intn(4) == 0 {
			flight[i], flight[i+1] = flight[i+1], flight[i]
		}
	}
	var delayed []*simMsg
	for _, m := range flight {
		switch r := s.rng.Intn(100); {
		case r < 15:
			delayed = append(delayed, m)
		case r < 18:
			s.note("drop %v", m)
			s.stats.dropped++
			s.snapshotEnded(m, false)
		case r < 21 && m.batch != nil:
			s.note("duplicate %v", m)
			s.stats.duplicated++
			s.deliver(m)
			s.deliver(m)
		default:
			s.deliver(m)
		}
	}
	s.net.pending = append(delayed, s.net.pending...)
	s.net.fresh = len(s.net.pending)
}

// deliver hands m to its destination, unless that is down or cut off.
func (s *sim) deliver(m *simMsg) {
	dst := s.node(m.to)
	if dst == nil || dst.h == nil || s.cut[[2]string{m.from, m.to}] {
		s.note("lost %v", m)
		s.stats.lost++
		s.snapshotEnded(m, false)
		return
	}
	s.note("deliver %v", m)
	s.stats.delivered++
	if m.batch != nil {
		dst.h.step(m.batch)
		s.round(dst)
		return
	}
	s.stats.snapshots++
	err := receiveSimSnapshot(dst.h, m.from, m.snap)
	s.note("snapshot of shard %d to %s: %v", m.snap.shard, m.to, err)
	s.round(dst)
	// A receiver that died taking it never acknowledged it.
	s.snapshotEnded(m, err == nil && !dst.dead())
}

// snapshotEnded reports a snapshot's outcome to its sender, if that Host
// still runs.
func (s *sim) snapshotEnded(m *simMsg, ok bool) {
	if m.snap == nil {
		return
	}
	src := s.node(m.from)
	if src == nil || src.h != m.snap.sender {
		return
	}
	src.h.snapshotReported(snapReport{shard: m.snap.shard, to: m.snap.to, ok: ok})
	s.round(src)
}

// propose writes a new key through a Host that says it serves a random
// shard (a deposed leader may still say so).
func (s *sim) propose() {
	sh, serving := s.pickShard()
	if len(serving) == 0 {
		return
	}
	node := serving[s.rng.Intn(len(serving))]
	s.next++
	id := fmt.Sprintf("k%05d", s.next)
	w := simWrite{id: id, shard: sh, object: objectIn(sh), key: id, value: fmt.Sprintf("v%d-%d", s.seed, s.next)}
	var guards storage.Guards
	if s.rng.Intn(2) == 0 {
		// As a room actor would: the next seq after the last this
		// node's store holds.
		last, _, err := node.st.NewApplyBatch(0).Version(roomIn(sh))
		if err != nil {
			s.fail("read the version of shard %d's room on %s: %v", sh, node.id, err)
		}
		w.seq, w.object, w.key, w.value = last+1, roomIn(sh), simSeqKey(last+1), id
		guards = storage.Guards{Absent: [][]byte{[]byte(w.key)}, Versioned: true, Version: last, Next: w.seq}
	}
	s.proposed[w.id] = w
	s.stats.proposals++
	s.note("propose %s (%s) on shard %d at %s", w.id, w.key, sh, node.id)
	node.h.propose(&proposal{shard: sh, object: w.object, guards: guards,
		ops: []storage.Op{{Key: []byte(w.key), Value: []byte(w.value)}},
		done: func(err error) {
			if node.dead() {
				return // the answer dies with the process
			}
			s.answered[w.id]++
			// A Host fails its pending proposals in map order.
			s.answers = append(s.answers, fmt.Sprintf("answer %s from %s: %v", w.id, node.id, err))
			if s.answered[w.id] > 1 {
				s.fail("write %s answered %d times", w.id, s.answered[w.id])
			}
			if errors.Is(err, ErrConflict) {
				s.refused[w.id] = true
			}
			if err == nil {
				// done(nil) comes once the write is applied here.
				if v, ok, err := node.st.Get(w.object, []byte(w.key)); err != nil || !ok || string(v) != w.value {
					s.fail("%s acknowledged %s before applying it (found %v %q, err %v)", node.id, w.id, ok, v, err)
				}
				if w.seq > 0 {
					if s.seqs[sh] == nil {
						s.seqs[sh] = map[uint64]string{}
					}
					if other, ok := s.seqs[sh][w.seq]; ok {
						s.fail("shard %d: writes %s and %s were both acknowledged as seq %d", sh, other, w.id, w.seq)
					}
					s.seqs[sh][w.seq] = w.id
				}
				s.acked[w.id] = w
				s.stats.acked++
			}
		}})
	s.round(node)
}

// pickShard picks a shard to write or read, and the nodes that say they
// serve it; half the time one that several say they serve, if any (one
// was deposed and does not know it yet), as that is where a read or a
// write can go wrong.
func (s *sim) pickShard() (int, []*simNode) {
	var contested []int
	serving := map[int][]*simNode{}
	for _, sh := range s.shards {
		for _, node := range s.up() {
			if g := node.h.groups[sh]; g != nil && g.serving {
				serving[sh] = append(serving[sh], node)
			}
		}
		if len(serving[sh]) > 1 {
			s.stats.contested++
			contested = append(contested, sh)
		}
	}
	sh := s.shards[s.rng.Intn(len(s.shards))]
	if len(contested) > 0 && s.rng.Intn(2) == 0 {
		sh = contested[s.rng.Intn(len(contested))]
	}
	return sh, serving[sh]
}

// read asks a Host that says it serves a random shard to confirm it
// leads it (as an attach does before answering a read as current); once
// confirmed, its store must hold every write acknowledged before the read
// was asked.
func (s *sim) read() {
	sh, serving := s.pickShard()
	if len(serving) == 0 {
		return
	}
	node := serving[s.rng.Intn(len(serving))]
	if len(serving) > 1 {
		s.stats.staleReads++
	}
	before := maps.Clone(s.acked)
	s.stats.reads++
	s.nextRead++
	id := s.nextRead
	s.note("read %d of shard %d at %s", id, sh, node.id)
	node.h.readIndex(&readRequest{shard: sh, done: func(err error) {
		if node.dead() {
			return
		}
		s.answers = append(s.answers, fmt.Sprintf("answer read %d from %s: %v", id, node.id, err))
		if err != nil {
			return
		}
		s.stats.confirmed++
		for _, key := range slices.Sorted(maps.Keys(before)) {
			w := before[key]
			if w.shard != sh {
				continue
			}
			if v, ok, err := node.st.Get(w.object, []byte(w.key)); err != nil || !ok || string(v) != w.value {
				s.fail("%s confirmed a read of shard %d without acknowledged write %s (found %v %q, err %v)", node.id, sh, key, ok, v, err)
			}
		}
	}})
	s.round(node)
}

// round runs node's round, as its loop does after every input, and checks
// the invariants on it.
func (s *sim) round(node *simNode) {
	if err := node.h.round(); err != nil {
		s.fail("round on %s: %v", node.id, err)
	}
	s.net.settle()
	slices.Sort(s.answers)
	for _, a := range s.answers {
		s.note("%s", a)
	}
	s.answers = s.answers[:0]
	if !node.dead() {
		s.check(node)
	}
}

// check checks node's replicas: one leader per term, applied entries the
// same as every other replica's, and every acknowledged write present
// once it serves.
func (s *sim) check(node *simNode) {
	for _, sh := range s.shards {
		g := node.h.groups[sh]
		if g == nil {
			continue
		}
		st := g.rn.BasicStatus()
		if st.RaftState == raft.StateLeader {
			key := [2]uint64{uint64(sh), st.GetTerm()}
			if prev, ok := s.leaders[key]; ok && prev != g.id {
				s.fail("shard %d has two leaders in term %d: replica %x, and %x on %s", sh, st.GetTerm(), prev, g.id, node.id)
			}
			s.leaders[key] = g.id
		}
		s.checkEntries(node, g)
		if g.serving && !node.serving[sh] {
			s.note("%s serves shard %d (term %d, applied %d)", node.id, sh, st.GetTerm(), g.applied)
			s.checkAcked(node, sh)
		}
		node.serving[sh] = g.serving
	}
}

// checkEntries compares the entries node applied since the last check
// with those other replicas applied at the same indexes. Entries already
// compacted from the log (or installed by a snapshot) are left to the
// final comparison of the data.
func (s *sim) checkEntries(node *simNode, g *group) {
	from := node.verified[g.shard] + 1
	if first, _ := g.ms.FirstIndex(); from < first {
		from = first
	}
	if from > g.applied {
		node.verified[g.shard] = max(node.verified[g.shard], g.applied)
		return
	}
	ents, err := g.ms.Entries(from, g.applied+1, 1<<62)
	if err != nil {
		s.fail("%s shard %d: read applied entries %d..%d: %v", node.id, g.shard, from, g.applied, err)
	}
	seen := s.entries[g.shard]
	if seen == nil {
		seen = map[uint64]string{}
		s.entries[g.shard] = seen
	}
	for _, e := range ents {
		got := fmt.Sprintf("term %d type %v data %x", e.GetTerm(), e.GetType(), e.GetData())
		if want, ok := seen[e.GetIndex()]; ok && want != got {
			s.fail("%s shard %d applied at index %d: %s; another replica applied %s", node.id, g.shard, e.GetIndex(), got, want)
		}
		seen[e.GetIndex()] = got
	}
	node.verified[g.shard] = g.applied
}

// checkAcked checks that node's store holds every write of shard
// acknowledged so far.
func (s *sim) checkAcked(node *simNode, sh int) {
	for _, key := range slices.Sorted(maps.Keys(s.acked)) {
		w := s.acked[key]
		if w.shard != sh {
			continue
		}
		v, ok, err := node.st.Get(w.object, []byte(w.key))
		if err != nil {
			s.fail("read %s on %s: %v", w.key, node.id, err)
		}
		if !ok || string(v) != w.value {
			s.fail("%s serves shard %d without acknowledged write %s=%s (found %v, %q)", node.id, sh, w.key, w.value, ok, v)
		}
	}
}

// heal restarts every node, heals every cut, and runs the cluster with a
// reliable network until every shard has one serving leader that every
// replica has caught up with; then one more write per shard must be
// acknowledged, and every replica must hold the same data.
func (s *sim) heal() {
	s.note("heal: restart all, no more cuts or losses")
	clear(s.cut)
	for _, node := range s.nodes {
		if node.h == nil {
			s.restart(node)
		}
	}
	s.settle("settle after healing")
	for _, sh := range s.shards {
		s.next++
		w := simWrite{id: fmt.Sprintf("k%05d", s.next), shard: sh, object: objectIn(sh), value: "final"}
		w.key = w.id
		s.proposed[w.id] = w
		// A leader handing its shard over refuses writes meanwhile (Raft
		// drops them), as it would a room's: the writer tries again.
		var res error
		for try := 0; try < simFinalTries; try++ {
			s.settle("settle before a final write")
			leader := s.leaderOf(sh)
			res = errNoAnswer
			leader.h.propose(&proposal{shard: sh, object: w.object,
				ops:  []storage.Op{{Key: []byte(w.key), Value: []byte(w.value)}},
				done: func(err error) { res = err }})
			s.round(leader)
			for i := 0; i < simHealRounds && res == errNoAnswer; i++ {
				s.reliableRound()
			}
			s.note("final write %s to shard %d on %s: %v", w.id, sh, leader.id, res)
			if !errors.Is(res, ErrNotLeader) {
				break
			}
		}
		if res != nil {
			s.fail("after healing, a write to shard %d: %v", sh, res)
		}
		s.acked[w.id] = w
	}
	s.settle("settle after the final writes")
	for _, sh := range s.shards {
		s.compare(sh)
	}
}

var errNoAnswer = fmt.Errorf("no answer")

// reliableRound ticks every running Host once, then delivers everything
// in flight, in the order it was sent.
func (s *sim) reliableRound() {
	for _, node := range s.up() {
		node.h.tick()
		s.round(node)
	}
	// What those deliveries send goes in the next round: a pair of
	// replicas may answer each other without end.
	flight := s.net.pending
	s.net.pending, s.net.fresh = nil, 0
	for _, m := range flight {
		s.deliver(m)
	}
}

// settle runs reliable rounds until every shard has one serving leader
// and all its replicas applied its commit index.
func (s *sim) settle(what string) {
	for i := 0; i < simHealRounds; i++ {
		s.step++
		// A leader that looks settled may still step down at its next
		// quorum check, when what it lost before the heal counts.
		if i > 2*simElectionTicks && s.settled() {
			return
		}
		s.reliableRound()
	}
	var b strings.Builder
	for _, sh := range s.shards {
		for _, node := range s.nodes {
			if g := node.h.groups[sh]; g != nil {
				st := g.rn.Status()
				fmt.Fprintf(&b, "\n  shard %d on %s: %v term %d commit %d applied %d serving %v lead %x voters %v",
					sh, node.id, st.RaftState, st.GetTerm(), st.GetCommit(), g.applied, g.serving, st.Lead, g.confState.GetVoters())
			}
		}
	}
	s.fail("%s: the cluster did not settle within %d rounds:%s", what, simHealRounds, b.String())
}

func (s *sim) settled() bool {
	for _, sh := range s.shards {
		leader := s.leaderOf(sh)
		if leader == nil {
			return false
		}
		lg := leader.h.groups[sh]
		commit := lg.rn.Status().GetCommit()
		if lg.applied != commit {
			return false
		}
		for _, id := range lg.confState.GetVoters() {
			node := s.node(leader.h.nodeOf(lg, id))
			if node == nil {
				return false
			}
			// Every replica follows this leader in its term: a deposed
			// leader that has not heard so yet still serves alone.
			g := node.h.groups[sh]
			if g == nil || g.id != id || g.applied != commit {
				return false
			}
			if st := g.rn.BasicStatus(); st.Lead != lg.id || st.GetTerm() != lg.term {
				return false
			}
		}
	}
	return true
}

// leaderOf is the one node serving sh, or nil when none or several do.
func (s *sim) leaderOf(sh int) *simNode {
	var leader *simNode
	for _, node := range s.nodes {
		if node.h == nil {
			continue
		}
		if g := node.h.groups[sh]; g != nil && g.serving {
			if leader != nil {
				return nil
			}
			leader = node
		}
	}
	return leader
}

// compare checks every replica of sh against its leader, byte for byte,
// and the leader's data against the writes proposed and acknowledged.
func (s *sim) compare(sh int) {
	leader := s.leaderOf(sh)
	want := s.shardData(leader, sh)
	io.WriteString(s.trace, fmt.Sprintf("shard %d: %x\n", sh, fnvOf(want)))
	lg := leader.h.groups[sh]
	for _, id := range lg.confState.GetVoters() {
		node := s.node(leader.h.nodeOf(lg, id))
		if got := s.shardData(node, sh); !slices.EqualFunc(got, want, func(a, b [2][]byte) bool {
			return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1])
		}) {
			s.fail("shard %d: %s holds %d keys, its leader %s %d, and they differ", sh, node.id, len(got), leader.id, len(want))
		}
	}
	for _, w := range s.acked {
		if w.shard != sh {
			continue
		}
		if v, ok, err := leader.st.Get(w.object, []byte(w.key)); err != nil || !ok || string(v) != w.value {
			s.fail("shard %d lost acknowledged write %s: %s=%s (found %v %q, err %v)", sh, w.id, w.key, w.value, ok, v, err)
		}
	}
	kvs, err := leader.st.List(objectIn(sh), nil, nil, 1<<20, false)
	if err != nil {
		s.fail("list shard %d on %s: %v", sh, leader.id, err)
	}
	for _, kv := range kvs {
		if w, ok := s.proposed[string(kv.Key)]; !ok || w.value != string(kv.Value) {
			s.fail("shard %d holds %s=%s, which nobody proposed", sh, kv.Key, kv.Value)
		}
	}
	// The room: each seq holds a write proposed for it, and not one
	// refused; seqs run 1, 2, 3... with no gap, up to the version.
	kvs, err = leader.st.List(roomIn(sh), nil, nil, 1<<20, false)
	if err != nil {
		s.fail("list shard %d's room on %s: %v", sh, leader.id, err)
	}
	var n uint64
	for _, kv := range kvs {
		if storage.ReservedKey(kv.Key) {
			continue
		}
		n++
		w, ok := s.proposed[string(kv.Value)]
		switch {
		case string(kv.Key) != simSeqKey(n):
			s.fail("shard %d's room holds %s where seq %d should be", sh, kv.Key, n)
		case !ok || w.seq != n:
			s.fail("shard %d's room holds %s=%s, which nobody proposed for that seq", sh, kv.Key, kv.Value)
		case s.refused[w.id]:
			s.fail("shard %d's room holds %s=%s, a write answered %v", sh, kv.Key, kv.Value, ErrConflict)
		}
	}
	if last, _, err := leader.st.NewApplyBatch(0).Version(roomIn(sh)); err != nil || last != n {
		s.fail("shard %d's room holds %d seqs, its version is %d (err %v)", sh, n, last, err)
	}
}

// shardData is every key and value of sh in node's store.
func (s *sim) shardData(node *simNode, sh int) [][2][]byte {
	r, err := node.st.ReadShard(sh)
	if err != nil {
		s.fail("read shard %d on %s: %v", sh, node.id, err)
	}
	defer r.Close()
	var out [][2][]byte
	if err := r.Scan(func(k, v []byte) error {
		out = append(out, [2][]byte{slices.Clone(k), slices.Clone(v)})
		return nil
	}); err != nil {
		s.fail("scan shard %d on %s: %v", sh, node.id, err)
	}
	return out
}

// roomIn is the object of shard sh that versioned writes go to.
func roomIn(sh int) string {
	for i := 0; ; i++ {
		if o := "room-" + strconv.Itoa(i); cluster.Shard(o) == sh {
			return o
		}
	}
}

// simSeqKey is the key of a room's seq n, in order.
func simSeqKey(n uint64) string { return fmt.Sprintf("s%06d", n) }

func fnvOf(kvs [][2][]byte) uint64 {
	h := fnv.New64a()
	for _, kv := range kvs {
		h.Write(kv[0])
		h.Write(kv[1])
	}
	return h.Sum64()
}
