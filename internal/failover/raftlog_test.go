package failover

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hellochat/internal/launch"
	"hellochat/internal/logging"
)

// fakeLog writes a node log the way a run leaves it: a launch marker per
// process, then the lines a node's logger (internal/logging, the format
// given) writes for raft's messages (shard/logger.go: raft's info is
// logged at debug with the shard).
type fakeLog struct {
	t       *testing.T
	f       *os.File
	name    string
	format  string
	log     *slog.Logger
	process int
}

func newFakeLog(t *testing.T, dir, name, format string) *fakeLog {
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fakeLog{t: t, f: f, name: name, format: format}
}

// start begins a process: the marker, then a logger of its own.
func (l *fakeLog) start() *fakeLog {
	l.process++
	fmt.Fprintf(l.f, "%s%s (process %d of this log) at 2026-12-04T10:00:00Z\n", launch.StartMarker, l.name, l.process)
	log, _, err := logging.New(l.name, l.f, slog.LevelDebug, l.format)
	if err != nil {
		l.t.Fatal(err)
	}
	l.log = log
	l.log.Info("object node started", "id", l.name)
	return l
}

// leads logs raft's "became leader" for the replica raftID of shard.
func (l *fakeLog) leads(shard int, raftID uint64, term uint64) *fakeLog {
	l.log.With("shard", shard).Debug(fmt.Sprintf("%x became follower at term %d", raftID, term-1))
	l.log.With("shard", shard).Debug(fmt.Sprintf("%x became leader at term %d", raftID, term))
	return l
}

func (l *fakeLog) raw(line string) *fakeLog {
	fmt.Fprintln(l.f, line)
	return l
}

func scan(t *testing.T, dir string) *Checks {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	ch := &Checks{}
	ch.ScanLogFiles(paths)
	return ch
}

// A run where leadership moved as Raft allows: a node killed and restarted
// leads again in a later term, a wiped node's new incarnation (new raft
// id) too, and one log is JSON.
func TestNodeLogsWithOneLeaderPerShardAndTermPass(t *testing.T) {
	dir := t.TempDir()
	n1 := newFakeLog(t, dir, "node1", logging.FormatText).start().leads(3, 0xa1, 2).leads(7, 0xa1, 2)
	n2 := newFakeLog(t, dir, "node2", logging.FormatText).start().leads(4, 0xb1, 2)
	newFakeLog(t, dir, "node3", logging.FormatJSON).start().leads(3, 0xc1, 5).leads(9, 0xc1, 2)
	n1.start().leads(3, 0xa1, 3) // kill -9 and restart: same raft id, later term
	n2.start().leads(4, 0xb2, 3) // wiped: a new replica id
	n2.log.Error("commit failed", "room", "r1", "shard", 4, "err", "not the leader")

	ch := scan(t, dir)
	var out strings.Builder
	ch.Report(&out)
	if ch.Failed() || ch.Violations() != 0 {
		t.Fatalf("clean logs failed the check:\n%s", out.String())
	}
	r := ch.res.raftLogs
	if r.logs != 3 || r.processes != 5 || r.elections != 7 {
		t.Errorf("read %d logs, %d processes, %d elections; want 3, 5, 7", r.logs, r.processes, r.elections)
	}
	if !strings.Contains(out.String(), "node logs: 3 logs of 5 processes, 7 times") {
		t.Errorf("report lacks the node log counts:\n%s", out.String())
	}
}

