package storage

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/cockroachdb/pebble"
)

// A shard replica's identity in its group:
//
//	r <shard> m              this node's replica id in the group (8 bytes)
//	r <shard> d              the group's replica set as of applied (opaque to the store)
//
// Both go with the rest of the shard's Raft state when the replica is
// deleted. What outlives it is its tombstone, a system key: the ids this
// node held in the shard's group and gave up, which it must never answer
// for again.
const (
	raftSelf     = 'm'
	raftReplicas = 'd'
	// MaxTombstones bounds the ids remembered per shard; a node holds a
	// replica of one shard a few times in its life, not thousands.
	MaxTombstones = 64
)

// ReplicaIdentity is a replica's id in its group and the group's replica
// set (encoded by the caller), written with a snapshot's install.
type ReplicaIdentity struct {
	Self uint64
	Set  []byte
}

func tombstoneName(shard int) string { return "tombstones/" + strconv.Itoa(shard) }

// SetReplicaID records this node's replica id in the shard's group.
func (b *Batch) SetReplicaID(shard int, id uint64) error {
	return b.b.Set(raftKey(shard, raftSelf), binary.BigEndian.AppendUint64(nil, id), nil)
}

// SetReplicaSet records the group's replica set (encoded by the caller).
func (b *Batch) SetReplicaSet(shard int, set []byte) error {
	return b.b.Set(raftKey(shard, raftReplicas), set, nil)
}

// ReplicaIdentity reads this node's replica id in the shard's group (0
// when none was recorded) and the group's replica set (nil when none).
func (s *Store) ReplicaIdentity(shard int) (self uint64, set []byte, err error) {
	if v, closer, err := s.db.Get(raftKey(shard, raftSelf)); err == nil {
		if len(v) == 8 {
			self = binary.BigEndian.Uint64(v)
		}
		closer.Close()
	} else if err != pebble.ErrNotFound {
		return 0, nil, fmt.Errorf("storage: shard %d replica id: %w", shard, err)
	}
	if v, closer, err := s.db.Get(raftKey(shard, raftReplicas)); err == nil {
		set = append([]byte(nil), v...)
		closer.Close()
	} else if err != pebble.ErrNotFound {
		return 0, nil, fmt.Errorf("storage: shard %d replica set: %w", shard, err)
	}
	return self, set, nil
}

// Tombstones lists the replica ids of the shard this node gave up, oldest
// first.
func (s *Store) Tombstones(shard int) ([]uint64, error) {
	v, err := s.SystemGet(tombstoneName(shard))
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for i := 0; i+8 <= len(v); i += 8 {
		ids = append(ids, binary.BigEndian.Uint64(v[i:]))
	}
	return ids, nil
}

// AddTombstone durably records that this node gave up replica id of the
// shard, before the replica's state is deleted: a crash in between leaves
// a tombstoned replica, which the node deletes when it starts.
func (s *Store) AddTombstone(shard int, id uint64) error {
	ids, err := s.Tombstones(shard)
	if err != nil {
		return err
	}
	for _, t := range ids {
		if t == id {
			return nil
		}
	}
	ids = append(ids, id)
	if len(ids) > MaxTombstones {
		ids = ids[len(ids)-MaxTombstones:]
	}
	v := make([]byte, 0, 8*len(ids))
	for _, t := range ids {
		v = binary.BigEndian.AppendUint64(v, t)
	}
	return s.SystemPut(tombstoneName(shard), v)
}
