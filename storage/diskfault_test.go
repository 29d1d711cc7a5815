package storage

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// Once the disk has failed, every later write returns an error that says
// so. Pebble keeps the WAL's write error and panics on the next record
// that crosses a WAL block, holding its commit lock: that panic would kill
// the process from whichever goroutine wrote next (the gossip goroutine
// saving members, say) instead of letting the node stop cleanly, so the
// store must not hand Pebble another write after the first failure.
func TestWritesAfterADiskFailureReturnErrors(t *testing.T) {
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op, _ string) error {
		if full.Load() && op.OpKind() == errorfs.OpKindWrite {
			return syscall.ENOSPC
		}
		return nil
	}))
	s, err := OpenStoreOn(fs, "data", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SystemPut("before", []byte("ok")); err != nil {
		t.Fatalf("write before the fault: %v", err)
	}
	full.Store(true)
	// Values larger than a WAL block (32 KiB), so every write crosses one.
	big := make([]byte, 40<<10)
	for i := range 5 {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("write %d after the disk filled panicked: %v", i, r)
				}
			}()
			err := s.SystemPut("after", big)
			if err == nil {
				t.Fatalf("write %d after the disk filled returned no error", i)
			}
			if i > 0 && !errors.Is(err, ErrFailed) {
				t.Fatalf("write %d after the disk filled: %v, want it to wrap ErrFailed", i, err)
			}
		}()
	}
	if err := s.Apply("room", []Op{{Key: []byte("k"), Value: big}}); !errors.Is(err, ErrFailed) {
		t.Fatalf("an object write after the failure: %v, want ErrFailed", err)
	}
	b := s.NewBatch()
	if err := b.b.Set([]byte("x"), big, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); !errors.Is(err, ErrFailed) {
		t.Fatalf("a raft batch after the failure: %v, want ErrFailed", err)
	}
}
