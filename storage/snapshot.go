package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/sstable"
	"github.com/cockroachdb/pebble/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Shard snapshots move a whole shard replica between nodes with bounded
// memory on both sides. The sender reads one consistent Pebble snapshot in
// key order; the receiver writes what arrives into an sstable file and, once
// Raft accepts the snapshot, ingests that file in place of the shard's data.
//
// Installing is one Pebble ingest of two sstables, which Pebble applies as
// one synced manifest (or WAL) record: all of it or none of it survives a
// crash. The data file opens with a range deletion of the whole shard, so
// the old data goes in the same step the new arrives (a range deletion in
// an ingested file removes only older keys, never the file's own). The
// second file, written at install time, holds the Raft state: it deletes
// the log and sets the snapshot metadata, configuration, hard state and
// applied index. Nothing is ever recorded as installed before the data is
// in, so a restart never finds an applied index without its data.
//
// Both files are durable (content and directory entry synced) before the
// ingest may rely on them. Files left in the snapshot dir at open belong to
// no install and are removed: Raft asks for the snapshot again.

// snapshotDir is where incoming snapshot files wait, inside the data dir.
const snapshotDir = "snapshots"

// ShardReader reads one shard's data as of one applied index.
type ShardReader struct {
	snap    *pebble.Snapshot
	shard   int
	applied uint64
}

// ReadShard pins the shard's current state. The caller must be the only
// writer of the shard (the Raft loop), so applied matches the data.
func (s *Store) ReadShard(shard int) (*ShardReader, error) {
	snap := s.db.NewSnapshot()
	r := &ShardReader{snap: snap, shard: shard}
	v, closer, err := snap.Get(raftKey(shard, raftApplied))
	if err == nil {
		r.applied = binary.BigEndian.Uint64(v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		snap.Close()
		return nil, fmt.Errorf("storage: shard %d applied index: %w", shard, err)
	}
	return r, nil
}

// Applied is the index the data reflects.
func (r *ShardReader) Applied() uint64 { return r.applied }

// Scan calls fn with every key of the shard (full store keys) in order;
// key and value are valid only during the call.
func (r *ShardReader) Scan(fn func(key, value []byte) error) error {
	lower, upper := shardRange(r.shard)
	it, err := r.snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: read shard %d: %w", r.shard, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Error()
}

// Close releases the pinned state.
func (r *ShardReader) Close() error { return r.snap.Close() }

// SnapshotFile is an incoming shard snapshot being written to disk.
type SnapshotFile struct {
	fs      vfs.FS
	dir     string
	shard   int
	path    string
	w       *sstable.Writer
	last    []byte
	entries int
}

// NewSnapshotFile starts a file for an incoming snapshot of shard.
func (s *Store) NewSnapshotFile(shard int) (*SnapshotFile, error) {
	w, path, err := s.newSnapshotSST(fmt.Sprintf("shard%d-", shard))
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot file of shard %d: %w", shard, err)
	}
	f := &SnapshotFile{fs: s.opts.FS, dir: s.snapshotDir(), shard: shard, path: path, w: w}
	// The old data of the replica goes in the ingest that brings the new:
	// deleting it in a batch first would leave a window (and a crash
	// point) in which the shard has neither.
	lower, upper := shardRange(shard)
	if err := w.DeleteRange(lower, upper); err != nil {
		f.Abort()
		return nil, fmt.Errorf("storage: snapshot file of shard %d: %w", shard, err)
	}
	return f, nil
}

func (s *Store) snapshotDir() string { return s.opts.FS.PathJoin(s.dir, snapshotDir) }

// newSnapshotSST creates a file in the snapshot dir (creating the dir, and
// making it durable, the first time) and an sstable writer on it.
func (s *Store) newSnapshotSST(prefix string) (*sstable.Writer, string, error) {
	fs, dir := s.opts.FS, s.snapshotDir()
	if err := mkdirDurable(fs, dir); err != nil {
		return nil, "", err
	}
	// Names only need to be unique among this process's files: open
	// removes every file an earlier run left.
	path := fs.PathJoin(dir, fmt.Sprintf("%s%d.sst", prefix, s.snapSeq.Add(1)))
	vf, err := fs.Create(path)
	if err != nil {
		return nil, "", err
	}
	opts := s.opts.MakeWriterOptions(0, s.db.FormatMajorVersion().MaxTableFormat())
	return sstable.NewWriter(objstorageprovider.NewFileWritable(vf), opts), path, nil
}

