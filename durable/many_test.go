package durable

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestManyKeyForms(t *testing.T) {
	r := newRig(t, &testClass{})
	if err := r.call(func(s *State) error {
		return s.Storage().PutMany(map[string][]byte{"a": []byte("1"), "b": []byte("2"), "c": []byte("3")})
	}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"a": "1", "b": "2", "c": "3"} {
		if v, ok := r.stored(k); !ok || v != want {
			t.Fatalf("committed %s = %q %v, want %q", k, v, ok, want)
		}
	}
	err := r.call(func(s *State) error {
		st := s.Storage()
		st.Put("d", []byte("4")) // the event's own write is seen
		got, err := st.GetMany([]string{"a", "d", "missing"})
		if err != nil || len(got) != 2 || string(got["a"]) != "1" || string(got["d"]) != "4" {
			return fmt.Errorf("GetMany: %q %v; want a=1 d=4 and no missing", got, err)
		}
		if n, err := st.DeleteMany([]string{"a", "b", "missing", "a"}); err != nil || n != 2 {
			return fmt.Errorf("DeleteMany: %d %v; want 2 (a twice counts once)", n, err)
		}
		if got, _ := st.GetMany([]string{"a", "b", "c"}); len(got) != 1 || string(got["c"]) != "3" {
			return fmt.Errorf("after DeleteMany: %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.stored("a"); ok {
		t.Fatal("a still committed after DeleteMany")
	}

	tooMany := make([]string, MaxKeysPerCall+1)
	tooManyEntries := map[string][]byte{}
	for i := range tooMany {
		tooMany[i] = fmt.Sprint("k", i)
		tooManyEntries[tooMany[i]] = nil
	}
	for _, tt := range []struct {
		name string
		op   func(st *Storage) error
		want error
	}{
		{"get of too many keys", func(st *Storage) error { _, err := st.GetMany(tooMany); return err }, ErrTooManyKeys},
		{"put of too many keys", func(st *Storage) error { return st.PutMany(tooManyEntries) }, ErrTooManyKeys},
		{"delete of too many keys", func(st *Storage) error { _, err := st.DeleteMany(tooMany); return err }, ErrTooManyKeys},
		{"get of a key too large", func(st *Storage) error {
			_, err := st.GetMany([]string{"c", strings.Repeat("k", MaxKeySize+1)})
			return err
		}, ErrKeyTooLarge},
		{"put with one value too large", func(st *Storage) error {
			return st.PutMany(map[string][]byte{"c": []byte("changed"), "z": make([]byte, MaxValueSize+1)})
		}, ErrValueTooLarge},
		{"delete with one key too large", func(st *Storage) error {
			_, err := st.DeleteMany([]string{"c", strings.Repeat("k", MaxKeySize+1)})
			return err
		}, ErrKeyTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := r.call(func(s *State) error {
				st := s.Storage()
				st.Put("earlier", []byte(tt.name))
				err := tt.op(st)
				var le *LimitError
				if !errors.Is(err, tt.want) || !errors.As(err, &le) {
					return fmt.Errorf("got %v, want a LimitError of %v", err, tt.want)
				}
				if v, ok, _ := st.Get("c"); !ok || string(v) != "3" {
					return fmt.Errorf("the refused call changed c: %q %v", v, ok)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// The refusal changed nothing, and the event's earlier write stands.
			if v, ok := r.stored("earlier"); !ok || v != tt.name {
				t.Fatalf("the event's earlier write: %q %v", v, ok)
			}
			if v, ok := r.stored("c"); !ok || v != "3" {
				t.Fatalf("committed c = %q %v after a refused call", v, ok)
			}
		})
	}

	// In a transaction that fails, the many-key writes go with it.
	err = r.call(func(s *State) error {
		rolled := errors.New("roll back")
		err := s.Storage().Transaction(func(tx *Txn) error {
			if err := tx.PutMany(map[string][]byte{"t1": []byte("x"), "t2": []byte("y")}); err != nil {
				return err
			}
			if n, err := tx.DeleteMany([]string{"c"}); err != nil || n != 1 {
				return fmt.Errorf("DeleteMany in a txn: %d %v", n, err)
			}
			if got, err := tx.GetMany([]string{"t1", "c"}); err != nil || len(got) != 1 {
				return fmt.Errorf("GetMany in a txn: %q %v", got, err)
			}
			return rolled
		})
		if !errors.Is(err, rolled) {
			return fmt.Errorf("transaction: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.stored("t1"); ok {
		t.Fatal("a rolled back PutMany was committed")
	}
	if v, ok := r.stored("c"); !ok || v != "3" {
		t.Fatalf("a rolled back DeleteMany deleted c: %q %v", v, ok)
	}
}