// Two processes leading one shard in one term: a wiped node's new
// incarnation and its old one, and two nodes (one logging JSON).
func TestTwoLeadersOfAShardInATermFail(t *testing.T) {
	dir := t.TempDir()
	n2 := newFakeLog(t, dir, "node2", logging.FormatText).start().leads(5, 0xb1, 7)
	n2.start().leads(5, 0xb2, 7)
	newFakeLog(t, dir, "node1", logging.FormatText).start().leads(9, 0xa1, 4).leads(9, 0xa1, 6)
	newFakeLog(t, dir, "node3", logging.FormatJSON).start().leads(9, 0xc1, 4).leads(9, 0xc1, 5)

	ch := scan(t, dir)
	if !ch.Failed() {
		t.Fatal("two leaders in one shard and term passed the check")
	}
	if got := ch.Violations(); got != 2 {
		t.Errorf("violations %d, want 2", got)
	}
	sum := ch.Summary()
	if !strings.Contains(sum, "shards and terms with two leaders (node logs): 2") {
		t.Errorf("summary %q does not name the check", sum)
	}
	var out strings.Builder
	ch.Report(&out)
	for _, want := range []string{
		"shard 5 term 7: node2 process 1 (raft id b1, ", "and node2 process 2 (raft id b2, ",
		"shard 9 term 4: node1 process 1 (raft id a1, ", "and node3 process 1 (raft id c1, ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// A raft panic (logged at error by shard/logger.go, then Go's panic on
// stderr) and a runtime fatal fail the check; so does a log with no
// election at all, which means the nodes did not log at debug level.
func TestRaftPanicsAndSilentLogsFail(t *testing.T) {
	dir := t.TempDir()
	n1 := newFakeLog(t, dir, "node1", logging.FormatText).start().leads(1, 0xa1, 2)
	n1.log.With("shard", 12).Error("tocommit(40) is out of range [lastIndex(31)]. Was the raft log corrupted, truncated, or lost?")
	n1.raw("panic: tocommit(40) is out of range [lastIndex(31)]. Was the raft log corrupted, truncated, or lost?").raw("").raw("goroutine 88 [running]:")
	n2 := newFakeLog(t, dir, "node2", logging.FormatJSON).start().leads(1, 0xb1, 3)
	n2.raw("fatal error: concurrent map writes")
	n3 := newFakeLog(t, dir, "node3", logging.FormatJSON).start()
	n3.log.With("shard", 4).Debug("a2 [term 3] ignored a MsgApp message with lower term")
	n3.log.With("shard", 4).Error("entry 7 conflict with committed entry [committed(9)]")

	ch := scan(t, dir)
	r := ch.res.raftLogs
	if !ch.Failed() || r.fatal != 4 {
		t.Fatalf("fatal lines found %d, want 4 (failed %v): %q", r.fatal, ch.Failed(), r.fatalEx)
	}

	silent := t.TempDir()
	newFakeLog(t, silent, "node1", logging.FormatText).start()
	ch = scan(t, silent)
	if !ch.Failed() || !strings.Contains(ch.Summary(), "--debug") {
		t.Fatalf("logs without an election passed or did not say why: %q", ch.Summary())
	}
}

func TestLogfmtReadsQuotedValues(t *testing.T) {
	got := logfmt(`time=2026-12-04T17:06:43.807Z level=DEBUG msg="a \"quoted\" b=1" shard=50 err="x y"`)
	want := map[string]string{"time": "2026-12-04T17:06:43.807Z", "level": "DEBUG", "msg": `a "quoted" b=1`, "shard": "50", "err": "x y"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logfmt = %v, want %v", got, want)
	}
	if got := logfmt(`msg="unterminated shard=1`); len(got) != 0 {
		t.Errorf("a broken quote gave %v", got)
	}
}

// A line past maxLogLine is cut, not an error, and the lines after it are
// still read, the last one without its newline too (a process killed
// mid-write).
func TestOverlongAndUnterminatedLinesAreRead(t *testing.T) {
	dir := t.TempDir()
	l := newFakeLog(t, dir, "node1", logging.FormatText).start()
	l.raw("node1 | level=INFO msg=" + strings.Repeat("x", 3*maxLogLine))
	l.leads(2, 0xa1, 3)
	fmt.Fprint(l.f, `node1 | time=2026-12-04T10:00:01Z level=DEBUG msg="a1 became leader at term 4" shard=2`)

	ch := scan(t, dir)
	if r := ch.res.raftLogs; ch.Failed() || r.elections != 2 {
		t.Fatalf("elections %d, want 2; %s", r.elections, ch.Summary())
	}
}
