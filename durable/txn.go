package durable

import (
	"bytes"
	"errors"
)

// Txn is a transaction's view of storage: its reads see its own writes
// over the event's, and its writes join the event's only if the function
// it was given returns nil.
type Txn struct {
	s      *Storage
	l      *layer
	done   bool // its function returned
	txOpen bool // a nested Transaction is running
	// deleteAlarm: a DeleteAll ran, so the alarm goes too if the
	// transaction (and every one it is nested in) succeeds.
	deleteAlarm bool
}

var errTxnDone = errors.New("durable: transaction used after it finished")

func (t *Txn) usable() error {
	switch {
	case t.done:
		return errTxnDone
	case t.s.broken != nil:
		return t.s.broken
	case t.txOpen:
		return ErrTxnOpen
	}
	return nil
}

// Get is Storage.Get within the transaction.
func (t *Txn) Get(key string) ([]byte, bool, error) {
	if err := t.usable(); err != nil {
		return nil, false, err
	}
	return get(t.l, key)
}

// Put is Storage.Put within the transaction.
func (t *Txn) Put(key string, value []byte) error {
	if err := t.usable(); err != nil {
		return err
	}
	return put(t.l, key, value)
}

// Delete is Storage.Delete within the transaction.
func (t *Txn) Delete(key string) (bool, error) {
	if err := t.usable(); err != nil {
		return false, err
	}
	return del(t.l, key)
}

// Drop is Storage.Drop within the transaction.
func (t *Txn) Drop(key string) error {
	if err := t.usable(); err != nil {
		return err
	}
	return drop(t.l, key)
}

// List is Storage.List within the transaction.
func (t *Txn) List(opts ListOptions) ([]KV, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	return list(t.l, opts)
}

// DeleteAll is Storage.DeleteAll within the transaction: the alarm is
// deleted only if the transaction succeeds.
func (t *Txn) DeleteAll() error {
	if err := t.usable(); err != nil {
		return err
	}
	if err := deleteAll(t.l); err != nil {
		return err
	}
	t.deleteAlarm = true
	return nil
}

// Transaction nests a transaction in this one: an error from fn discards
// fn's writes only, and this transaction goes on.
func (t *Txn) Transaction(fn func(tx *Txn) error) error {
	if err := t.usable(); err != nil {
		return err
	}
	t.txOpen = true
	defer func() { t.txOpen = false }()
	return transaction(t.s, t, t.l, fn)
}

func transaction(s *Storage, outer *Txn, parent *layer, fn func(tx *Txn) error) error {
	tx := &Txn{s: s, l: newLayer(parent, parent)}
	err := fn(tx)
	tx.done = true
	if err != nil {
		return err
	}
	if s.broken != nil {
		return s.broken
	}
	parent.merge(tx.l)
	if tx.deleteAlarm {
		if outer != nil {
			outer.deleteAlarm = true
		} else {
			s.alarm.pending = &alarmChange{}
		}
	}
	return nil
}

// The operations Storage and Txn share, on the layer they write to.

func get(l *layer, key string) ([]byte, bool, error) {
	if err := checkKey("get", key); err != nil {
		return nil, false, err
	}
	v, found, err := l.get(key)
	if err != nil || !found {
		return nil, false, err
	}
	return bytes.Clone(v), true, nil
}

func put(l *layer, key string, value []byte) error {
	w := write{value: bytes.Clone(value)}
	if w.value == nil {
		w.value = []byte{}
	}
	if err := checkWrite(l, "put", key, w); err != nil {
		return err
	}
	l.set(key, w)
	return nil
}

func del(l *layer, key string) (bool, error) {
	w := write{del: true}
	if err := checkWrite(l, "delete", key, w); err != nil {
		return false, err
	}
	_, existed, err := l.get(key)
	if err != nil {
		return false, err
	}
	l.set(key, w)
	return existed, nil
}

// drop deletes key without reading whether it had a value.
func drop(l *layer, key string) error {
	w := write{del: true}
	if err := checkWrite(l, "delete", key, w); err != nil {
		return err
	}
	l.set(key, w)
	return nil
}

// deleteAll deletes every key it sees, all or none: it finds them first,
// so a deletion that would pass MaxBatchBytes leaves everything as it was.
func deleteAll(l *layer) error {
	var keys []string
	grow := 0
	err := l.scan("", "", false, func(k string, _ []byte) bool {
		keys = append(keys, k)
		grow += l.grows(k, write{del: true})
		return l.total()+grow <= MaxBatchBytes
	})
	if err != nil {
		return err
	}
	if n := l.total() + grow; n > MaxBatchBytes {
		return &LimitError{Err: ErrBatchTooLarge, Op: "delete all", Size: n, Limit: MaxBatchBytes}
	}
	for _, k := range keys {
		l.set(k, write{del: true})
	}
	return nil
}
