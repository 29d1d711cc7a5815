package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/sstable"
	"github.com/cockroachdb/pebble/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

// Shard snapshots move a whole shard replica between nodes with bounded
// memory on both sides. The sender reads one consistent Pebble snapshot in
// key order; the receiver writes what arrives into an sstable file and, once
// Raft accepts the snapshot, ingests that file in place of the shard's data.
//
// Installing is crash-safe: one synced batch deletes the shard's data and
// log, records the snapshot's Raft state and an install marker naming the
// file; then the file is ingested (Pebble removes it once linked in) and
// the marker is deleted. A restart that finds a marker ingests its file
// again if it is still there.

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
	shard   int
	path    string
	w       *sstable.Writer
	last    []byte
	entries int
}

// NewSnapshotFile starts a file for an incoming snapshot of shard.
func (s *Store) NewSnapshotFile(shard int) (*SnapshotFile, error) {
	dir := filepath.Join(s.dir, snapshotDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: snapshot dir: %w", err)
	}
	f, err := os.CreateTemp(dir, fmt.Sprintf("shard%d-*.sst", shard))
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot file: %w", err)
	}
	path := f.Name()
	f.Close()
	vf, err := vfs.Default.Create(path)
	if err != nil {
		return nil, fmt.Errorf("storage: snapshot file: %w", err)
	}
	opts := s.opts.MakeWriterOptions(0, s.db.FormatMajorVersion().MaxTableFormat())
	return &SnapshotFile{shard: shard, path: path, w: sstable.NewWriter(objstorageprovider.NewFileWritable(vf), opts)}, nil
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

// Finish completes the file and returns its path ("" for an empty shard:
// there is nothing to ingest).
func (f *SnapshotFile) Finish() (string, error) {
	if err := f.w.Close(); err != nil {
		os.Remove(f.path)
		return "", fmt.Errorf("storage: finish snapshot file: %w", err)
	}
	if f.entries == 0 {
		os.Remove(f.path)
		return "", nil
	}
	return f.path, nil
}

// Abort drops an unfinished file.
func (f *SnapshotFile) Abort() {
	f.w.Close()
	os.Remove(f.path)
}

// RemoveSnapshotFile drops a finished file Raft did not use.
func (s *Store) RemoveSnapshotFile(path string) {
	if path != "" {
		os.Remove(path)
	}
}

// InstallSnapshot replaces a shard replica's data, log and Raft state with a
// snapshot whose data is in file (see SnapshotFile; "" for no data). hs is
// written in the same synced batch: its commit index is the snapshot's.
func (s *Store) InstallSnapshot(shard int, meta *raftpb.SnapshotMetadata, hs *raftpb.HardState, file string) error {
	if err := s.prepareInstall(shard, meta, hs, file); err != nil {
		return err
	}
	if file == "" {
		return nil
	}
	return s.finishInstall(shard, file)
}

// prepareInstall is the first, synced half of an install: the shard's old
// state goes, the snapshot's Raft state and the install marker are written.
func (s *Store) prepareInstall(shard int, meta *raftpb.SnapshotMetadata, hs *raftpb.HardState, file string) error {
	b := s.NewBatch()
	lower, upper := shardRange(shard)
	// A range deletion sits in the memtable, and an ingest that overlaps
	// the memtable forces a flush that stalls every write of the node. A
	// new replica (the common case: a move) has no data to delete.
	empty, err := s.emptyRange(lower, upper)
	if err != nil {
		return err
	}
	if !empty {
		if err := b.b.DeleteRange(lower, upper, nil); err != nil {
			return err
		}
	}
	if err := b.b.DeleteRange(logKey(shard, 0), raftKey(shard, raftLog+1), nil); err != nil {
		return err
	}
	if err := b.setProto(raftKey(shard, raftSnap), meta); err != nil {
		return err
	}
	if err := b.SetConfState(shard, meta.GetConfState()); err != nil {
		return err
	}
	if hs != nil {
		if err := b.SetHardState(shard, hs); err != nil {
			return err
		}
	}
	if err := b.SetApplied(shard, meta.GetIndex()); err != nil {
		return err
	}
	if file != "" {
		if err := b.b.Set(raftKey(shard, raftInstall), []byte(file), nil); err != nil {
			return err
		}
	}
	if err := durable(func() error { return b.Commit(true) }); err != nil {
		return fmt.Errorf("storage: install snapshot of shard %d: %w", shard, err)
	}
	return nil
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

// finishInstall ingests a snapshot file and deletes its install marker.
func (s *Store) finishInstall(shard int, file string) error {
	if _, err := os.Stat(file); err == nil {
		if err := s.db.Ingest([]string{file}); err != nil {
			return fmt.Errorf("storage: ingest snapshot of shard %d: %w", shard, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("storage: snapshot of shard %d: %w", shard, err)
	}
	// Synced, so no write applied after the ingest can precede it on disk:
	// a second ingest would overwrite such a write with older data.
	if err := durable(func() error { return s.db.Delete(raftKey(shard, raftInstall), pebble.Sync) }); err != nil {
		return fmt.Errorf("storage: finish snapshot of shard %d: %w", shard, err)
	}
	return nil
}

// recoverInstalls completes snapshot installs a crash interrupted and
// removes snapshot files no install refers to.
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
		if err := s.finishInstall(shard, file); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, snapshotDir))
	if err != nil {
		return nil // no snapshot ever arrived
	}
	for _, e := range entries {
		p := filepath.Join(s.dir, snapshotDir, e.Name())
		if strings.HasSuffix(e.Name(), ".sst") && !keep[p] {
			os.Remove(p)
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
