package durable

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrObjectReset wraps the error of a BlockConcurrencyWhile whose
// function failed: the instance is replaced once the event ends.
var ErrObjectReset = errors.New("durable: object reset")

// BlockConcurrencyWhile runs fn, with no other event of the object
// running meanwhile, as Cloudflare's blockConcurrencyWhile does. Here every
// event already runs alone, so what it adds is the reset: if fn fails (an
// error or a panic), the instance is dropped when the event ends, its
// in-memory state with it, and a new one is made and loaded (Load) from
// what is committed, as after a failed commit (once the earlier events'
// batches are). The error, wrapping ErrObjectReset, is the event's to
// return, and its writes then go too; an event that swallows it keeps its
// writes, fn's included, and the instance is reset all the same.
// Use it where a class (re)builds in-memory state it cannot go on
// without: a half-built cache must not serve the next event.
func (s *State) BlockConcurrencyWhile(fn func() error) error {
	if s.over {
		return ErrNoEvent
	}
	err := protectFunc(fn)
	if err == nil {
		return nil
	}
	s.actor.reset = true
	return fmt.Errorf("%w: %w", ErrObjectReset, err)
}

// protectFunc runs fn, turning a panic into a PanicError.
func protectFunc(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn()
}