// Add appends one pair; keys must belong to the shard and come in order.
func (f *SnapshotFile) Add(key, value []byte) error {
	lower, upper := shardRange(f.shard)
	if bytes.Compare(key, lower) < 0 || bytes.Compare(key, upper) >= 0 {
		return fmt.Errorf("storage: snapshot key %x outside shard %d", key, f.shard)
	}
	if f.last != nil && bytes.Compare(key, f.last) <= 0 {
		return fmt.Errorf("storage: snapshot key %x out of order", key)
	}
	f.last = append(f.last[:0], key...)
	f.entries++
	return f.w.Set(key, value)
}

// Finish completes the file, makes it durable and returns its path. An
// empty shard has a file too: installing it deletes the replica's data.
func (f *SnapshotFile) Finish() (string, error) {
	// Closing the writer syncs the file's content.
	if err := f.w.Close(); err != nil {
		f.fs.Remove(f.path)
		return "", fmt.Errorf("storage: finish snapshot file of shard %d: %w", f.shard, err)
	}
	if err := syncDir(f.fs, f.dir); err != nil {
		f.fs.Remove(f.path)
		return "", fmt.Errorf("storage: finish snapshot file of shard %d: %w", f.shard, err)
	}
	return f.path, nil
}

// Abort drops an unfinished file.
func (f *SnapshotFile) Abort() {
	f.w.Close()
	f.fs.Remove(f.path)
}

// RemoveSnapshotFile drops a finished file Raft did not use. An ingested
// file is already gone; removing it again is harmless.
func (s *Store) RemoveSnapshotFile(path string) {
	if path != "" {
		s.opts.FS.Remove(path)
	}
}

// InstallSnapshot replaces a shard replica's data, log and Raft state with a
// snapshot whose data is in file (see SnapshotFile; "" for an empty shard).
// hs is written in the same step: its commit index is the snapshot's. When
// it returns nil the install is durable; when the node crashes before, the
// replica is as it was.
func (s *Store) InstallSnapshot(shard int, meta *raftpb.SnapshotMetadata, hs *raftpb.HardState, file string) error {
	if file == "" {
		f, err := s.NewSnapshotFile(shard)
		if err != nil {
			return err
		}
		if file, err = f.Finish(); err != nil {
			return err
		}
	} else if !strings.HasPrefix(s.opts.FS.PathBase(file), fmt.Sprintf("shard%d-", shard)) {
		// Its range deletion would clear another shard.
		return fmt.Errorf("storage: install snapshot of shard %d from %s, a file of another shard", shard, file)
	}
	raftFile, err := s.writeRaftFile(shard, meta, hs)
	if err != nil {
		return fmt.Errorf("storage: install snapshot of shard %d: %w", shard, err)
	}
	if s.crashed() {
		return errCrashed
	}
	// Pebble links both files in, records them in one synced edit, then
	// removes the originals.
	if err := durable(func() error { return s.db.Ingest([]string{file, raftFile}) }); err != nil {
		s.opts.FS.Remove(raftFile)
		return fmt.Errorf("storage: install snapshot of shard %d: ingest: %w", shard, err)
	}
	return nil
}

// errCrashed is what an install a test stopped returns.
var errCrashed = errors.New("storage: install stopped by a test crash point")

func (s *Store) crashed() bool { return s.crashHere != nil && s.crashHere() }

