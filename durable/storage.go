package durable

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"hellochat/storage"
)

// Reader reads an object's committed keys. *storage.Store is one. Get's
// value is the caller's; Scan's key and value are only valid during fn.
type Reader interface {
	Get(object string, key []byte) (value []byte, found bool, err error)
	Scan(object string, start, end []byte, reverse bool, fn func(key, value []byte) bool) error
}

// Storage is an object's storage as its class sees it during an event:
// reads see the event's own writes over what is committed, and the
// event's writes are committed together, as one atomic batch, when the
// event returns (or at Sync). Keys are strings of up to MaxKeySize bytes
// (any bytes); values are up to MaxValueSize bytes.
//
// A Storage may be used only during an event, on the event's goroutine.
type Storage struct {
	base   committed
	ev     *layer // the event's writes; nil outside an event
	txOpen bool   // a Transaction started here is running
	// broken is a failed Sync's error: the event's writes so far are lost,
	// so the event can only fail.
	broken error
	alarm  alarmState
	// sockets holds the event's changes to its sockets' records (nil: the
	// socket was closed); websocket.go.
	sockets map[string]*socketRecord
	// auto is the event's change to the auto-response (nil: none).
	auto *autoResponse
	// held caches the socket records (websocket.go); nil: not read yet.
	held *socketCache
	sync func() error // commits the event's writes so far (the actor's)
}

// alarmState is the committed alarm and the event's change to it.
type alarmState struct {
	at      time.Time
	set     bool
	pending *alarmChange // nil: the event leaves the alarm alone
}

type alarmChange struct {
	at  time.Time
	set bool
}

func (s *Storage) usable() error {
	switch {
	case s.ev == nil:
		return ErrNoEvent
	case s.broken != nil:
		return s.broken
	case s.txOpen:
		return ErrTxnOpen
	}
	return nil
}

// Get returns the value of key; found is false when it has none.
func (s *Storage) Get(key string) (value []byte, found bool, err error) {
	if err := s.usable(); err != nil {
		return nil, false, err
	}
	return get(s.ev, key)
}

// Put sets key to value (which it copies).
func (s *Storage) Put(key string, value []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	return put(s.ev, key, value)
}

// Delete deletes key; existed says whether it had a value.
func (s *Storage) Delete(key string) (existed bool, err error) {
	if err := s.usable(); err != nil {
		return false, err
	}
	return del(s.ev, key)
}

// Drop deletes key like Delete, without saying whether it had a value:
// it reads nothing. Deleting a key written long ago with Delete reads it
// from the store first; a class that deletes old keys on every event (the
// chat's dedupe window, two per message) spent a third of a busy
// leader's CPU on those reads.
func (s *Storage) Drop(key string) error {
	if err := s.usable(); err != nil {
		return err
	}
	return drop(s.ev, key)
}

// List returns the pairs the options select, in key order (or reversed).
func (s *Storage) List(opts ListOptions) ([]KV, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	return list(s.ev, opts)
}

// DeleteAll deletes every key of the object and its alarm, as
// Cloudflare's deleteAll does since its 2026-02-24 compatibility date
// (before, the alarm stayed); a SetAlarm after it in the event stands.
// The deletions count against MaxBatchBytes like any other: an object
// with more data than that is cleared by deleting ranges over several
// events, and a refused DeleteAll leaves the alarm too.
func (s *Storage) DeleteAll() error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := deleteAll(s.ev); err != nil {
		return err
	}
	s.alarm.pending = &alarmChange{}
	return nil
}

// Transaction runs fn with a Txn whose writes take effect only if fn
// returns nil; an error (returned as is) discards them and nothing else.
// While fn runs, the Storage itself refuses operations (ErrTxnOpen).
// The committed writes are still the event's: they are made durable
// with the rest of it.
func (s *Storage) Transaction(fn func(tx *Txn) error) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.txOpen = true
	defer func() { s.txOpen = false }()
	return transaction(s, nil, s.ev, fn)
}

// Sync commits the event's writes so far, and releases what it emitted so
// far, before it returns. After a failed Sync the event can only fail:
// every later operation returns the same error.
func (s *Storage) Sync() error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.sync()
}

