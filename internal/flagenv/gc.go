package flagenv

import (
	"flag"
	"os"
	"runtime/debug"
	"strconv"
)

// DefaultGCPercent is the collector target (GOGC) of nodes and routers:
// Go's own. At 200 a hot room's p99 at 10,000 msgs/s on two saturated
// cores stayed within 100 ms in 4 of 5 windows instead of 1 of 4, but
// every idle session cost its node and router about 30 % more memory,
// and a cluster of many quiet rooms, the common case, gained nothing
// (docs/operations.md). An operator whose nodes run hot rooms on few
// cores can raise it.
const DefaultGCPercent = 100

// GCFlag adds --gc-percent, the Go collector's target (GOGC) for this
// process, and returns a function that applies it once the flags are
// parsed. The GOGC variable, when set, is its default instead of
// DefaultGCPercent, so an operator's usual knob keeps working.
func GCFlag(fs *flag.FlagSet) (apply func()) {
	def := DefaultGCPercent
	if v, err := strconv.Atoi(os.Getenv("GOGC")); err == nil {
		def = v
	}
	pct := fs.Int("gc-percent", def, "Go garbage collector target (GOGC): the heap may grow this many percent past what is live before a collection; more trades memory for CPU and latency; negative: off")
	return func() { debug.SetGCPercent(*pct) }
}
