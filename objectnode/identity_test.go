package objectnode

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"hellochat/storage"
)

// Each start's incarnation is above the last one saved, even when the
// clock is behind it (a node whose clock went back still supersedes its
// older self in gossip), and it is on disk before the node gossips.
func TestIncarnationOnlyGrows(t *testing.T) {
	dir := t.TempDir()
	open := func() *storage.Store {
		st, err := storage.OpenStore(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	id, err := loadIdentity(st)
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(time.Hour).UnixNano() // a start under a clock that ran fast
	id.Incarnation = ahead
	if err := nextIncarnation(st, &id); err != nil {
		t.Fatal(err)
	}
	if id.Incarnation != ahead+1 {
		t.Fatalf("incarnation %d, want %d", id.Incarnation, ahead+1)
	}
	st.Close()

	st = open()
	defer st.Close()
	again, err := loadIdentity(st)
	if err != nil {
		t.Fatal(err)
	}
	if again.Incarnation != ahead+1 {
		t.Fatalf("saved incarnation %d, want %d", again.Incarnation, ahead+1)
	}
	if err := nextIncarnation(st, &again); err != nil || again.Incarnation != ahead+2 {
		t.Fatalf("next start: %d (%v), want %d", again.Incarnation, err, ahead+2)
	}
}
