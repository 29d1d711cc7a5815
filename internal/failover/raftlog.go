package failover

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"hellochat/internal/launch"
)

// Raft's own account of the run, read from the node logs: the one thing a
// chat client cannot see is two processes leading one shard in one term,
// which Raft forbids (Election Safety) and which would let both commit
// different entries at the same index. A check of histories may miss it
// when the loser's entries were overwritten before anyone read them; the
// logs keep every "became leader" line etcd raft writes, at debug level
// (shard/logger.go), so the runs that check them start nodes with --debug.

// LogFlags are the node flags a run whose logs ScanLogs checks starts its
// nodes with: raft's elections are logged at debug level only.
var LogFlags = []string{"--debug"}

// maxLogLine bounds one line read from a node log; the rest of a longer
// line is skipped (no line this check looks for comes near it).
const maxLogLine = 64 << 10

// leaderRe is etcd raft's "%x became leader at term %d".
var leaderRe = regexp.MustCompile(`^([0-9a-f]+) became leader at term ([0-9]+)$`)

// raftFatalRe matches etcd raft's panics about its log (tocommit(5) is out
// of range [lastIndex(3)], entry 7 conflict with committed entry, ...),
// whatever level they were logged at.
var raftFatalRe = regexp.MustCompile(`is out of range|conflict with committed entry|is unavailable from storage|raft log corrupted|truncated, or lost`)

// termLeader is one process becoming leader of a shard.
type termLeader struct {
	node    string // the log's process name
	process int    // which process of that log (its StartMarker count; 0 before any marker)
	raftID  string // hex, as raft logs it
	where   string // file:line
}

func (l termLeader) String() string {
	return fmt.Sprintf("%s process %d (raft id %s, %s)", l.node, l.process, l.raftID, l.where)
}

// raftLogCheck is what the node logs say about Raft's safety.
type raftLogCheck struct {
	logs, processes int // node logs read, processes they hold
	elections       int // "became leader" lines
	// twoLeaders counts the shards and terms led by two processes.
	twoLeaders   int
	twoLeadersEx []string
	fatal        int // Go panics, runtime fatals, raft's panics and errors
	fatalEx      []string
	err          error // a log could not be read, or held no election at all
}

func (r raftLogCheck) failed() bool { return r.twoLeaders > 0 || r.fatal > 0 || r.err != nil }

// ScanLogs adds the check of every node log of the cluster (all its
// processes, retired nodes and restarted or wiped incarnations included):
// no two processes became leader of the same shard in the same term, and
// no node panicked or logged a Raft error.
func (ch *Checks) ScanLogs(c *launch.Cluster) {
	ch.ScanLogFiles(c.EveryLog())
}

// ScanLogFiles is ScanLogs on the node logs at paths, text or JSON, each
// named for its node (node1.log).
func (ch *Checks) ScanLogFiles(paths []string) { ch.res.raftLogs = checkRaftLogs(paths) }

func checkRaftLogs(paths []string) raftLogCheck {
	var r raftLogCheck
	leaders := map[[2]uint64]termLeader{} // shard, term
	for _, path := range paths {
		if err := scanRaftLog(path, &r, leaders); err != nil {
			r.err = errors.Join(r.err, err)
		}
	}
	if r.err == nil && r.elections == 0 {
		r.err = fmt.Errorf("no \"became leader\" line in %d node logs: were the nodes started with --debug?", r.logs)
	}
	return r
}

