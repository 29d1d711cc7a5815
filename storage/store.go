// Package storage is a node's one Pebble DB: the objects' data, each
// shard replica's Raft log and state, and node-level state, under separate
// key prefixes.
package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"

	"hellochat/partition"
)

// Key layout of the node's one Pebble DB:
//
//	o <shard:2> <object> 0x00 <key>   an object's own keys (room names hold no 0x00)
//	o <shard:2> 0x00 0x00 'i'         a snapshot install's marker (snapshot.go)
//	s <name>                          node-level state (known members)
//
// The shard comes first so that one shard's data is one contiguous range:
// that is what a replica snapshot copies.
const (
	objectPrefix = 'o'
	systemPrefix = 's'
)

// Op is one write in an object's batch; keys are relative to the object.
type Op struct {
	Key    []byte
	Value  []byte
	Delete bool
}

// Guards make a batch conditional: it is written only if every Absent key
// is missing and every Present key exists when it is applied. With
// Versioned, the object's recorded version must be Version instead (and
// becomes Next); the key conditions then apply only to an object that has
// no version recorded yet.
type Guards struct {
	Absent, Present [][]byte
	Versioned       bool
	Version, Next   uint64
}

// versionKey is where an object's version is recorded. Object keys that
// start with 0x00 are the store's own; no op may write them.
var versionKey = []byte{0, 'v'}

// VersionKey is the object key under which the store records an object's
// version (Guards.Versioned), as 8 bytes big-endian: a reader learns the
// version it must guard its next batch with by getting this key, and no
// batch needs to write the version a second time among its own ops.
func VersionKey() []byte { return bytes.Clone(versionKey) }

// ReservedKey reports whether an object key belongs to the store.
func ReservedKey(key []byte) bool { return len(key) > 0 && key[0] == 0 }

// KV is one stored pair, with the key relative to its object.
type KV struct {
	Key   []byte
	Value []byte
}

// Store is the node's Pebble database. Objects see it through a small KV
// API (get, list by range, batched writes), each object's keys under its
// own name.
type Store struct {
	db   *pebble.DB
	dir  string
	opts *pebble.Options
	// crashHere, set only by tests, is asked at each step boundary of a
	// snapshot install; true stops the install there as a crash would.
	crashHere func() bool
	snapSeq   atomic.Uint64 // names snapshot files
	// failed holds the first fatal write error. Pebble cannot write again
	// after one (its WAL keeps the error and panics on a later record),
	// so every write after it is refused here, before it reaches Pebble.
	failed atomic.Pointer[fatalError]
}

// bloomBitsPerKey sizes the sstables' bloom filters. Most point reads here
// look for keys that do not exist (is this client id stored? is this seq
// free?); a filter answers those without reading a data block, at 10 bits
// per key for about 1% false positives.
const bloomBitsPerKey = 10

// blockCacheBytes sizes Pebble's cache of uncompressed sstable blocks. Its
// default (8 MB) is smaller than the index blocks a busy node's point reads
// touch, so they were read and decompressed again on nearly every lookup.
const blockCacheBytes = 64 << 20

// memTableBytes sizes Pebble's memtable. Raft log entries are deleted
// (by range) once a shard snapshots; the longer they stay in the memtable,
// the more of them die there instead of being flushed and compacted.
const memTableBytes = 64 << 20

// OpenStore opens (or creates) the Pebble DB in dir.
func OpenStore(dir string, log *slog.Logger) (*Store, error) {
	return OpenStoreOn(vfs.Default, dir, log)
}

// OpenStoreOn opens the store on fs: the disk, or (tests) one that fails
// when told to.
func OpenStoreOn(fs vfs.FS, dir string, log *slog.Logger) (*Store, error) {
	cache := pebble.NewCache(blockCacheBytes)
	defer cache.Unref() // the DB holds its own reference
	// EnsureDefaults first: it makes the levels the filters are set on.
	opts := (&pebble.Options{FS: fs, Logger: pebbleLogger{log}, Cache: cache, MemTableSize: memTableBytes}).EnsureDefaults()
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	}
	// The data dir holds every message; nobody else on the machine needs it.
	// Pebble syncs the files it makes in it, not the entry of the dir.
	if err := mkdirDurable(fs, dir); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("storage: open pebble in %s (is another node using this data dir?): %w", dir, err)
	}
	s := &Store{db: db, dir: dir, opts: opts}
	if err := s.recoverInstalls(partition.Count); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: finish interrupted snapshot installs in %s: %w", dir, err)
	}
	return s, nil
}

// Close closes the DB.
func (s *Store) Close() error { return s.db.Close() }

func objectKey(object string, key []byte) []byte {
	k := make([]byte, 0, 4+len(object)+len(key))
	shard := partition.Of(object)
	k = append(k, objectPrefix, byte(shard>>8), byte(shard))
	k = append(k, object...)
	k = append(k, 0)
	return append(k, key...)
}

