package storage

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"hellochat/partition"
)

// shardObjects returns n objects of one shard.
func shardObjects(t *testing.T, shard, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		name := fmt.Sprintf("room-%d", i)
		if partition.Of(name) == shard {
			out = append(out, name)
		}
		if i > 100000 {
			t.Fatal("no objects for shard")
		}
	}
	return out
}

// copyShard streams one store's shard into a snapshot file of another, as
// the snapshot stream does.
func copyShard(t *testing.T, from, to *Store, shard int) string {
	t.Helper()
	r, err := from.ReadShard(shard)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := to.NewSnapshotFile(shard)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Scan(func(k, v []byte) error { return f.Add(k, v) }); err != nil {
		t.Fatal(err)
	}
	path, err := f.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// A snapshot replaces the shard's data on the receiver, leaves other shards
// alone, and stays after a reopen and a full compaction (the file's range
// deletion must not delete the file's own keys when they meet).
func TestSnapshotInstallReplacesTheShard(t *testing.T) {
	const shard = 7
	src := openTestStore(t, t.TempDir())
	dstDir := t.TempDir()
	dst := openTestStore(t, dstDir)
	objs := shardObjects(t, shard, 3)
	other := shardObjects(t, shard+1, 1)[0]
	for i, o := range objs {
		for j := 0; j < 100; j++ {
			if err := src.Apply(o, []Op{{Key: key(uint64(j)), Value: bytes.Repeat([]byte{byte(i)}, 100)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The receiver holds stale data of the shard, and data of another.
	if err := dst.Apply(objs[0], []Op{{Key: key(999), Value: []byte("stale")}}); err != nil {
		t.Fatal(err)
	}
	if err := dst.Apply(other, []Op{{Key: key(1), Value: []byte("keep")}}); err != nil {
		t.Fatal(err)
	}
	path := copyShard(t, src, dst, shard)
	meta := &raftpb.SnapshotMetadata{Index: new(uint64(42)), Term: new(uint64(3)),
		ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}
	if err := dst.InstallSnapshot(shard, meta, &raftpb.HardState{Term: new(uint64(3)), Commit: new(uint64(42))}, ReplicaIdentity{}, path); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	dst = openTestStore(t, dstDir)
	defer dst.Close()
	if err := dst.db.Compact([]byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}

	for _, o := range objs {
		want, _ := src.List(o, nil, nil, 0, false)
		got, err := dst.List(o, nil, nil, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(got) != 100 {
			t.Fatalf("%s: %d pairs after recovery, want %d", o, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Value, want[i].Value) {
				t.Fatalf("%s: pair %d differs", o, i)
			}
		}
	}
	if v, ok, _ := dst.Get(other, key(1)); !ok || string(v) != "keep" {
		t.Fatalf("another shard's data was touched: %q %v", v, ok)
	}
	st, found, err := dst.LoadRaft(shard)
	if err != nil || !found {
		t.Fatal(err, found)
	}
	if st.Applied != 42 || st.Conf.GetVoters()[2] != 3 || st.Hard.GetCommit() != 42 {
		t.Fatalf("raft state after install: applied %d conf %v hard %v", st.Applied, st.Conf, st.Hard)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("snapshot file still there after ingest: %v", err)
	}
}

// Keys outside the shard, or out of order, are refused.
func TestSnapshotFileRefusesForeignKeys(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	f, err := s.NewSnapshotFile(3)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	in := objectKey(shardObjects(t, 3, 1)[0], []byte("b"))
	if err := f.Add(objectKey(shardObjects(t, 4, 1)[0], []byte("a")), nil); err == nil {
		t.Fatal("a key of shard 4 went into a snapshot of shard 3")
	}
	if err := f.Add(in, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.Add(in, nil); err == nil {
		t.Fatal("a repeated key was taken")
	}
}

// A replica installed from an empty shard loses its old data, whether the
// caller streamed zero pairs or passed no file at all.
func TestSnapshotInstallOfAnEmptyShardClearsIt(t *testing.T) {
	const shard = 11
	for _, streamed := range []bool{true, false} {
		s := openTestStore(t, t.TempDir())
		obj := shardObjects(t, shard, 1)[0]
		if err := s.Apply(obj, []Op{{Key: key(1), Value: []byte("old")}}); err != nil {
			t.Fatal(err)
		}
		path := ""
		if streamed {
			f, err := s.NewSnapshotFile(shard)
			if err != nil {
				t.Fatal(err)
			}
			if path, err = f.Finish(); err != nil || path == "" {
				t.Fatalf("finish an empty snapshot: %q, %v", path, err)
			}
		}
		meta := &raftpb.SnapshotMetadata{Index: new(uint64(7)), Term: new(uint64(1))}
		if err := s.InstallSnapshot(shard, meta, nil, ReplicaIdentity{}, path); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.Get(obj, key(1)); err != nil || ok {
			t.Fatalf("streamed %v: old data still there after installing an empty shard (%v)", streamed, err)
		}
		if st, _, err := s.LoadRaft(shard); err != nil || st.Applied != 7 {
			t.Fatalf("streamed %v: applied %d, %v", streamed, st.Applied, err)
		}
		s.Close()
	}
}

// A file of one shard is refused for another: its range deletion would
// clear the wrong shard.
func TestSnapshotInstallRefusesAnotherShardsFile(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	defer s.Close()
	f, err := s.NewSnapshotFile(3)
	if err != nil {
		t.Fatal(err)
	}
	path, err := f.Finish()
	if err != nil {
		t.Fatal(err)
	}
	meta := &raftpb.SnapshotMetadata{Index: new(uint64(7)), Term: new(uint64(1))}
	if err := s.InstallSnapshot(4, meta, nil, ReplicaIdentity{}, path); err == nil {
		t.Fatal("shard 4 was installed from a file of shard 3")
	}
	if _, found, err := s.LoadRaft(4); err != nil || found {
		t.Fatalf("a refused install left Raft state: found %v, %v", found, err)
	}
}

// An install marker an older version left is finished at open: its file is
// ingested if it is there; if it is gone the install counts as done only
// when the shard holds data, and otherwise the store refuses to open
// rather than serve an empty shard at the snapshot's applied index.
func TestLegacyInstallMarkerIsFinishedOrRefused(t *testing.T) {
	const shard = 13
	obj := shardObjects(t, shard, 1)[0]
	for _, tc := range []struct {
		name               string
		keepFile, ingested bool
		wantOpen           bool
	}{
		{"file there", true, false, true},
		{"file gone after its ingest", false, true, true},
		{"file gone before its ingest", false, false, false},
	} {
		dir := t.TempDir()
		s := openTestStore(t, dir)
		f, err := s.NewSnapshotFile(shard)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Add(objectKey(obj, key(1)), []byte("new")); err != nil {
			t.Fatal(err)
		}
		path, err := f.Finish()
		if err != nil {
			t.Fatal(err)
		}
		// What the old first phase left: Raft state at 42 and the marker.
		b := s.NewBatch()
		if err := b.SetApplied(shard, 42); err != nil {
			t.Fatal(err)
		}
		if err := b.b.Set(raftKey(shard, raftInstall), []byte(path), nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		if tc.ingested {
			if err := s.db.Ingest([]string{path}); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		if !tc.keepFile {
			os.Remove(path)
		}
		s, err = OpenStore(dir, slog.Default())
		if !tc.wantOpen {
			if err == nil {
				s.Close()
				t.Fatalf("%s: the store opened with shard %d at applied 42 and no data", tc.name, shard)
			}
			if !strings.Contains(err.Error(), "shard 13") {
				t.Fatalf("%s: the error does not name the shard: %v", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: open: %v", tc.name, err)
		}
		if v, ok, err := s.Get(obj, key(1)); err != nil || !ok || string(v) != "new" {
			t.Fatalf("%s: shard data after open: %q %v %v", tc.name, v, ok, err)
		}
		if _, _, err := s.db.Get(raftKey(shard, raftInstall)); err == nil {
			t.Fatalf("%s: the marker is still there", tc.name)
		}
		s.Close()
	}
}

// Installing a snapshot on a new replica must not flush the memtable: an
// ingest that overlaps it forces a flush while every write of the node
// waits, and the replica's hard state and log are there (it learned the
// leader's term before the snapshot came). Only the data file and the
// marker are ingested; the Raft state goes in a batch.
func TestSnapshotInstallDoesNotFlushTheMemtable(t *testing.T) {
	const shard = 17
	src := openTestStore(t, t.TempDir())
	defer src.Close()
	for i, o := range shardObjects(t, shard, 2) {
		if err := src.Apply(o, []Op{{Key: key(uint64(i)), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	dst := openTestStore(t, t.TempDir())
	defer dst.Close()
	b := dst.NewBatch()
	if err := b.ApplyOps(shardObjects(t, shard+1, 1)[0], []Op{{Key: key(1), Value: []byte("other")}}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetHardState(shard, &raftpb.HardState{Term: new(uint64(3))}); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(shard, []*raftpb.Entry{{Index: new(uint64(1)), Term: new(uint64(1))}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	path := copyShard(t, src, dst, shard)
	flushes := dst.db.Metrics().Flush.Count
	meta := &raftpb.SnapshotMetadata{Index: new(uint64(42)), Term: new(uint64(3))}
	if err := dst.InstallSnapshot(shard, meta, &raftpb.HardState{Term: new(uint64(3)), Commit: new(uint64(42))}, ReplicaIdentity{}, path); err != nil {
		t.Fatal(err)
	}
	if n := dst.db.Metrics().Flush.Count - flushes; n != 0 {
		t.Fatalf("the install flushed the memtable %d times", n)
	}
	if st, _, err := dst.LoadRaft(shard); err != nil || st.Applied != 42 || len(st.Entries) != 0 {
		t.Fatalf("after install: applied %d, %d entries, %v", st.Applied, len(st.Entries), err)
	}
}
