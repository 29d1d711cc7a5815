package durable

import (
	"bytes"
	"errors"
	"slices"
	"sync"

	"hellochat/storage"
)

// MemStore is an in-memory Reader and Committer, for tests of classes and
// for examples: it applies each batch at once, checks its guards as the
// shards do, and calls done before Commit returns.
type MemStore struct {
	mu       sync.Mutex
	objects  map[string]map[string][]byte
	versions map[string]uint64
}

// ErrConflict is MemStore's refusal of a batch whose guards do not hold
// (the shards refuse it with shard.ErrConflict).
var ErrConflict = errors.New("durable: memstore: conditional write refused")

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{objects: map[string]map[string][]byte{}, versions: map[string]uint64{}}
}

// Commit applies the batch if its guards hold, and calls done.
func (m *MemStore) Commit(object string, ops []storage.Op, guards storage.Guards, done func(error)) {
	done(m.Apply(object, ops, guards))
}

// Apply is Commit without the callback.
func (m *MemStore) Apply(object string, ops []storage.Op, guards storage.Guards) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv := m.objects[object]
	v, versioned := m.versions[object]
	if guards.Versioned && versioned {
		if v != guards.Version {
			return ErrConflict
		}
	} else {
		for _, k := range guards.Absent {
			if _, ok := kv[string(k)]; ok {
				return ErrConflict
			}
		}
		for _, k := range guards.Present {
			if _, ok := kv[string(k)]; !ok {
				return ErrConflict
			}
		}
	}
	for _, op := range ops {
		if len(op.Key) == 0 || storage.ReservedKey(op.Key) {
			return ErrConflict // the shards refuse the whole command too
		}
	}
	if kv == nil {
		kv = map[string][]byte{}
		m.objects[object] = kv
	}
	for _, op := range ops {
		if op.Delete {
			delete(kv, string(op.Key))
		} else {
			kv[string(op.Key)] = bytes.Clone(op.Value)
		}
	}
	if guards.Versioned {
		m.versions[object] = guards.Next
	}
	return nil
}

// Get reads one key of an object; storage.VersionKey reads its version,
// as it does from the store.
func (m *MemStore) Get(object string, key []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if bytes.Equal(key, storage.VersionKey()) {
		v, ok := m.versions[object]
		if !ok {
			return nil, false, nil
		}
		return encodeUint64(v), true, nil
	}
	v, ok := m.objects[object][string(key)]
	return bytes.Clone(v), ok, nil
}

// Scan walks an object's keys in [start, end) (nil end: all after start).
func (m *MemStore) Scan(object string, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	m.mu.Lock()
	var keys []string
	kv := m.objects[object]
	for k := range kv {
		if k >= string(start) && (end == nil || k < string(end)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if reverse {
		slices.Reverse(keys)
	}
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = bytes.Clone(kv[k])
	}
	m.mu.Unlock()
	for i, k := range keys {
		if !fn([]byte(k), vals[i]) {
			break
		}
	}
	return nil
}

// Keys is how many keys an object has stored, the runtime's own included.
func (m *MemStore) Keys(object string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.objects[object])
}