// Apply writes an object's ops as one batch and syncs the WAL before it
// returns: after Apply returns nil the writes survive kill -9 and power loss.
// Pebble groups concurrent synced commits into one fsync, which is what makes
// many rooms committing at once cheap.
func (s *Store) Apply(object string, ops []Op) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, op := range ops {
		var err error
		if op.Delete {
			err = b.Delete(objectKey(object, op.Key), nil)
		} else {
			err = b.Set(objectKey(object, op.Key), op.Value, nil)
		}
		if err != nil {
			return fmt.Errorf("objectnode: batch for %q: %w", object, err)
		}
	}
	if err := s.durable(func() error { return b.Commit(pebble.Sync) }); err != nil {
		return fmt.Errorf("objectnode: commit for %q: %w", object, err)
	}
	return nil
}

// Get reads one key of an object; found is false when it is absent.
func (s *Store) Get(object string, key []byte) (value []byte, found bool, err error) {
	v, closer, err := s.db.Get(objectKey(object, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("objectnode: get %q: %w", object, err)
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

// List returns an object's pairs with start <= key < end (nil end: to the
// end of the object), at most limit of them (0: no limit). With reverse set
// it walks from the end, so the first pairs returned are the highest keys.
func (s *Store) List(object string, start, end []byte, limit int, reverse bool) ([]KV, error) {
	var out []KV
	err := s.Scan(object, start, end, reverse, func(key, value []byte) bool {
		out = append(out, KV{Key: bytes.Clone(key), Value: bytes.Clone(value)})
		return limit <= 0 || len(out) < limit
	})
	return out, err
}

// Scan calls fn with an object's pairs with start <= key < end (nil end: to
// the end of the object), in key order or, with reverse set, from the
// highest key down, until fn returns false. The key (relative to the object)
// and value are only valid during the call: a caller that keeps them copies
// them, and one that decodes them copies nothing.
func (s *Store) Scan(object string, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	lower := objectKey(object, start)
	var upper []byte
	if end != nil {
		upper = objectKey(object, end)
	} else {
		upper = objectKey(object, nil)
		upper[len(upper)-1] = 1 // just past the 0x00 separator
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: scan %q: %w", object, err)
	}
	defer it.Close()
	prefixLen := len(object) + 4
	valid, step := it.First(), it.Next
	if reverse {
		valid, step = it.Last(), it.Prev
	}
	for ; valid; valid = step() {
		if !fn(it.Key()[prefixLen:], it.Value()) {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("storage: scan %q: %w", object, err)
	}
	return nil
}

// SystemGet and SystemPut hold node-level state outside every object.
func (s *Store) SystemGet(name string) ([]byte, error) {
	v, closer, err := s.db.Get(append([]byte{systemPrefix}, name...))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("objectnode: read %s: %w", name, err)
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

func (s *Store) SystemPut(name string, value []byte) error {
	if err := s.durable(func() error { return s.db.Set(append([]byte{systemPrefix}, name...), value, pebble.Sync) }); err != nil {
		return fmt.Errorf("objectnode: write %s: %w", name, err)
	}
	return nil
}

// pebbleLogger keeps Pebble's informational chatter out of the node's log
// and passes on what matters.
type pebbleLogger struct{ log *slog.Logger }

func (pebbleLogger) Infof(format string, args ...any) {}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is Pebble giving up, on a commit it could not write (disk full,
// disk gone) or worse. It must not return. It panics with a fatalError:
// durable turns that into an error when it happens on a write of ours, and
// elsewhere (a Pebble goroutine of its own) the process stops with the
// message.
func (pebbleLogger) Fatalf(format string, args ...any) {
	panic(fatalError{fmt.Sprintf("pebble: "+format, args...)})
}

type fatalError struct{ msg string }

func (e fatalError) Error() string { return e.msg }

// ErrFailed is what every write returns once one write has failed for
// good (a full or broken disk): the store takes no more writes, and the
// node that owns it must stop.
var ErrFailed = errors.New("storage: an earlier write failed for good; this store takes no more writes")

// durable runs one of our writes to the DB, returning Pebble's Fatalf on
// it as an error. The store is unusable after such an error: this write
// and every later one return an error (later ones wrap ErrFailed) and the
// caller (the Raft loop, the node) stops.
//
// A write already inside Pebble when another one fails can still meet
// Pebble's own panic on the broken WAL; that panic holds Pebble's commit
// lock, so no error could leave the store usable, and it stops the
// process as any other crash would.
func (s *Store) durable(write func() error) (err error) {
	if first := s.failed.Load(); first != nil {
		return fmt.Errorf("%w: %v", ErrFailed, *first)
	}
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			s.failed.CompareAndSwap(nil, &fe)
			err = fe
		}
	}()
	return write()
}
