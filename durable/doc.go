// Package durable is a Durable Objects runtime in Go: a class implements
// Object (and any of the event interfaces Fetcher, Caller, Alarmer), each
// object instance is named by an ID, and an Actor runs one instance on one
// goroutine against replicated storage.
//
// The package is the object API and the single-object runtime only. It
// reads committed data through a Reader (a *storage.Store is one) and hands
// each event's writes, as one atomic batch, to a Committer (objectnode's
// Raft committer has the same method). Which node runs which object, and
// how requests reach it, is the cluster's business, not this package's.
//
// # Gates
//
// An actor runs its events strictly one after another, and an event's
// batch is committed before the next event starts:
//
//   - Input gate: nothing else of the object runs while an event runs or
//     while its writes are being committed. Events of other objects run on
//     their own actors, independently.
//   - Output gate: what an event emits (its HTTP response, its Call result,
//     the messages it queued with State.Send) is released only once its
//     writes are committed. If the commit fails, the outputs are dropped,
//     the caller gets an error that wraps ErrNotCommitted, the object's
//     storage is reloaded from the committed store, and the class instance
//     is replaced by a fresh one (Start's constructor, then Load), since
//     its fields may hold what was not committed.
//
// The gates are strictly serial: there is no group commit across events,
// so an object commits at most one batch per commit round trip. That
// keeps reads simple (the committed store is all there is below an
// event's writes) and makes a failed commit touch one event only. A class
// that needs more writes per second batches them itself (an alarm that
// flushes a buffer), as chat rooms do in objectnode.
//
// Every event is all or nothing: one that returns an error (or panics)
// commits none of its writes and emits nothing but the error (Cloudflare
// commits a throwing event's writes; an error return is the Go way to
// refuse). Storage.Sync is the one way to commit part of an event early.
//
// # Storage layout
//
// An object's keys live in the store under ID.StorageObject(); within it:
//
//	'u' <user key>   the class's own keys (so no user key starts with 0x00)
//	'm' 'v'          the object's version: 8 bytes, big endian
//	'm' 'a'          the alarm: Unix nanoseconds, 8 bytes, big endian
//
// Every batch is versioned (storage.Guards.Versioned): a stale actor of the
// object, one that missed a commit, is refused instead of overwriting it.
package durable
