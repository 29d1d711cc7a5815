package storage

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
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
	dstFS     vfs.FS
	path      string
	meta      *raftpb.SnapshotMetadata
	hard      *raftpb.HardState
	wantPairs map[string][]KV
}

// installIdentity is the replica identity the fixture's installs write;
// the receiver has none before.
var installIdentity = ReplicaIdentity{Self: 7, Set: []byte("replica set as of 42")}

func newInstallFixture(t *testing.T) *installFixture {
	t.Helper()
	f := newReplicaFixture(t, vfs.Default, t.TempDir())
	f.path = copyShard(t, f.src, f.dst, f.shard)
	return f
}

// newReplicaFixture is an installFixture whose receiver, on fs in dir, has
// not received the snapshot yet.
func newReplicaFixture(t *testing.T, fs vfs.FS, dir string) *installFixture {
	t.Helper()
	const shard = 9
	f := &installFixture{shard: shard, dstDir: dir, dstFS: fs, wantPairs: map[string][]KV{}}
	f.src = openTestStore(t, t.TempDir())
	t.Cleanup(func() { f.src.Close() })
	f.reopen(t)
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
	f.meta = &raftpb.SnapshotMetadata{Index: new(uint64(42)), Term: new(uint64(3)),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}
	f.hard = &raftpb.HardState{Term: new(uint64(3)), Commit: new(uint64(42))}
	return f
}

func (f *installFixture) reopen(t *testing.T) {
	t.Helper()
	var err error
	if f.dst, err = OpenStoreOn(f.dstFS, f.dstDir, slog.Default()); err != nil {
		t.Fatalf("open the receiver's store: %v", err)
	}
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
	self, set, err := f.dst.ReplicaIdentity(f.shard)
	if err != nil {
		t.Fatal(err)
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
		len(st.Conf.GetVoters()) == 2 && stale && len(counts) == 0 && self == 0 && set == nil:
		return "before"
	case st.Applied == 42 && st.Hard.GetCommit() == 42 && st.Hard.GetTerm() == 3 && len(st.Entries) == 0 &&
		st.Snap.GetIndex() == 42 && len(st.Conf.GetVoters()) == 3 && !stale &&
		self == installIdentity.Self && bytes.Equal(set, installIdentity.Set):
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
			err := f.dst.InstallSnapshot(f.shard, f.meta, f.hard, installIdentity, f.path)
			crashed := errors.Is(err, errCrashed)
			if err != nil && !crashed {
				t.Fatalf("install: %v", err)
			}
			f.dst.Close()
			if lose {
				os.Remove(f.path)
			}
			f.reopen(t)
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

// maxPowerLossPoints bounds the crash points tried: receiving and
// installing a snapshot syncs a few dozen times at most.
const maxPowerLossPoints = 80

// A power loss after any sync of receiving and installing a snapshot
// loses only what was not synced, directory entries included (a strict
// in-memory FS keeps exactly what was synced). After each the shard is as
// it was or installed; once Finish has returned its file is on disk; once
// InstallSnapshot has returned the install is.
func TestSnapshotInstallSurvivesPowerLossAtEverySync(t *testing.T) {
	for point := 0; point < maxPowerLossPoints; point++ {
		mem := vfs.NewStrictMem()
		var armed atomic.Bool
		var syncs atomic.Int64
		fs := &syncCountingFS{FS: mem, onSync: func() {
			// From the sync past the crash point on, nothing is durable.
			if armed.Load() && syncs.Add(1) > int64(point) {
				mem.SetIgnoreSyncs(true)
			}
		}}
		f := newReplicaFixture(t, fs, "/node/data")
		armed.Store(true)
		file, err := f.dst.NewSnapshotFile(f.shard)
		if err != nil {
			t.Fatal(err)
		}
		r, err := f.src.ReadShard(f.shard)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Scan(func(k, v []byte) error { return file.Add(k, v) }); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if f.path, err = file.Finish(); err != nil {
			t.Fatal(err)
		}
		finished := syncs.Load() <= int64(point)
		if err := f.dst.InstallSnapshot(f.shard, f.meta, f.hard, installIdentity, f.path); err != nil {
			t.Fatal(err)
		}
		installed := syncs.Load() <= int64(point)
		armed.Store(false)
		mem.SetIgnoreSyncs(true) // the crash: nothing from here on lasts
		f.dst.Close()
		mem.ResetToSyncedState()
		mem.SetIgnoreSyncs(false)

		if finished && !installed {
			// Nothing but the install could have removed it.
			if st, err := mem.Stat(f.path); err != nil || st.Size() == 0 {
				t.Fatalf("power loss after %d syncs: Finish returned, then the file is gone: %v", point, err)
			}
		}
		f.reopen(t)
		got := f.state(t)
		f.dst.Close()
		if got != "before" && got != "installed" {
			t.Fatalf("power loss after %d syncs: shard is %s", point, got)
		}
		if installed {
			if got != "installed" {
				t.Fatalf("InstallSnapshot returned with all its syncs done, then the shard is %s", got)
			}
			return
		}
	}
	t.Fatalf("receiving and installing a snapshot took more than %d syncs", maxPowerLossPoints)
}

// syncCountingFS calls onSync before every sync of a file or dir, whichever
// of Sync, SyncData and SyncTo Pebble uses (the WAL uses the latter two).
// FS and files are used by pointer: Pebble compares them, and a func field
// makes the structs uncomparable.
type syncCountingFS struct {
	vfs.FS
	onSync func()
}

type syncCountingFile struct {
	vfs.File
	onSync func()
}

func (f *syncCountingFile) Sync() error     { f.onSync(); return f.File.Sync() }
func (f *syncCountingFile) SyncData() error { f.onSync(); return f.File.SyncData() }
func (f *syncCountingFile) SyncTo(n int64) (bool, error) {
	f.onSync()
	return f.File.SyncTo(n)
}

func (fs *syncCountingFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &syncCountingFile{File: f, onSync: fs.onSync}, nil
}

func (fs *syncCountingFS) Create(name string) (vfs.File, error)  { return fs.wrap(fs.FS.Create(name)) }
func (fs *syncCountingFS) OpenDir(name string) (vfs.File, error) { return fs.wrap(fs.FS.OpenDir(name)) }
func (fs *syncCountingFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.Open(name, opts...))
}
func (fs *syncCountingFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return fs.wrap(fs.FS.OpenReadWrite(name, opts...))
}
func (fs *syncCountingFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	return fs.wrap(fs.FS.ReuseForWrite(oldname, newname))
}