// GetAlarm returns the time of the object's alarm, counting the event's
// own SetAlarm and DeleteAlarm. During an Alarm event the alarm that is
// running is already cleared.
func (s *Storage) GetAlarm() (at time.Time, ok bool) {
	if p := s.alarm.pending; p != nil {
		return p.at, p.set
	}
	return s.alarm.at, s.alarm.set
}

// SetAlarm sets (or moves) the object's one alarm to at, committed with
// the event's other writes. A time in the past fires at once.
func (s *Storage) SetAlarm(at time.Time) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.alarm.pending = &alarmChange{at: at, set: true}
	return nil
}

// DeleteAlarm cancels the object's alarm, with the event's other writes.
func (s *Storage) DeleteAlarm() error {
	if err := s.usable(); err != nil {
		return err
	}
	s.alarm.pending = &alarmChange{}
	return nil
}

// begin starts an event: a fresh layer of writes over the store. An alarm
// run starts with its alarm cleared, so that its success clears it in
// the same batch as its writes.
func (s *Storage) begin(alarmRun bool) {
	s.ev = newLayer(s.base, nil)
	s.broken = nil
	s.alarm.pending = nil
	s.sockets, s.auto = nil, nil
	if alarmRun {
		s.alarm.pending = &alarmChange{}
	}
}

// discard drops the event's writes not yet committed (its alarm, socket
// and auto-response changes too), as if it had just begun.
func (s *Storage) discard() {
	s.ev = newLayer(s.base, nil)
	s.sockets, s.auto = nil, nil
	s.txOpen = false
	s.alarm.pending = nil
}

// end forgets the event's uncommitted writes.
func (s *Storage) end() {
	s.ev = nil
	s.alarm.pending = nil
	s.sockets, s.auto = nil, nil
	s.txOpen = false
}

// pendingOps is the batch the event's writes so far make, in key order.
func (s *Storage) pendingOps() []storage.Op {
	ops := make([]storage.Op, 0, len(s.ev.writes)+2)
	for k, w := range s.ev.writes {
		ops = append(ops, storage.Op{Key: userKey(k), Value: w.value, Delete: w.del})
	}
	slices.SortFunc(ops, func(a, b storage.Op) int { return bytes.Compare(a.Key, b.Key) })
	if p := s.alarm.pending; p != nil && (p.set != s.alarm.set || !p.at.Equal(s.alarm.at)) {
		if p.set {
			ops = append(ops, storage.Op{Key: alarmKey, Value: encodeUint64(uint64(p.at.UnixNano()))})
		} else {
			ops = append(ops, storage.Op{Key: alarmKey, Delete: true})
		}
	}
	return append(append(ops, s.socketOps()...), s.autoResponseOp()...)
}

// committedNow records that the event's writes so far are committed: the
// store holds them now, and the event goes on with an empty layer.
func (s *Storage) committedNow() {
	s.ev = newLayer(s.base, nil)
	s.stageSockets()
	s.sockets, s.auto = nil, nil
	if p := s.alarm.pending; p != nil {
		s.alarm.at, s.alarm.set = p.at, p.set
		s.alarm.pending = nil
	}
}

// loadMeta reads the object's version and alarm from the store.
func loadMeta(r Reader, object string) (version uint64, alarm alarmState, err error) {
	v, found, err := r.Get(object, storage.VersionKey())
	if err != nil {
		return 0, alarmState{}, fmt.Errorf("durable: load version of %q: %w", object, err)
	}
	if found {
		if version, err = decodeUint64("version", v); err != nil {
			return 0, alarmState{}, err
		}
	}
	a, found, err := r.Get(object, alarmKey)
	if err != nil {
		return 0, alarmState{}, fmt.Errorf("durable: load alarm of %q: %w", object, err)
	}
	if found {
		ns, err := decodeUint64("alarm", a)
		if err != nil {
			return 0, alarmState{}, err
		}
		alarm = alarmState{at: time.Unix(0, int64(ns)), set: true}
	}
	return version, alarm, nil
}