func scanRaftLog(path string, r *raftLogCheck, leaders map[[2]uint64]termLeader) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read node log: %w", err)
	}
	defer f.Close()
	r.logs++
	name := strings.TrimSuffix(filepath.Base(path), ".log")
	process := 0
	defer func() {
		r.processes += max(process, 1) // a log written without markers holds one process
	}()
	br := bufio.NewReaderSize(f, maxLogLine)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read node log %s: %w", path, err)
		}
		where := fmt.Sprintf("%s:%d", path, n)
		if strings.HasPrefix(line, launch.StartMarker) {
			process++
			continue
		}
		rec := parseLogLine(line)
		if rec.fatal {
			r.fatal++
			r.fatalEx = example(r.fatalEx, fmt.Sprintf("%s: %s", where, clip(line)))
			continue
		}
		m := leaderRe.FindStringSubmatch(rec.msg)
		if m == nil || rec.shard < 0 {
			continue
		}
		term, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			continue // a term past uint64 is no line raft wrote
		}
		r.elections++
		l := termLeader{node: name, process: process, raftID: m[1], where: where}
		key := [2]uint64{uint64(rec.shard), term}
		first, seen := leaders[key]
		if !seen {
			leaders[key] = l
			continue
		}
		if first.node != l.node || first.process != l.process {
			r.twoLeaders++
			r.twoLeadersEx = example(r.twoLeadersEx, fmt.Sprintf("shard %d term %d: %v and %v", rec.shard, term, first, l))
		}
	}
}

// readLine returns the next line without its newline, cut at maxLogLine.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	line := strings.TrimRight(string(b), "\r\n")
	for err == bufio.ErrBufferFull {
		_, err = br.ReadSlice('\n') // skip the rest of an overlong line
	}
	if err == io.EOF && line != "" {
		return line, nil // a last line without its newline (a process killed mid-write)
	}
	return line, err
}

// logRecord is what the check needs of one log line.
type logRecord struct {
	msg   string
	shard int  // -1 when the line names none
	fatal bool // a panic, a runtime fatal, or raft's error or panic
}

// parseLogLine reads a line of slog's text handler (after the "node1 | "
// prefix of internal/logging) or JSON handler, or a raw line such as a Go
// panic's.
func parseLogLine(line string) logRecord {
	rec := logRecord{shard: -1}
	body := line
	if i := strings.Index(body, " | "); i >= 0 && !strings.ContainsAny(body[:i], " ={\"") {
		body = body[i+3:]
	}
	if strings.HasPrefix(body, "panic: ") || strings.HasPrefix(body, "fatal error: ") {
		rec.fatal = true
		return rec
	}
	var level string
	var hasErr bool
	if strings.HasPrefix(body, "{") {
		var obj map[string]any
		if json.Unmarshal([]byte(body), &obj) != nil {
			return rec
		}
		rec.msg, _ = obj["msg"].(string)
		level, _ = obj["level"].(string)
		if s, ok := obj["shard"].(float64); ok && s >= 0 && s == float64(int(s)) {
			rec.shard = int(s)
		}
		_, hasErr = obj["err"]
	} else {
		attrs := logfmt(body)
		rec.msg, level = attrs["msg"], attrs["level"]
		if s, ok := attrs["shard"]; ok {
			if v, err := strconv.Atoi(s); err == nil && v >= 0 {
				rec.shard = v
			}
		}
		_, hasErr = attrs["err"]
	}
	// Raft's logger (shard/logger.go) logs its errors and, before it
	// panics, its panics at error level with the shard and no err; the
	// node's own errors always carry an err.
	raftError := level == "ERROR" && rec.shard >= 0 && !hasErr
	rec.fatal = raftError || raftFatalRe.MatchString(rec.msg)
	return rec
}

// logfmt splits slog's text form, key=value or key="quoted value" pairs
// separated by spaces; it stops at the first pair it cannot read.
func logfmt(s string) map[string]string {
	attrs := map[string]string{}
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return attrs
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return attrs
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else if sp := strings.IndexByte(s, ' '); sp >= 0 {
			val, s = s[:sp], s[sp:]
		} else {
			val, s = s, ""
		}
		attrs[key] = val
	}
	return attrs
}

// clip shortens a line for an example.
func clip(line string) string {
	const most = 300
	if len(line) > most {
		return line[:most] + "..."
	}
	return line
}

// example appends e to ex unless ex holds maxExamples already.
func example(ex []string, e string) []string {
	if len(ex) >= maxExamples {
		return ex
	}
	return append(ex, e)
}
