package flagenv

import (
	"flag"
	"os"
	"runtime/debug"
	"strconv"
)

// GCFlag adds --gc-percent, the Go collector's target (GOGC) for this
// process, and returns a function that applies it once the flags are
// parsed. def is the process's own default; the GOGC variable, when set,
// is the default instead, so an operator's usual knob keeps working.
//
// A node allocates for every message it stores and forwards, and at the
// default of 100 a hot room's leader collected several times a second:
// its room's goroutine, which every message of the room waits on, then
// paid for marking in its own allocations. docs/profiles.md has the
// figures behind each process's default.
func GCFlag(fs *flag.FlagSet, def int) (apply func()) {
	if v, err := strconv.Atoi(os.Getenv("GOGC")); err == nil {
		def = v
	}
	pct := fs.Int("gc-percent", def, "Go garbage collector target (GOGC): the heap may grow this many percent past what is live before a collection; more trades memory for CPU and latency; negative: off")
	return func() { debug.SetGCPercent(*pct) }
}
