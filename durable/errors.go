package durable

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed fails events sent to an actor that is shutting down or has
	// stopped; they were not run.
	ErrClosed = errors.New("durable: object closed")
	// ErrNotCommitted wraps the Committer's error for an event whose writes
	// were not committed. Its outputs were dropped. The commit may still
	// land later (a Raft proposal can commit under a new leader), so a
	// caller that retries should make the retry idempotent.
	ErrNotCommitted = errors.New("durable: writes not committed")
	// ErrCommitAbandoned fails the event whose commit was still in flight
	// when the actor was closed and did not finish within Config.CommitWait.
	// Whether it committed is unknown; its outputs were dropped.
	ErrCommitAbandoned = errors.New("durable: commit abandoned at shutdown, outcome unknown")
	// ErrNoEvent is returned by storage used outside an event (kept past
	// the handler's return, or used by another goroutine).
	ErrNoEvent = errors.New("durable: storage used outside an event")
	// ErrTxnOpen refuses a Storage or Txn operation while a transaction
	// started from it is still open: inside the transaction use its Txn.
	ErrTxnOpen = errors.New("durable: a transaction is open; use its Txn")
	// ErrNoHandler fails an event the object's class does not handle (a
	// Fetch to an object that is not a Fetcher, for example).
	ErrNoHandler = errors.New("durable: class has no handler for this event")
	// ErrKeyTooLarge, ErrValueTooLarge, ErrBatchTooLarge, ErrListTooLarge
	// and ErrTooManyKeys are the limits of limits.go. An operation refused for a limit changes
	// nothing: the event's earlier writes stand.
	ErrKeyTooLarge   = errors.New("durable: key too large")
	ErrValueTooLarge = errors.New("durable: value too large")
	ErrBatchTooLarge = errors.New("durable: event writes too much")
	ErrListTooLarge  = errors.New("durable: list matches too many keys")
	ErrTooManyKeys   = errors.New("durable: too many keys in one call")
)

// LimitError says which limit refused an operation and by how much. It
// matches (errors.Is) its Err, one of the Err...TooLarge values.
type LimitError struct {
	Err   error  // ErrKeyTooLarge, ErrValueTooLarge, ErrBatchTooLarge, ErrListTooLarge or ErrTooManyKeys
	Op    string // "put", "delete", "list", ...
	Key   string // the key (cut to 64 bytes), if the operation has one
	Size  int    // the size that was asked for
	Limit int    // the limit it exceeds
}

func (e *LimitError) Error() string {
	key := e.Key
	if len(key) > 64 {
		key = key[:64] + "..."
	}
	if key != "" {
		return fmt.Sprintf("%v: %s %q: %d > %d", e.Err, e.Op, key, e.Size, e.Limit)
	}
	return fmt.Sprintf("%v: %s: %d > %d", e.Err, e.Op, e.Size, e.Limit)
}

func (e *LimitError) Unwrap() error { return e.Err }

// PanicError is the error of an event whose handler panicked. The actor
// survives it: the event's writes and outputs are dropped like those of a
// handler that returned an error.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("durable: handler panicked: %v", e.Value) }
