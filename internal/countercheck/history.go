package countercheck

import "time"

// Kind is what an operation did.
type Kind int

const (
	Increment Kind = iota
	Read
)

func (k Kind) String() string {
	if k == Read {
		return "read"
	}
	return "increment"
}

// Op is one logical operation on a counter as a client saw it: an
// increment with one Idempotency-Key, however many attempts it took, or
// one read.
type Op struct {
	Counter string
	Client  int // which of the counter's clients ran it
	Kind    Kind
	Key     string    // the increment's Idempotency-Key
	Call    time.Time // the first attempt was sent
	// Return is when the answer that gave Value arrived; zero when no
	// attempt got a value (the operation is ambiguous: an increment may
	// have been counted, or may be counted later).
	Return   time.Time
	Value    int64
	Attempts int
}

// Answered reports whether the operation got a value.
func (o Op) Answered() bool { return !o.Return.IsZero() }

// History is what a load recorded: every operation, and each counter's
// value read once the load had stopped and every retry was done.
type History struct {
	Ops   []Op
	Final map[string]int64 // by counter; a counter missing here could not be read
}