// writeRaftFile writes the sstable that sets a shard replica's Raft state
// to a snapshot's: its log goes, its snapshot metadata, configuration, hard
// state (when hs is not nil) and applied index are the snapshot's. Keys are
// added in order: applied, configuration, hard state, snapshot.
func (s *Store) writeRaftFile(shard int, meta *raftpb.SnapshotMetadata, hs *raftpb.HardState) (string, error) {
	w, path, err := s.newSnapshotSST(fmt.Sprintf("raft%d-", shard))
	if err != nil {
		return "", err
	}
	set := func(kind byte, m proto.Message) error {
		v, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		return w.Set(raftKey(shard, kind), v)
	}
	err = w.DeleteRange(logKey(shard, 0), raftKey(shard, raftLog+1))
	if err == nil {
		err = w.Set(raftKey(shard, raftApplied), binary.BigEndian.AppendUint64(nil, meta.GetIndex()))
	}
	if err == nil {
		conf := meta.GetConfState()
		if conf == nil {
			conf = &raftpb.ConfState{}
		}
		err = set(raftConf, conf)
	}
	if err == nil && hs != nil {
		err = set(raftHard, hs)
	}
	if err == nil {
		err = set(raftSnap, meta)
	}
	if err != nil {
		w.Close()
		s.opts.FS.Remove(path)
		return "", err
	}
	if err := w.Close(); err != nil {
		s.opts.FS.Remove(path)
		return "", err
	}
	if err := syncDir(s.opts.FS, s.snapshotDir()); err != nil {
		s.opts.FS.Remove(path)
		return "", err
	}
	return path, nil
}

func (s *Store) emptyRange(lower, upper []byte) (bool, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, err
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return false, err
	}
	return empty, nil
}

// finishLegacyInstall completes an install begun by an older version of
// the store, which first committed the Raft state with an install marker
// (and the shard's data deleted), then ingested the file, then deleted the
// marker. A missing file is taken as ingested only when the shard holds
// data: nothing but that ingest writes there while the marker exists.
func (s *Store) finishLegacyInstall(shard int, file string) error {
	if _, err := s.opts.FS.Stat(file); err == nil {
		if err := s.db.Ingest([]string{file}); err != nil {
			return fmt.Errorf("storage: ingest snapshot of shard %d: %w", shard, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("storage: snapshot of shard %d: %w", shard, err)
	} else if empty, err := s.emptyRange(shardRange(shard)); err != nil {
		return fmt.Errorf("storage: snapshot of shard %d: %w", shard, err)
	} else if empty {
		return fmt.Errorf("storage: shard %d records a snapshot install whose file %s is gone and whose data "+
			"never arrived; its applied index claims data this node lacks, so this data dir must not serve "+
			"(remove it and add the node back as a new one)", shard, file)
	}
	if err := durable(func() error { return s.db.Delete(raftKey(shard, raftInstall), pebble.Sync) }); err != nil {
		return fmt.Errorf("storage: finish snapshot of shard %d: %w", shard, err)
	}
	return nil
}

// recoverInstalls completes snapshot installs an older version's crash
// interrupted and removes snapshot files no install refers to.
func (s *Store) recoverInstalls(shards int) error {
	keep := map[string]bool{}
	for shard := 0; shard < shards; shard++ {
		v, closer, err := s.db.Get(raftKey(shard, raftInstall))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		file := string(v)
		closer.Close()
		keep[file] = true
		if err := s.finishLegacyInstall(shard, file); err != nil {
			return err
		}
	}
	dir := s.snapshotDir()
	names, err := s.opts.FS.List(dir)
	if err != nil {
		return nil // no snapshot ever arrived
	}
	for _, name := range names {
		p := s.opts.FS.PathJoin(dir, name)
		if strings.HasSuffix(name, ".sst") && !keep[p] {
			s.opts.FS.Remove(p)
		}
	}
	return nil
}

// DeleteShard removes a shard replica: its data, log and Raft state. A
// node does this once its group removed it.
func (s *Store) DeleteShard(shard int) error {
	b := s.NewBatch()
	lower, upper := shardRange(shard)
	if err := b.b.DeleteRange(lower, upper, nil); err != nil {
		return err
	}
	if err := b.b.DeleteRange(raftKey(shard, 0), raftKey(shard+1, 0), nil); err != nil {
		return err
	}
	if err := durable(func() error { return b.Commit(true) }); err != nil {
		return fmt.Errorf("storage: delete shard %d: %w", shard, err)
	}
	return nil
}
