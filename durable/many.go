package durable

import (
	"slices"
)

// The multi-key forms of Get, Put and Delete, as Cloudflare's storage
// takes an array of keys or an object of entries. Each is all or nothing:
// a key or value over its limit, or a batch that would pass
// MaxBatchBytes, refuses the whole call and changes nothing.

// GetMany returns the values of the keys that have one; absent keys are
// absent from the map.
func (s *Storage) GetMany(keys []string) (map[string][]byte, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	return getMany(s.ev, keys)
}

// PutMany sets every key of entries to its value.
func (s *Storage) PutMany(entries map[string][]byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	return putMany(s.ev, entries)
}

// DeleteMany deletes keys and returns how many had a value.
func (s *Storage) DeleteMany(keys []string) (int, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	return deleteMany(s.ev, keys)
}

// GetMany is Storage.GetMany within the transaction.
func (t *Txn) GetMany(keys []string) (map[string][]byte, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	return getMany(t.l, keys)
}

// PutMany is Storage.PutMany within the transaction.
func (t *Txn) PutMany(entries map[string][]byte) error {
	if err := t.usable(); err != nil {
		return err
	}
	return putMany(t.l, entries)
}

// DeleteMany is Storage.DeleteMany within the transaction.
func (t *Txn) DeleteMany(keys []string) (int, error) {
	if err := t.usable(); err != nil {
		return 0, err
	}
	return deleteMany(t.l, keys)
}

func checkCount(op string, n int) error {
	if n > MaxKeysPerCall {
		return &LimitError{Err: ErrTooManyKeys, Op: op, Size: n, Limit: MaxKeysPerCall}
	}
	return nil
}

func getMany(l *layer, keys []string) (map[string][]byte, error) {
	if err := checkCount("get", len(keys)); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := checkKey("get", k); err != nil {
			return nil, err
		}
	}
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		v, found, err := get(l, k)
		if err != nil {
			return nil, err
		}
		if found {
			out[k] = v
		}
	}
	return out, nil
}

// putMany writes the entries in key order (a refusal names the same key
// every time) on a layer of their own, merged only if all fit.
func putMany(l *layer, entries map[string][]byte) error {
	if err := checkCount("put", len(entries)); err != nil {
		return err
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	all := newLayer(l, l)
	for _, k := range keys {
		if err := put(all, k, entries[k]); err != nil {
			return err
		}
	}
	l.merge(all)
	return nil
}

func deleteMany(l *layer, keys []string) (int, error) {
	if err := checkCount("delete", len(keys)); err != nil {
		return 0, err
	}
	all := newLayer(l, l)
	n := 0
	for _, k := range keys {
		existed, err := del(all, k)
		if err != nil {
			return 0, err
		}
		if existed {
			n++
		}
	}
	l.merge(all)
	return n, nil
}
