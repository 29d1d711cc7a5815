package durable

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

func keys(kvs []KV) string {
	var ks []string
	for _, kv := range kvs {
		ks = append(ks, kv.Key)
	}
	return strings.Join(ks, ",")
}

func TestReadsSeeTheEventsOwnWrites(t *testing.T) {
	r := newRig(t, &testClass{})
	err := r.call(func(s *State) error {
		st := s.Storage()
		st.Put("a", []byte("1"))
		st.Put("b", []byte("2"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.call(func(s *State) error {
		st := s.Storage()
		if existed, err := st.Delete("a"); err != nil || !existed {
			return fmt.Errorf("delete a: %v %v", existed, err)
		}
		if existed, _ := st.Delete("zz"); existed {
			return errors.New("delete of a missing key says it existed")
		}
		st.Put("c", []byte("3"))
		if _, found, _ := st.Get("a"); found {
			return errors.New("deleted key still read")
		}
		if v, _, _ := st.Get("c"); string(v) != "3" {
			return fmt.Errorf("own write read as %q", v)
		}
		v, _, _ := st.Get("b")
		v[0] = 'X' // the caller's copy: the cache must not change
		if v, _, _ := st.Get("b"); string(v) != "2" {
			return fmt.Errorf("a returned value aliases storage: %q", v)
		}
		l, err := st.List(ListOptions{})
		if err != nil || keys(l) != "b,c" {
			return fmt.Errorf("list %q %v", keys(l), err)
		}
		// Nothing of it is in the store before the event returns.
		if _, ok := r.stored("c"); ok {
			return errors.New("write stored before the event ended")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.stored("a"); ok {
		t.Fatal("deletion not committed")
	}
	if v, _ := r.stored("c"); v != "3" {
		t.Fatal("write not committed")
	}
}

func TestListOptions(t *testing.T) {
	r := newRig(t, &testClass{})
	committed := []string{"a", "b/1", "b/2", "b/3", "b/4", "c", "\xff\xff"}
	err := r.call(func(s *State) error {
		for _, k := range committed {
			if err := s.Storage().Put(k, []byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		opts ListOptions
		want string
	}{
		{ListOptions{}, "a,b/1,b/15,b/2,b/4,c,\xff\xff"},
		{ListOptions{Prefix: "b/"}, "b/1,b/15,b/2,b/4"},
		{ListOptions{Prefix: "b/", Reverse: true, Limit: 2}, "b/4,b/2"},
		{ListOptions{Prefix: "b/", Limit: 2}, "b/1,b/15"},
		{ListOptions{Prefix: "b/", Start: "b/15", End: "b/4"}, "b/15,b/2"},
		{ListOptions{Start: "b/2", Reverse: true}, "\xff\xff,c,b/4,b/2"},
		{ListOptions{End: "b/15", Reverse: true, Limit: 1}, "b/1"},
		{ListOptions{Prefix: "\xff"}, "\xff\xff"},
		{ListOptions{Prefix: "b/", Start: "c"}, ""},
		{ListOptions{Prefix: "zzz"}, ""},
		{ListOptions{Prefix: "b/", StartAfter: "b/15", Limit: 2}, "b/2,b/4"},
		{ListOptions{StartAfter: "b/1", End: "b/2"}, "b/15"},
		{ListOptions{StartAfter: "c"}, "\xff\xff"},
	}
	err = r.call(func(s *State) error {
		if _, err := s.Storage().List(ListOptions{Start: "a", StartAfter: "a"}); err == nil {
			t.Error("List with Start and StartAfter both set: no error")
		}
		// Uncommitted writes merge with committed keys: one added, one
		// deleted, one overwritten.
		s.Storage().Put("b/15", []byte("new"))
		s.Storage().Delete("b/3")
		s.Storage().Put("b/2", []byte("changed"))
		for _, c := range cases {
			got, err := s.Storage().List(c.opts)
			if err != nil {
				return fmt.Errorf("%+v: %v", c.opts, err)
			}
			if keys(got) != c.want {
				t.Errorf("%+v: got %q, want %q", c.opts, keys(got), c.want)
			}
			for _, kv := range got {
				want := kv.Key
				switch kv.Key {
				case "b/15":
					want = "new"
				case "b/2":
					want = "changed"
				}
				if string(kv.Value) != want {
					t.Errorf("%q = %q, want %q", kv.Key, kv.Value, want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTransactionRollsBackOnlyItself(t *testing.T) {
	r := newRig(t, &testClass{})
	abort := errors.New("abort")
	err := r.call(func(s *State) error {
		st := s.Storage()
		st.Put("before", []byte("1"))
		err := st.Transaction(func(tx *Txn) error {
			tx.Put("in-failed", []byte("x"))
			tx.Delete("before")
			if _, found, _ := tx.Get("before"); found {
				return errors.New("txn does not see its own delete")
			}
			if err := st.Put("outside", []byte("x")); !errors.Is(err, ErrTxnOpen) {
				t.Errorf("storage used inside its txn: %v", err)
			}
			return abort
		})
		if !errors.Is(err, abort) {
			return fmt.Errorf("txn error %v", err)
		}
		return st.Transaction(func(tx *Txn) error {
			tx.Put("outer", []byte("1"))
			// A nested failure discards the nested writes only.
			if err := tx.Transaction(func(in *Txn) error {
				in.Put("inner-failed", []byte("x"))
				in.Delete("outer")
				return abort
			}); !errors.Is(err, abort) {
				return fmt.Errorf("nested txn error %v", err)
			}
			if err := tx.Transaction(func(in *Txn) error {
				if _, found, _ := in.Get("outer"); !found {
					return errors.New("nested txn does not see its parent's write")
				}
				return in.Put("inner-ok", []byte("1"))
			}); err != nil {
				return err
			}
			l, err := tx.List(ListOptions{})
			if err != nil || keys(l) != "before,inner-ok,outer" {
				return fmt.Errorf("txn list %q %v", keys(l), err)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"before", "outer", "inner-ok"} {
		if _, ok := r.stored(k); !ok {
			t.Errorf("%s not committed", k)
		}
	}
	for _, k := range []string{"in-failed", "inner-failed"} {
		if _, ok := r.stored(k); ok {
			t.Errorf("%s committed by a rolled back txn", k)
		}
	}
	// An outer failure discards what its nested transactions committed.
	err = r.call(func(s *State) error {
		err := s.Storage().Transaction(func(tx *Txn) error {
			if err := tx.Transaction(func(in *Txn) error { return in.Put("deep", []byte("x")) }); err != nil {
				return err
			}
			return abort
		})
		if !errors.Is(err, abort) {
			return err
		}
		var kept *Txn
		s.Storage().Transaction(func(tx *Txn) error { kept = tx; return nil })
		if err := kept.Put("late", nil); err == nil {
			return errors.New("a finished txn took a write")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.stored("deep"); ok {
		t.Fatal("nested write of a failed txn committed")
	}
}

func TestLimitsRefuseAndKeepWhatWasWritten(t *testing.T) {
	r := newRig(t, &testClass{})
	var limitErr *LimitError
	big := make([]byte, MaxValueSize)
	written := 0
	err := r.call(func(s *State) error {
		st := s.Storage()
		if err := st.Put("ok", []byte("1")); err != nil {
			return err
		}
		long := strings.Repeat("k", MaxKeySize+1)
		if err := st.Put(long, nil); !errors.Is(err, ErrKeyTooLarge) || !errors.As(err, &limitErr) || limitErr.Limit != MaxKeySize {
			t.Errorf("long key: %v", err)
		}
		if _, _, err := st.Get(long); !errors.Is(err, ErrKeyTooLarge) {
			t.Errorf("get of a long key: %v", err)
		}
		if err := st.Put("big", make([]byte, MaxValueSize+1)); !errors.Is(err, ErrValueTooLarge) {
			t.Errorf("big value: %v", err)
		}
		if err := st.Put(strings.Repeat("k", MaxKeySize), nil); err != nil {
			t.Errorf("key of the largest size refused: %v", err)
		}
		// Fill the batch until a put is refused.
		for i := 0; ; i++ {
			err := st.Put(fmt.Sprintf("v%03d", i), big)
			if errors.Is(err, ErrBatchTooLarge) {
				break
			}
			if err != nil || i > 100 {
				return fmt.Errorf("put %d: %v", i, err)
			}
			written++
		}
		// Overwriting a key with a value of the same size adds nothing.
		if err := st.Put("v000", big); err != nil {
			t.Errorf("same-size overwrite refused: %v", err)
		}
		if err := st.Transaction(func(tx *Txn) error { return tx.Put("more", big) }); !errors.Is(err, ErrBatchTooLarge) {
			t.Errorf("txn past the batch limit: %v", err)
		}
		if _, err := st.List(ListOptions{Limit: MaxKeysPerList + 1}); !errors.Is(err, ErrListTooLarge) {
			t.Errorf("list limit: %v", err)
		}
		return nil // the refusals lost nothing: commit what was written
	})
	if err != nil {
		t.Fatal(err)
	}
	if written < 2 || written*MaxValueSize > MaxBatchBytes {
		t.Fatalf("%d values of %d bytes fit a batch of %d", written, MaxValueSize, MaxBatchBytes)
	}
	for i := range written {
		if _, ok := r.stored(fmt.Sprintf("v%03d", i)); !ok {
			t.Fatalf("v%03d lost", i)
		}
	}
	if v, _ := r.stored("ok"); v != "1" {
		t.Fatal("write before the refusals lost")
	}
}

func TestListWithoutLimitRefusesTooManyKeys(t *testing.T) {
	r := newRig(t, &testClass{})
	err := r.call(func(s *State) error {
		for i := range MaxKeysPerList + 1 {
			s.Storage().Put(fmt.Sprintf("k%05d", i), nil)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.call(func(s *State) error {
		if _, err := s.Storage().List(ListOptions{}); !errors.Is(err, ErrListTooLarge) {
			t.Errorf("list of %d keys without a limit: %v", MaxKeysPerList+1, err)
		}
		l, err := s.Storage().List(ListOptions{Limit: MaxKeysPerList})
		if err != nil || len(l) != MaxKeysPerList {
			t.Errorf("list with the largest limit: %d %v", len(l), err)
		}
		s.Storage().Delete("k00000")
		if l, err := s.Storage().List(ListOptions{}); err != nil || len(l) != MaxKeysPerList {
			t.Errorf("list of exactly the limit: %d %v", len(l), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeleteAll(t *testing.T) {
	r := newRig(t, &testClass{})
	at := r.clock.Now().Add(1e12)
	err := r.call(func(s *State) error {
		s.Storage().Put("a", []byte("1"))
		s.Storage().Put("b", []byte("2"))
		return s.Storage().SetAlarm(at)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.call(func(s *State) error {
		s.Storage().Put("c", []byte("3"))
		if err := s.Storage().DeleteAll(); err != nil {
			return err
		}
		s.Storage().Put("d", []byte("4"))
		l, err := s.Storage().List(ListOptions{})
		if err != nil || keys(l) != "d" {
			return fmt.Errorf("after DeleteAll: %q %v", keys(l), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": false, "d": true} {
		if _, ok := r.stored(k); ok != want {
			t.Errorf("%s stored: %v", k, ok)
		}
	}
	if _, ok, _ := r.c.Get(r.id.StorageObject(), alarmKey); ok {
		t.Error("DeleteAll left the alarm (Cloudflare's deleteAll deletes it since 2026-02-24)")
	}

	// A SetAlarm after DeleteAll in the same event stands; a transaction's
	// DeleteAll takes the alarm only if the transaction succeeds, nested
	// in another that does too.
	alarmStored := func() bool {
		_, ok, _ := r.c.Get(r.id.StorageObject(), alarmKey)
		return ok
	}
	if err := r.call(func(s *State) error {
		if err := s.Storage().DeleteAll(); err != nil {
			return err
		}
		return s.Storage().SetAlarm(at)
	}); err != nil || !alarmStored() {
		t.Fatalf("SetAlarm after DeleteAll: %v, alarm stored %v", err, alarmStored())
	}
	rolled := errors.New("roll back")
	for _, tt := range []struct {
		name      string
		inner     error // what the nested transaction returns
		outer     error
		wantAlarm bool
	}{
		{"inner rolled back", rolled, nil, true},
		{"outer rolled back", nil, rolled, true},
		{"both succeed", nil, nil, false},
	} {
		err := r.call(func(s *State) error {
			err := s.Storage().Transaction(func(tx *Txn) error {
				err := tx.Transaction(func(inner *Txn) error {
					if err := inner.DeleteAll(); err != nil {
						return err
					}
					return tt.inner
				})
				if err != nil && !errors.Is(err, rolled) {
					return err
				}
				return tt.outer
			})
			if err != nil && !errors.Is(err, rolled) {
				return err
			}
			return nil
		})
		if err != nil || alarmStored() != tt.wantAlarm {
			t.Fatalf("%s: %v, alarm stored %v, want %v", tt.name, err, alarmStored(), tt.wantAlarm)
		}
	}
}

func TestStorageOutsideAnEvent(t *testing.T) {
	r := newRig(t, &testClass{})
	var kept *State
	if err := r.call(func(s *State) error { kept = s; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.Storage().Put("k", nil); !errors.Is(err, ErrNoEvent) {
		t.Fatalf("put after the event: %v", err)
	}
	if err := kept.Send("x", nil); !errors.Is(err, ErrNoEvent) {
		t.Fatalf("send after the event: %v", err)
	}
}

func TestUserKeysNeverReachTheStoresOwn(t *testing.T) {
	r := newRig(t, &testClass{})
	// A key starting with 0x00 is the store's own; the user's gets a
	// prefix, so it is stored, and MemStore (like the shards) would refuse
	// a batch that wrote one.
	if err := r.call(func(s *State) error { return s.Storage().Put("\x00v", []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	if err := r.call(func(s *State) error { return s.Storage().Put("", []byte("empty")) }); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.stored("\x00v"); v != "x" {
		t.Fatal("key starting with 0x00 not stored")
	}
	if v, _ := r.stored(""); v != "empty" {
		t.Fatal("empty key not stored")
	}
}

// countingReader counts the reads of the store under an actor.
type countingReader struct {
	Reader
	n atomic.Int64
}

func (c *countingReader) Get(object string, key []byte) ([]byte, bool, error) {
	c.n.Add(1)
	return c.Reader.Get(object, key)
}

func (c *countingReader) Scan(object string, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	c.n.Add(1)
	return c.Reader.Scan(object, start, end, reverse, fn)
}

// Drop deletes as Delete does, committed keys and the event's own, and an
// absent key is no error; it reads nothing of the store to do it.
func TestDropDeletesWithoutReading(t *testing.T) {
	r := newRig(t, &testClass{})
	if err := r.call(func(s *State) error {
		for _, k := range []string{"a", "b"} {
			if err := s.Storage().Put(k, []byte(k)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A fresh actor over the same store, counting what it reads.
	reads := &countingReader{Reader: r.c}
	obj := &testClass{}
	a, err := Start(r.id, func() Object { return obj }, Config{Reader: reads, Committer: r.c, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	obj.call = func(_ context.Context, s *State, _ string, _ []byte) ([]byte, error) {
		before := reads.n.Load()
		if err := s.Storage().Put("c", []byte("c")); err != nil {
			return nil, err
		}
		for _, k := range []string{"a", "c", "never"} {
			if err := s.Storage().Drop(k); err != nil {
				return nil, err
			}
		}
		if n := reads.n.Load() - before; n != 0 {
			return nil, fmt.Errorf("Drop read the store %d times", n)
		}
		return nil, nil
	}
	if _, err := a.Call(context.Background(), "drop", nil); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]bool{"a": false, "b": true, "c": false} {
		if _, ok := r.stored(k); ok != want {
			t.Errorf("%s stored: %v, want %v", k, ok, want)
		}
	}
}
