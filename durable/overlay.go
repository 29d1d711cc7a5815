package durable

import (
	"bytes"
	"slices"

	"hellochat/storage"
)

// overlay is the Reader events read through: the store, under the writes
// handed to the Committer and not yet committed (flight), under the
// writes of the events that finished since and wait to follow them
// (next). So an event reads what the events before it wrote, committed
// or not; the output gate keeps it from showing any of it before it is.
// Its maps are the batches' own, by store key; only the actor's
// goroutine touches them.
type overlay struct {
	r            Reader
	flight, next map[string]storage.Op
}

// lookup is the newest overlaid op on key, if any.
func (o *overlay) lookup(key string) (storage.Op, bool) {
	if op, ok := o.next[key]; ok {
		return op, true
	}
	op, ok := o.flight[key]
	return op, ok
}

func (o *overlay) Get(object string, key []byte) ([]byte, bool, error) {
	if op, ok := o.lookup(string(key)); ok {
		if op.Delete {
			return nil, false, nil
		}
		return slices.Clone(op.Value), true, nil
	}
	return o.r.Get(object, key)
}

// Scan merges the overlaid keys in [start, end) (end nil: no end) into
// the store's, the overlay's op winning on a key both hold.
func (o *overlay) Scan(object string, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	if len(o.flight) == 0 && len(o.next) == 0 {
		return o.r.Scan(object, start, end, reverse, fn)
	}
	var keys []string
	add := func(m map[string]storage.Op) {
		for k := range m {
			if k >= string(start) && (end == nil || k < string(end)) {
				keys = append(keys, k)
			}
		}
	}
	add(o.flight)
	add(o.next)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if reverse {
		slices.Reverse(keys)
	}
	// before says whether overlaid key a comes before store key b.
	before := func(a string, b []byte) bool {
		if reverse {
			return a > string(b)
		}
		return a < string(b)
	}
	i, stopped := 0, false
	// emit hands on overlaid key i; false once fn said stop.
	emit := func() bool {
		op, _ := o.lookup(keys[i])
		i++
		if op.Delete {
			return true
		}
		if !fn([]byte(keys[i-1]), op.Value) {
			stopped = true
			return false
		}
		return true
	}
	err := o.r.Scan(object, start, end, reverse, func(k, v []byte) bool {
		for i < len(keys) && before(keys[i], k) {
			if !emit() {
				return false
			}
		}
		if i < len(keys) && bytes.Equal([]byte(keys[i]), k) {
			return emit() // the overlay's op replaces the stored pair
		}
		if !fn(k, v) {
			stopped = true
			return false
		}
		return true
	})
	if err != nil || stopped {
		return err
	}
	for i < len(keys) && emit() {
	}
	return nil
}
