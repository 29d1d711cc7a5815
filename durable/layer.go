package durable

import (
	"bytes"
	"errors"
	"slices"
)

// view is a readable state of an object's user keys: the committed store,
// or a layer of uncommitted writes over another view.
type view interface {
	get(key string) ([]byte, bool, error)
	// scan calls fn with the pairs start <= key < end (end "" : no end), in
	// key order or, reversed, from the highest, until fn returns false. The
	// value is only valid during the call.
	scan(start, end string, reverse bool, fn func(key string, value []byte) bool) error
}

// committed is the view of what the store holds.
type committed struct {
	r      Reader
	object string
}

func (c committed) get(key string) ([]byte, bool, error) {
	return c.r.Get(c.object, userKey(key))
}

func (c committed) scan(start, end string, reverse bool, fn func(string, []byte) bool) error {
	upper := userEnd
	if end != "" {
		upper = userKey(end)
	}
	return c.r.Scan(c.object, userKey(start), upper, reverse, func(k, v []byte) bool {
		return fn(string(k[1:]), v)
	})
}

// write is a layer's latest write of one key.
type write struct {
	value []byte
	del   bool
}

// layer holds writes not yet committed, over the view below: an event's
// writes over the store, or a transaction's over its parent's.
type layer struct {
	below  view
	parent *layer // below, when it is a layer (a transaction's parent)
	writes map[string]write
	bytes  int // the writes' size, as MaxBatchBytes counts it
}

func newLayer(below view, parent *layer) *layer {
	return &layer{below: below, parent: parent, writes: map[string]write{}}
}

func writeSize(key string, w write) int { return len(key) + len(w.value) }

// total is what the layer and those below it would commit at most.
func (l *layer) total() int {
	n := 0
	for ; l != nil; l = l.parent {
		n += l.bytes
	}
	return n
}

// grows is how much setting key to w would add to the layer's size.
func (l *layer) grows(key string, w write) int {
	n := writeSize(key, w)
	if old, ok := l.writes[key]; ok {
		n -= writeSize(key, old)
	}
	return n
}

func (l *layer) set(key string, w write) {
	l.bytes += l.grows(key, w)
	l.writes[key] = w
}

func (l *layer) get(key string) ([]byte, bool, error) {
	if w, ok := l.writes[key]; ok {
		return w.value, !w.del, nil
	}
	return l.below.get(key)
}

func inRange(key, start, end string) bool {
	return key >= start && (end == "" || key < end)
}

func (l *layer) scan(start, end string, reverse bool, fn func(string, []byte) bool) error {
	var keys []string
	for k := range l.writes {
		if inRange(k, start, end) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if reverse {
		slices.Reverse(keys)
	}
	// before says whether a comes before b in the walk's order.
	before := func(a, b string) bool {
		if reverse {
			return a > b
		}
		return a < b
	}
	i, stopped := 0, false
	// emit hands on this layer's own writes that come before key (all of
	// them when all is set), skipping deletions.
	emit := func(key string, all bool) bool {
		for ; i < len(keys) && (all || before(keys[i], key)); i++ {
			if w := l.writes[keys[i]]; !w.del && !fn(keys[i], w.value) {
				i++
				return false
			}
		}
		return true
	}
	err := l.below.scan(start, end, reverse, func(k string, v []byte) bool {
		if !emit(k, false) {
			stopped = true
			return false
		}
		if w, ok := l.writes[k]; ok {
			i++ // keys[i] is k: this layer's write replaces what is below
			if w.del {
				return true
			}
			v = w.value
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
	emit("", true)
	return nil
}

// merge moves a finished transaction's writes into its parent.
func (l *layer) merge(child *layer) {
	for k, w := range child.writes {
		l.set(k, w)
	}
}

// KV is one pair a List returns.
type KV struct {
	Key   string
	Value []byte
}

// ListOptions select the pairs a List returns. All are optional.
type ListOptions struct {
	// Prefix keeps only keys that start with it.
	Prefix string
	// Start is the first key to include; End the first key past the
	// range ("" : no end).
	Start, End string
	// StartAfter starts the range just past this key (pages of a forward
	// List: the last key of one page starts the next); it and Start are
	// not both set. "" is unset: to page past the empty key, use Start
	// "\x00".
	StartAfter string
	// Reverse walks from the highest key down.
	Reverse bool
	// Limit stops after that many pairs (0: no limit, but see
	// MaxKeysPerList).
	Limit int
}

// bounds turns the options into one range [start, end), ok false when
// it is empty.
func (o ListOptions) bounds() (start, end string, ok bool) {
	start, end = o.Start, o.End
	if o.StartAfter != "" {
		start = o.StartAfter + "\x00" // the first key past it
	}
	if o.Prefix != "" {
		start = max(start, o.Prefix)
		if pe, has := prefixEnd(o.Prefix); has && (end == "" || pe < end) {
			end = pe
		}
	}
	return start, end, end == "" || start < end
}

var errStartAndStartAfter = errors.New("durable: list: Start and StartAfter both set")

// prefixEnd is the first string past every string that starts with p;
// has is false when there is none (p is all 0xff).
func prefixEnd(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

// list runs a List on v, checking the limits first.
func list(v view, o ListOptions) ([]KV, error) {
	if o.Start != "" && o.StartAfter != "" {
		return nil, errStartAndStartAfter
	}
	if o.Limit < 0 || o.Limit > MaxKeysPerList {
		return nil, &LimitError{Err: ErrListTooLarge, Op: "list", Size: o.Limit, Limit: MaxKeysPerList}
	}
	start, end, ok := o.bounds()
	if !ok {
		return nil, nil
	}
	want := o.Limit
	if want == 0 {
		want = MaxKeysPerList + 1 // one more tells that there are too many
	}
	var out []KV
	err := v.scan(start, end, o.Reverse, func(k string, val []byte) bool {
		out = append(out, KV{Key: k, Value: bytes.Clone(val)})
		return len(out) < want
	})
	if err != nil {
		return nil, err
	}
	if o.Limit == 0 && len(out) > MaxKeysPerList {
		return nil, &LimitError{Err: ErrListTooLarge, Op: "list without a limit", Key: o.Prefix, Size: len(out), Limit: MaxKeysPerList}
	}
	return out, nil
}

// checkKey and checkPut refuse what the limits do not allow.
func checkKey(op, key string) error {
	if len(key) > MaxKeySize {
		return &LimitError{Err: ErrKeyTooLarge, Op: op, Key: key, Size: len(key), Limit: MaxKeySize}
	}
	return nil
}

func checkWrite(l *layer, op, key string, w write) error {
	if err := checkKey(op, key); err != nil {
		return err
	}
	if len(w.value) > MaxValueSize {
		return &LimitError{Err: ErrValueTooLarge, Op: op, Key: key, Size: len(w.value), Limit: MaxValueSize}
	}
	if n := l.total() + l.grows(key, w); n > MaxBatchBytes {
		return &LimitError{Err: ErrBatchTooLarge, Op: op, Key: key, Size: n, Limit: MaxBatchBytes}
	}
	return nil
}
