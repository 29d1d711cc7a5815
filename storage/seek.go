package storage

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// SeekObjects visits, in name order, the objects of shard whose names
// begin with prefix (which must not be empty) and sort after after ("":
// from the first), at most limit of them, and calls fn for each with the
// value of key in that object, or nil if it has none. It seeks from object
// to object, two seeks each, and reads no other key of theirs: the cost of
// a visit does not grow with how much an object stores. object and value
// are only valid during fn. It returns the last object visited (the after
// of the next call) and done once no object is left.
//
// It is how a shard's leader finds its objects' alarms without an index:
// each object's runtime keeps its alarm under one fixed key.
func (s *Store) SeekObjects(shard int, prefix, after string, key []byte, limit int, fn func(object string, value []byte)) (last string, done bool, err error) {
	return s.seekObjects(shard, prefix, after, key, false, limit, fn)
}

// SeekObjectsHaving is SeekObjects for a key prefix: fn gets the value of
// the object's first key that begins with keyPrefix, or nil if none does.
// It is how a shard's new leader finds the objects that hold WebSockets
// (a record per socket, under one prefix).
func (s *Store) SeekObjectsHaving(shard int, prefix, after string, keyPrefix []byte, limit int, fn func(object string, value []byte)) (last string, done bool, err error) {
	return s.seekObjects(shard, prefix, after, keyPrefix, true, limit, fn)
}

func (s *Store) seekObjects(shard int, prefix, after string, key []byte, isPrefix bool, limit int, fn func(object string, value []byte)) (last string, done bool, err error) {
	if prefix == "" || limit <= 0 {
		return "", false, errors.New("storage: SeekObjects needs a prefix and a positive limit")
	}
	base := []byte{objectPrefix, byte(shard >> 8), byte(shard)}
	lower := append(bytes.Clone(base), prefix...)
	upper := bytes.Clone(lower)
	upper[len(upper)-1]++ // prefix's last byte is never 0xff: names are checked by limits.StoredObject
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return "", false, fmt.Errorf("storage: seek objects of shard %d: %w", shard, err)
	}
	defer it.Close()
	// past returns the first store key after every key of object: its keys
	// are object 0x00 key, and no object name holds 0x00 or 0x01 after
	// its first byte.
	past := func(object []byte) []byte {
		return append(append(bytes.Clone(base), object...), 1)
	}
	seek := lower
	if after != "" {
		seek = past([]byte(after))
	}
	last = after
	for visited := 0; visited < limit; visited++ {
		if !it.SeekGE(seek) {
			done = true
			break
		}
		rest := it.Key()[len(base):]
		sep := bytes.IndexByte(rest, 0)
		if sep < 0 {
			return last, false, fmt.Errorf("storage: shard %d: key %q has no object separator", shard, it.Key())
		}
		object := bytes.Clone(rest[:sep])
		target := append(append(append(bytes.Clone(base), object...), 0), key...)
		var value []byte
		if it.SeekGE(target) && (bytes.Equal(it.Key(), target) || isPrefix && bytes.HasPrefix(it.Key(), target)) {
			value = it.Value()
		}
		fn(string(object), value)
		last = string(object)
		seek = past(object)
	}
	if err := it.Error(); err != nil {
		return last, false, fmt.Errorf("storage: seek objects of shard %d: %w", shard, err)
	}
	return last, done, nil
}
