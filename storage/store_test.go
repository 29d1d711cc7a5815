package storage

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func openTestStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Objects see only their own keys, ranges and reverse listing work, and
// everything Apply returned for is there after a reopen.
func TestStoreObjectsAreIsolatedAndDurable(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	for i := uint64(1); i <= 10; i++ {
		if err := s.Apply("room", []Op{{Key: key(i), Value: []byte(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	// "room2" shares a prefix with "room" but must not leak into it.
	if err := s.Apply("room2", []Op{{Key: key(1), Value: []byte("other")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("room", []Op{{Key: key(10), Delete: true}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTestStore(t, dir)
	defer s.Close()
	all, err := s.List("room", nil, nil, 0, false)
	if err != nil || len(all) != 9 {
		t.Fatalf("list: %d pairs, %v; want 9", len(all), err)
	}
	newest, err := s.List("room", key(1), key(100), 3, true)
	if err != nil || len(newest) != 3 || string(newest[0].Value) != "9" || string(newest[2].Value) != "7" {
		t.Fatalf("reverse list: %v %v", newest, err)
	}
	v, ok, err := s.Get("room2", key(1))
	if err != nil || !ok || string(v) != "other" {
		t.Fatalf("get room2: %q %v %v", v, ok, err)
	}
	if _, ok, _ := s.Get("room", key(10)); ok {
		t.Fatal("deleted key is back")
	}
}

// BenchmarkApplySync measures one synced batch commit of a 10-message batch.
func BenchmarkApplySync(b *testing.B) {
	s := openTestStore(b, b.TempDir())
	defer s.Close()
	val := make([]byte, 200)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ops := make([]Op, 10)
		for j := range ops {
			ops[j] = Op{Key: key(uint64(i*10 + j)), Value: val}
		}
		if err := s.Apply("bench", ops); err != nil {
			b.Fatal(err)
		}
	}
}

func key(i uint64) []byte { return []byte(fmt.Sprintf("m%020d", i)) }

// Point reads of absent keys (dedupe lookups, guards) are answered by the
// sstables' bloom filters without reading a block.
func TestStoreUsesBloomFilters(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	for i := uint64(2); i <= 2000; i += 2 {
		if err := s.Apply("room", []Op{{Key: key(i), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1001); i < 1200; i += 2 { // among the stored keys, none of them
		if _, found, err := s.Get("room", key(i)); err != nil || found {
			t.Fatalf("absent key %d: found %v, %v", i, found, err)
		}
	}
	if m := s.db.Metrics(); m.Filter.Hits < 90 {
		t.Fatalf("the bloom filter ruled out %d of 100 absent keys (misses %d): no filter in use", m.Filter.Hits, m.Filter.Misses)
	}
}

// BenchmarkApplyObjectName applies what a hot room's Raft round applies
// (messages of three keys each: the message, its dedupe record, its
// socket's number; batches of 50, as the leader's apply batch holds them
// with the object's version) under a short object name, as the built-in
// chat's rooms had, and under an object API storage name, 77 bytes before
// every key. Every key goes into the batch's index and the memtable's
// skiplist; how much the name costs there is what shortening it in a new
// store format would buy. ns/op is per message.
func BenchmarkApplyObjectName(b *testing.B) {
	for _, c := range []struct{ name, object string }{
		{"short", "room-1"},
		{"object-api", "\x01do/ChatRoom/" + strings.Repeat("5e", 32)},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := openTestStore(b, b.TempDir())
			defer s.Close()
			val := make([]byte, 120)
			const perBatch = 50
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += perBatch {
				ab := s.NewApplyBatch(0)
				for j := i; j < min(i+perBatch, b.N); j++ {
					ops := []Op{
						{Key: key(uint64(j)), Value: val},
						{Key: fmt.Appendf(nil, "d/user-%d\x00client-key-0123456789\x00m%d", j%10, j), Value: val[:16]},
						{Key: fmt.Appendf(nil, "s/g1.socket-%d#n", j%10), Value: val[:8]},
					}
					if err := ab.ApplyOps(c.object, ops); err != nil {
						b.Fatal(err)
					}
				}
				if err := ab.SetVersion(c.object, uint64(i)); err != nil {
					b.Fatal(err)
				}
				if err := ab.Commit(false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
