package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Raft state of one shard replica lives under 'r' <shard:2>:
//
//	r <shard> h              HardState
//	r <shard> s              metadata of the latest snapshot (log truncated up to it)
//	r <shard> a              applied index, written in the same batch as the data it applied
//	r <shard> c              configuration (voters, learners) as of the applied index
//	r <shard> x              Raft ids its group removed (8 bytes each)
//	r <shard> i              install marker of an older version (finished at open, never written)
//	r <shard> l <index:8>    log entries
const (
	raftPrefix  = 'r'
	raftHard    = 'h'
	raftSnap    = 's'
	raftApplied = 'a'
	raftConf    = 'c'
	raftInstall = 'i'
	raftRemoved = 'x'
	raftLog     = 'l'
)

func raftKey(shard int, kind byte) []byte {
	return []byte{raftPrefix, byte(shard >> 8), byte(shard), kind}
}

func logKey(shard int, index uint64) []byte {
	k := raftKey(shard, raftLog)
	return binary.BigEndian.AppendUint64(k, index)
}

// shardRange bounds a shard's object data.
func shardRange(shard int) (lower, upper []byte) {
	lower = []byte{objectPrefix, byte(shard >> 8), byte(shard)}
	next := shard + 1
	upper = []byte{objectPrefix, byte(next >> 8), byte(next)}
	return lower, upper
}

// RaftState is what a shard replica persisted.
type RaftState struct {
	Hard    *raftpb.HardState
	Snap    *raftpb.SnapshotMetadata // nil before the first snapshot or bootstrap
	Entries []*raftpb.Entry          // after Snap, in order
	Applied uint64
	// Conf is the configuration as of Applied: every applied configuration
	// change updates it, so it is newer than Snap's when changes were
	// applied after the snapshot. nil when none was recorded.
	Conf *raftpb.ConfState
	// Removed lists Raft ids of replicas the group removed (latest last).
	Removed []uint64
}

// LoadRaft reads a shard replica's state; found is false when it has none.
func (s *Store) LoadRaft(shard int) (st RaftState, found bool, err error) {
	get := func(kind byte, m proto.Message) (bool, error) {
		v, closer, err := s.db.Get(raftKey(shard, kind))
		if err == pebble.ErrNotFound {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		defer closer.Close()
		return true, proto.Unmarshal(v, m)
	}
	st.Hard = &raftpb.HardState{}
	hasHard, err := get(raftHard, st.Hard)
	if err != nil {
		return st, false, fmt.Errorf("storage: shard %d hard state: %w", shard, err)
	}
	snap := &raftpb.SnapshotMetadata{}
	hasSnap, err := get(raftSnap, snap)
	if err != nil {
		return st, false, fmt.Errorf("storage: shard %d snapshot: %w", shard, err)
	}
	if hasSnap {
		st.Snap = snap
	}
	conf := &raftpb.ConfState{}
	hasConf, err := get(raftConf, conf)
	if err != nil {
		return st, false, fmt.Errorf("storage: shard %d configuration: %w", shard, err)
	}
	if hasConf {
		st.Conf = conf
	}
	if v, closer, err := s.db.Get(raftKey(shard, raftRemoved)); err == nil {
		for i := 0; i+8 <= len(v); i += 8 {
			st.Removed = append(st.Removed, binary.BigEndian.Uint64(v[i:]))
		}
		closer.Close()
	} else if err != pebble.ErrNotFound {
		return st, false, fmt.Errorf("storage: shard %d removed replicas: %w", shard, err)
	}
	if v, closer, err := s.db.Get(raftKey(shard, raftApplied)); err == nil {
		st.Applied = binary.BigEndian.Uint64(v)
		closer.Close()
	} else if err != pebble.ErrNotFound {
		return st, false, fmt.Errorf("storage: shard %d applied index: %w", shard, err)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logKey(shard, 0), UpperBound: raftKey(shard, raftLog+1)})
	if err != nil {
		return st, false, fmt.Errorf("storage: shard %d log: %w", shard, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return st, false, fmt.Errorf("storage: shard %d log entry %x: %w", shard, it.Key(), err)
		}
		st.Entries = append(st.Entries, e)
	}
	if err := it.Error(); err != nil {
		return st, false, fmt.Errorf("storage: shard %d log: %w", shard, err)
	}
	return st, hasHard || hasSnap || len(st.Entries) > 0, nil
}

// Batch gathers the writes of one round of the Raft loop, for every shard,
// so the round costs one fsync however many shards had work.
type Batch struct {
	b *pebble.Batch
	s *Store
}

// NewBatch starts a batch.
func (s *Store) NewBatch() *Batch { return &Batch{b: s.db.NewBatch(), s: s} }

