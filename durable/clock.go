package durable

import "time"

// Clock is the time an actor schedules alarms by. Tests use a fake one
// that they move by hand.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f, on a goroutine of its own, once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc; Stop cancels it, reporting whether it
// had not fired yet.
type Timer interface {
	Stop() bool
}

// SystemClock is the machine's clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
