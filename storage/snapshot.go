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
// Installing happens in two steps, each atomic, and the first leaves in
// the DB all a restart needs to finish the second:
//
//  1. One Pebble ingest (one synced edit) of two sstables: the received data
//     file, which opens with a range deletion of the shard's data (a range
//     deletion in an ingested file removes only older keys, never the
//     file's own), and an install marker file holding the snapshot's Raft
//     metadata and hard state under a key of the shard's own range.
//  2. One synced batch sets the replica's Raft state to the snapshot's
//     (log deleted; snapshot metadata, configuration, hard state, applied
//     index) and deletes the marker.
//
// A crash before step 1 leaves the replica as it was; after it, opening the
// store finds the marker and does step 2. Nothing outside the DB is needed
// once step 1 is done, and the Raft state never claims data the DB lacks.
// The Raft state is written in a batch, not a third file, because an
// ingested file that overlaps the memtable (the replica's hard state and
// log nearly always are there) forces a flush that stalls every write of
// the node.
//
// Files are durable (content and directory entry synced) before the ingest
// relies on them. Files left in the snapshot dir at open belong to no
// install and are removed: Raft asks for the snapshot again.

// snapshotDir is where incoming snapshot files wait, inside the data dir.
const snapshotDir = "snapshots"

// installMarkerKey is where an install's marker lives: in the shard's own
// key range, so that it is ingested with the data, under the store's
// reserved key 0x00 'i' of the empty object name (no op may write a
// reserved key, and the store writes no other of that object's).
func installMarkerKey(shard int) []byte {
	lower, _ := shardRange(shard)
	return append(lower, 0, 0, 'i')
}

// shardDataRange bounds the shard's data as snapshots carry it: the whole
// shard range but its install marker, which sorts first.
func shardDataRange(shard int) (lower, upper []byte) {
	_, upper = shardRange(shard)
	return append(installMarkerKey(shard), 0), upper
}

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
	lower, upper := shardDataRange(r.shard)
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
	fs    vfs.FS
	dir   string
	shard int
	path  string
	w     *sstable.Writer
	last  []byte
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
	lower, upper := shardDataRange(shard)
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
	lower, upper := shardDataRange(f.shard)
	if bytes.Compare(key, lower) < 0 || bytes.Compare(key, upper) >= 0 {
		return fmt.Errorf("storage: snapshot key %x outside shard %d", key, f.shard)
	}
	if f.last != nil && bytes.Compare(key, f.last) <= 0 {
		return fmt.Errorf("storage: snapshot key %x out of order", key)
	}
	f.last = append(f.last[:0], key...)
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
// hs is written in the same step: its commit index is the snapshot's, and
// so is id, the replica's identity in its group as of the snapshot (zero:
// left as it is). When it returns nil the install is durable; when the node
// crashes before, the replica is as it was or, once reopened, installed.
func (s *Store) InstallSnapshot(shard int, meta *raftpb.SnapshotMetadata, hs *raftpb.HardState, id ReplicaIdentity, file string) error {
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
	marker, err := encodeInstall(meta, hs, id)
	if err != nil {
		return fmt.Errorf("storage: install snapshot of shard %d: %w", shard, err)
	}
	markerFile, err := s.writeMarkerFile(shard, marker)
	if err != nil {
		return fmt.Errorf("storage: install snapshot of shard %d: marker file: %w", shard, err)
	}
	if s.crashed() {
		return errCrashed
	}
	// Pebble links both files in, records them in one synced edit, then
	// removes the originals.
	if err := s.durable(func() error { return s.db.Ingest([]string{file, markerFile}) }); err != nil {
		s.opts.FS.Remove(markerFile)
		return fmt.Errorf("storage: install snapshot of shard %d: ingest: %w", shard, err)
	}
	if s.crashed() {
		return errCrashed
	}
	return s.finishInstall(shard, meta, hs, id)
}

// errCrashed is what an install a test stopped returns.
var errCrashed = errors.New("storage: install stopped by a test crash point")

func (s *Store) crashed() bool { return s.crashHere != nil && s.crashHere() }

// writeMarkerFile writes the sstable holding a shard's install marker.
func (s *Store) writeMarkerFile(shard int, marker []byte) (string, error) {
	w, path, err := s.newSnapshotSST(fmt.Sprintf("marker%d-", shard))
	if err != nil {
		return "", err
	}
	err = w.Set(installMarkerKey(shard), marker)
	if cerr := w.Close(); err == nil {
		err = cerr // closing syncs the content
	}
	if err == nil {
		err = syncDir(s.opts.FS, s.snapshotDir())
	}
	if err != nil {
		s.opts.FS.Remove(path)
		return "", err
	}
	return path, nil
}

