package failover

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"hellochat/internal/launch"
)

// moved is what the nodes' logs say a step moved.
type moved struct {
	bytes     int64  // sum of bytes= over "sent snapshot" lines
	snapshots int    // how many snapshots were sent
	plan      string // moves= of the first "joining cluster" or "ring changed" line
}

var logField = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// logFields parses one logfmt line ("node1 | time=... msg=\"x\" k=v") into
// its fields, quotes removed.
func logFields(line string) map[string]string {
	f := map[string]string{}
	for _, m := range logField.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			}
		}
		f[m[1]] = v
	}
	return f
}

// scanMoves reads what every node logged since marks.
func scanMoves(c *launch.Cluster, marks map[*launch.Proc]int64) moved {
	var m moved
	for _, log := range c.LogsSince(marks) {
		for _, line := range strings.Split(log, "\n") {
			switch {
			case strings.Contains(line, `msg="sent snapshot"`):
				if n, err := strconv.ParseInt(logFields(line)["bytes"], 10, 64); err == nil {
					m.bytes += n
					m.snapshots++
				}
			case m.plan == "" && (strings.Contains(line, `msg="joining cluster"`) || strings.Contains(line, `msg="ring changed"`)):
				m.plan = logFields(line)["moves"]
			}
		}
	}
	return m
}

// size formats a byte count.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