// NewApplyBatch starts a batch that can also read: Has sees the batch's
// own writes on top of the store, as applying a log entry after another in
// the same batch must. size is about how many bytes it will hold (0 if
// unknown): a batch that grows to it doubles its buffer, and each copy is
// garbage.
func (s *Store) NewApplyBatch(size int) *Batch {
	return &Batch{b: s.db.NewIndexedBatchWithSize(size), s: s}
}

// Has reports whether an object's key exists, counting this batch's writes
// (an apply batch only).
func (b *Batch) Has(object string, key []byte) (bool, error) {
	_, closer, err := b.b.Get(objectKey(object, key))
	if err == pebble.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

// Version reads an object's recorded version, counting this batch's
// writes (an apply batch only); found is false when none is recorded.
func (b *Batch) Version(object string) (v uint64, found bool, err error) {
	val, closer, err := b.b.Get(objectKey(object, versionKey))
	if err == pebble.ErrNotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("storage: version of %q: %w", object, err)
	}
	defer closer.Close()
	if len(val) != 8 {
		return 0, false, fmt.Errorf("storage: version of %q is %d bytes", object, len(val))
	}
	return binary.BigEndian.Uint64(val), true, nil
}

// SetVersion records an object's version.
func (b *Batch) SetVersion(object string, v uint64) error {
	return b.b.Set(objectKey(object, versionKey), binary.BigEndian.AppendUint64(nil, v), nil)
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Commit writes the batch; with sync it survives power loss when it returns.
func (b *Batch) Commit(sync bool) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	defer b.b.Close()
	if err := b.s.durable(func() error { return b.b.Commit(opt) }); err != nil {
		return fmt.Errorf("storage: commit raft batch: %w", err)
	}
	return nil
}

func (b *Batch) setProto(key []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.b.Set(key, v, nil)
}

// Append stores new log entries after the log's last index lastIndex.
// When Raft rewrites an uncommitted suffix (the new entries start at or
// before lastIndex), the old entries from there on are deleted first. Only
// then: a range deletion per append would pile up tombstones that slow
// every flush and compaction.
func (b *Batch) Append(shard int, ents []*raftpb.Entry, lastIndex uint64) error {
	if len(ents) == 0 {
		return nil
	}
	if first := ents[0].GetIndex(); first <= lastIndex {
		if err := b.b.DeleteRange(logKey(shard, first), logKey(shard, lastIndex+1), nil); err != nil {
			return err
		}
	}
	for _, e := range ents {
		if err := b.setProto(logKey(shard, e.GetIndex()), e); err != nil {
			return fmt.Errorf("storage: shard %d entry %d: %w", shard, e.GetIndex(), err)
		}
	}
	return nil
}

// SetHardState stores the replica's term, vote and commit index.
func (b *Batch) SetHardState(shard int, hs *raftpb.HardState) error {
	return b.setProto(raftKey(shard, raftHard), hs)
}

// SetApplied records how far the replica has applied its log.
func (b *Batch) SetApplied(shard int, index uint64) error {
	return b.b.Set(raftKey(shard, raftApplied), binary.BigEndian.AppendUint64(nil, index), nil)
}

// SetConfState records the configuration as of the applied index.
func (b *Batch) SetConfState(shard int, cs *raftpb.ConfState) error {
	return b.setProto(raftKey(shard, raftConf), cs)
}

// SetRemoved records the Raft ids of replicas the group removed.
func (b *Batch) SetRemoved(shard int, ids []uint64) error {
	v := make([]byte, 0, 8*len(ids))
	for _, id := range ids {
		v = binary.BigEndian.AppendUint64(v, id)
	}
	return b.b.Set(raftKey(shard, raftRemoved), v, nil)
}

// ApplyOps writes an object's ops (an applied log entry).
func (b *Batch) ApplyOps(object string, ops []Op) error {
	for _, op := range ops {
		var err error
		if op.Delete {
			err = b.b.Delete(objectKey(object, op.Key), nil)
		} else {
			err = b.b.Set(objectKey(object, op.Key), op.Value, nil)
		}
		if err != nil {
			return fmt.Errorf("storage: apply to %q: %w", object, err)
		}
	}
	return nil
}

// Compact records a snapshot point and drops the log up to it.
func (b *Batch) Compact(shard int, meta *raftpb.SnapshotMetadata, truncateBelow uint64) error {
	if err := b.setProto(raftKey(shard, raftSnap), meta); err != nil {
		return err
	}
	return b.b.DeleteRange(logKey(shard, 0), logKey(shard, truncateBelow), nil)
}