// finishInstall is step 2: the replica's Raft state becomes the
// snapshot's, and the marker goes, in one synced batch.
func (s *Store) finishInstall(shard int, meta *raftpb.SnapshotMetadata, hs *raftpb.HardState, id ReplicaIdentity) error {
	b := s.NewBatch()
	err := b.b.DeleteRange(logKey(shard, 0), raftKey(shard, raftLog+1), nil)
	if err == nil {
		err = b.setProto(raftKey(shard, raftSnap), meta)
	}
	if err == nil {
		err = b.SetConfState(shard, meta.GetConfState())
	}
	if err == nil && hs != nil {
		err = b.SetHardState(shard, hs)
	}
	if err == nil {
		err = b.SetApplied(shard, meta.GetIndex())
	}
	if err == nil && id.Self != 0 {
		err = b.SetReplicaID(shard, id.Self)
	}
	if err == nil && id.Set != nil {
		err = b.SetReplicaSet(shard, id.Set)
	}
	if err == nil {
		err = b.b.Delete(installMarkerKey(shard), nil)
	}
	if err != nil {
		b.b.Close()
		return fmt.Errorf("storage: install snapshot of shard %d: raft state: %w", shard, err)
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("storage: install snapshot of shard %d: %w", shard, err)
	}
	return nil
}

// encodeInstall and decodeInstall are the marker's value: the metadata,
// the hard state (empty: none), the replica id (0: none) and the replica
// set (empty: none), each but the id prefixed by its length (uvarints).
func encodeInstall(meta *raftpb.SnapshotMetadata, hs *raftpb.HardState, id ReplicaIdentity) ([]byte, error) {
	m, err := proto.Marshal(meta)
	if err != nil {
		return nil, err
	}
	var h []byte
	if hs != nil {
		if h, err = proto.Marshal(hs); err != nil {
			return nil, err
		}
	}
	v := binary.AppendUvarint(nil, uint64(len(m)))
	v = append(v, m...)
	v = binary.AppendUvarint(v, uint64(len(h)))
	v = append(v, h...)
	v = binary.AppendUvarint(v, id.Self)
	v = binary.AppendUvarint(v, uint64(len(id.Set)))
	return append(v, id.Set...), nil
}

func decodeInstall(v []byte) (*raftpb.SnapshotMetadata, *raftpb.HardState, ReplicaIdentity, error) {
	var id ReplicaIdentity
	field := func() ([]byte, error) {
		n, w := binary.Uvarint(v)
		if w <= 0 || n > uint64(len(v)-w) {
			return nil, fmt.Errorf("install marker is cut short")
		}
		b := v[w : w+int(n)]
		v = v[w+int(n):]
		return b, nil
	}
	m, err := field()
	if err != nil {
		return nil, nil, id, err
	}
	meta := &raftpb.SnapshotMetadata{}
	if err := proto.Unmarshal(m, meta); err != nil {
		return nil, nil, id, fmt.Errorf("install marker metadata: %w", err)
	}
	h, err := field()
	if err != nil {
		return nil, nil, id, err
	}
	var hs *raftpb.HardState
	if len(h) > 0 {
		hs = &raftpb.HardState{}
		if err := proto.Unmarshal(h, hs); err != nil {
			return nil, nil, id, fmt.Errorf("install marker hard state: %w", err)
		}
	}
	self, w := binary.Uvarint(v)
	if w <= 0 {
		return nil, nil, id, fmt.Errorf("install marker replica id is cut short")
	}
	v = v[w:]
	set, err := field()
	if err != nil {
		return nil, nil, id, err
	}
	id.Self = self
	if len(set) > 0 {
		id.Set = append([]byte(nil), set...)
	}
	return meta, hs, id, nil
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
// the store (its marker was a Raft key naming the file), which first committed the Raft state with an install marker
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
	} else if empty, err := s.emptyRange(shardDataRange(shard)); err != nil {
		return fmt.Errorf("storage: snapshot of shard %d: %w", shard, err)
	} else if empty {
		return fmt.Errorf("storage: shard %d records a snapshot install whose file %s is gone and whose data "+
			"never arrived; its applied index claims data this node lacks, so this data dir must not serve "+
			"(remove it and add the node back as a new one)", shard, file)
	}
	if err := s.durable(func() error { return s.db.Delete(raftKey(shard, raftInstall), pebble.Sync) }); err != nil {
		return fmt.Errorf("storage: finish snapshot of shard %d: %w", shard, err)
	}
	return nil
}

// recoverInstalls completes snapshot installs a crash interrupted and
// removes snapshot files no install refers to.
func (s *Store) recoverInstalls(shards int) error {
	keep := map[string]bool{}
	for shard := 0; shard < shards; shard++ {
		if v, closer, err := s.db.Get(installMarkerKey(shard)); err == nil {
			meta, hs, id, derr := decodeInstall(v)
			closer.Close()
			if derr != nil {
				return fmt.Errorf("storage: shard %d: %w", shard, derr)
			}
			if err := s.finishInstall(shard, meta, hs, id); err != nil {
				return err
			}
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("storage: shard %d install marker: %w", shard, err)
		}
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
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("storage: delete shard %d: %w", shard, err)
	}
	return nil
}
