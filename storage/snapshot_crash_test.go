package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// installFixture is a receiver with a replica of shard that has applied
// up to 10, a sender whose replica is at 42, and the snapshot file of the
// sender's shard already received.
type installFixture struct {
	shard     int
	objs      []string
	other     string
	src, dst  *Store
	dstDir    string
	path      string
	meta      *raftpb.SnapshotMetadata
	hard      *raftpb.HardState
	wantPairs map[string][]KV
}

func newInstallFixture(t *testing.T) *installFixture {
	t.Helper()
	const shard = 9
	f := &installFixture{shard: shard, dstDir: t.TempDir(), wantPairs: map[string][]KV{}}
	f.src = openTestStore(t, t.TempDir())
	t.Cleanup(func() { f.src.Close() })
	f.dst = openTestStore(t, f.dstDir)
	f.objs = shardObjects(t, shard, 3)
	f.other = shardObjects(t, shard+1, 1)[0]
	for i, o := range f.objs {
		for j := 0; j < 50; j++ {
			if err := f.src.Apply(o, []Op{{Key: key(uint64(j)), Value: bytes.Repeat([]byte{byte(i + 1)}, 64)}}); err != nil {
				t.Fatal(err)
			}
		}
		pairs, err := f.src.List(o, nil, nil, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		f.wantPairs[o] = pairs
	}
	// The receiver's replica as of index 10: data, log, Raft state.
	b := f.dst.NewBatch()
	if err := b.ApplyOps(f.objs[0], []Op{{Key: key(999), Value: []byte("stale")}}); err != nil {
		t.Fatal(err)
	}
	if err := b.ApplyOps(f.other, []Op{{Key: key(1), Value: []byte("keep")}}); err != nil {
		t.Fatal(err)
	}
	var ents []*raftpb.Entry
	for i := uint64(8); i <= 12; i++ {
		ents = append(ents, &raftpb.Entry{Index: new(i), Term: new(uint64(2)), Data: []byte("e")})
	}
	if err := b.Append(shard, ents, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.SetHardState(shard, &raftpb.HardState{Term: new(uint64(2)), Commit: new(uint64(10))}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetApplied(shard, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.SetConfState(shard, &raftpb.ConfState{Voters: []uint64{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	f.path = copyShard(t, f.src, f.dst, shard)
	f.meta = &raftpb.SnapshotMetadata{Index: new(uint64(42)), Term: new(uint64(3)),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}
	f.hard = &raftpb.HardState{Term: new(uint64(3)), Commit: new(uint64(42))}
	return f
}

// state reports whether the receiver's shard is entirely as before the
// install ("before"), entirely installed ("installed"), or neither (the
// returned string then says what is wrong).
func (f *installFixture) state(t *testing.T) string {
	t.Helper()
	st, found, err := f.dst.LoadRaft(f.shard)
	if err != nil || !found {
		t.Fatalf("load raft state: %v (found %v)", err, found)
	}
	if v, ok, err := f.dst.Get(f.other, key(1)); err != nil || !ok || string(v) != "keep" {
		t.Fatalf("another shard's data was touched: %q %v %v", v, ok, err)
	}
	counts := map[string]int{}
	stale := false
	for _, o := range f.objs {
		got, err := f.dst.List(o, nil, nil, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range got {
			if bytes.Equal(kv.Key, key(999)) {
				stale = true
				continue
			}
			counts[o]++
		}
	}
	switch {
	case st.Applied == 10 && st.Hard.GetCommit() == 10 && len(st.Entries) == 5 &&
		len(st.Conf.GetVoters()) == 2 && stale && len(counts) == 0:
		return "before"
	case st.Applied == 42 && st.Hard.GetCommit() == 42 && st.Hard.GetTerm() == 3 && len(st.Entries) == 0 &&
		st.Snap.GetIndex() == 42 && len(st.Conf.GetVoters()) == 3 && !stale:
		for _, o := range f.objs {
			got, _ := f.dst.List(o, nil, nil, 0, false)
			want := f.wantPairs[o]
			if len(got) != len(want) {
				return fmt.Sprintf("installed Raft state with %d pairs of %s, want %d", len(got), o, len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Value, want[i].Value) {
					return "installed Raft state with a differing pair in " + o
				}
			}
		}
		return "installed"
	}
	return fmt.Sprintf("torn: applied %d, commit %d, %d log entries, stale key present %v, %d objects with data",
		st.Applied, st.Hard.GetCommit(), len(st.Entries), stale, len(counts))
}

// A crash at any step of a snapshot install leaves the shard either as it
// was or installed, never at the snapshot's applied index without its
// data. The crash is the worst one the disk allows: the install stops at a
// step boundary, and the received file is gone when the node comes back
// (its directory entry was never synced, or an operator cleaned up).
func TestSnapshotInstallIsAtomicAcrossCrashes(t *testing.T) {
	for _, lose := range []bool{false, true} {
		// Every loop ends: an install has a handful of steps.
		for step := 0; step < 16; step++ {
			f := newInstallFixture(t)
			if got := f.state(t); got != "before" {
				t.Fatalf("fixture: %s", got)
			}
			boundary := 0
			f.dst.crashHere = func() bool { boundary++; return boundary > step }
			err := f.dst.InstallSnapshot(f.shard, f.meta, f.hard, f.path)
			crashed := errors.Is(err, errCrashed)
			if err != nil && !crashed {
				t.Fatalf("install: %v", err)
			}
			f.dst.Close()
			if lose {
				os.Remove(f.path)
			}
			var openErr error
			f.dst, openErr = OpenStore(f.dstDir, slog.Default())
			if openErr != nil {
				t.Fatalf("lose file %v, crash after step %d: reopen: %v", lose, step, openErr)
			}
			got := f.state(t)
			f.dst.Close()
			if crashed && got != "before" && got != "installed" {
				t.Fatalf("lose file %v, crash after step %d: shard is %s", lose, step, got)
			}
			if !crashed {
				if got != "installed" {
					t.Fatalf("install returned nil, shard is %s", got)
				}
				break
			}
		}
	}
}
