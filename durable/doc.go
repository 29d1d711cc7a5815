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
// An actor runs its events one after another, on one goroutine, so a
// class takes no locks. Its writes are committed behind it, as
// Cloudflare's are:
//
//   - Input gate: nothing else of the object runs while an event runs.
//     Reads are local and synchronous, so an event never waits on its
//     storage with the object open to others. When an event calls another
//     object (State.Call, State.Fetch), nothing else of this object runs
//     while it waits either: a call back into it fails (ErrCallCycle).
//   - Output gate: what an event emits (its HTTP response, its Call
//     result, its socket frames, the messages it queued with State.Send,
//     and its errors) is released only once its writes and every earlier
//     event's writes are committed. A call out to another object leaves
//     only once the earlier events' writes are committed.
//   - Write coalescing: while one batch is being committed, the next
//     events run and read its writes; their writes are gathered into the
//     next batch, handed over when the one in flight is committed. A busy
//     object commits many events per commit round trip, a quiet one each
//     event at once. If a commit fails, every event that ran on its writes
//     fails with it: their outputs are dropped, their callers get an error
//     that wraps ErrNotCommitted, the object's storage is reloaded from the
//     committed store, and the class instance is replaced by a fresh one
//     (Start's constructor, then Load), since its fields may hold what was
//     not committed.
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
//	'm' 'v'          the object's version, as written until the store's own
//	                 record (storage.VersionKey) was read instead; kept on
//	                 older objects, written no more
//	'm' 'a'          the alarm: Unix nanoseconds, 8 bytes, big endian
//	'm' 's' <socket> an accepted WebSocket's tags and attachment (JSON)
//	'm' 'n' <socket> the number of its last message taken: 8 bytes, big
//	                 endian (a key of its own: it changes every message)
//	'm' 'r'          the automatic ping/pong reply, when one is set
//
// Every batch is versioned (storage.Guards.Versioned): a stale actor of the
// object, one that missed a commit, is refused instead of overwriting it.
package durable
