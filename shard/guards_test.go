package shard

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

func openStore(t *testing.T) *storage.Store {
	t.Helper()
	st, err := storage.OpenStore(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func seqKey(seq byte) []byte { return []byte{'m', 0, 0, 0, 0, 0, 0, 0, seq} }

// apply runs commands through one apply batch of g and commits it,
// returning which applied.
func apply(t *testing.T, st *storage.Store, g *group, cmds ...*pb.Command) []bool {
	t.Helper()
	ab := st.NewApplyBatch(0)
	var oks []bool
	for _, c := range cmds {
		ops := make([]storage.Op, len(c.Ops))
		for i, op := range c.Ops {
			ops[i] = storage.Op{Key: op.Key, Value: op.Value}
		}
		ok, err := g.applyCommand(ab, c, ops)
		if err != nil {
			t.Fatal(err)
		}
		oks = append(oks, ok)
	}
	if err := ab.Commit(false); err != nil {
		t.Fatal(err)
	}
	return oks
}

// Two actors that both believe seq 5 is next: the first write wins, the
// second is refused, even within one apply batch, so no committed message
// is ever overwritten.
func TestGuardsRefuseStaleWrite(t *testing.T) {
	st := openStore(t)
	if err := st.Apply("room", []storage.Op{{Key: seqKey(4), Value: []byte("four")}}); err != nil {
		t.Fatal(err)
	}
	cmd := func(val string) *pb.Command {
		return &pb.Command{Object: "room", Ops: []*pb.KVOp{{Key: seqKey(5), Value: []byte(val)}},
			Absent: [][]byte{seqKey(5)}, Present: [][]byte{seqKey(4)}}
	}
	if oks := apply(t, st, &group{}, cmd("first"), cmd("stale")); !oks[0] || oks[1] {
		t.Fatalf("applied %v, want the first only", oks)
	}
	v, _, _ := st.Get("room", seqKey(5))
	if string(v) != "first" {
		t.Fatalf("seq 5 = %q, want the first write", v)
	}
	// A gap is refused too: seq 7 without seq 6.
	gap := &pb.Command{Object: "room", Absent: [][]byte{seqKey(7)}, Present: [][]byte{seqKey(6)}}
	if oks := apply(t, st, &group{}, gap); oks[0] {
		t.Fatal("write after a gap accepted")
	}
}

// Versioned writes: a stale version is refused within a batch, from the
// replica's memory, and from the store by a replica that never saw the
// object (a restart); a room stored before versions gets its first version
// by its key conditions.
func TestVersionGuards(t *testing.T) {
	st := openStore(t)
	write := func(seq byte, val string, version, next uint64) *pb.Command {
		return &pb.Command{Object: "room", Ops: []*pb.KVOp{{Key: seqKey(seq), Value: []byte(val)}},
			Absent: [][]byte{seqKey(seq)}, Present: [][]byte{seqKey(seq - 1)},
			Versioned: true, Version: version, NextVersion: next}
	}
	// Stored before versions: seqs 1..4, no version recorded.
	for s := byte(1); s <= 4; s++ {
		if err := st.Apply("room", []storage.Op{{Key: seqKey(s), Value: []byte("old")}}); err != nil {
			t.Fatal(err)
		}
	}
	g := &group{}
	// The first versioned write is checked by its keys: a stale actor
	// (it thinks seq 4 is free) is refused, the right one applies.
	if oks := apply(t, st, g, write(4, "stale", 3, 4), write(5, "five", 4, 5), write(5, "again", 4, 5)); oks[0] || !oks[1] || oks[2] {
		t.Fatalf("applied %v, want only the write of seq 5", oks)
	}
	if v, ok := g.versions.get("room"); !ok || v != 5 {
		t.Fatalf("cached version %d %v, want 5", v, ok)
	}
	// From memory: a stale version is refused with no key conditions to
	// fall back on.
	lie := write(6, "lie", 3, 6)
	lie.Absent, lie.Present = nil, nil
	if oks := apply(t, st, g, lie, write(6, "six", 5, 6)); oks[0] || !oks[1] {
		t.Fatalf("applied %v, want the stale version refused and seq 6 written", oks)
	}
	// A replica that restarted (empty cache) reads the version once.
	fresh := &group{}
	if oks := apply(t, st, fresh, write(7, "stale", 5, 7), write(7, "seven", 6, 7)); oks[0] || !oks[1] {
		t.Fatalf("after a restart applied %v, want only the current version", oks)
	}
	// A snapshot install clears the cache; the store still decides.
	fresh.versions.clear()
	if oks := apply(t, st, fresh, write(8, "eight", 7, 8)); !oks[0] {
		t.Fatal("write at the current version refused after the cache was cleared")
	}
	for s, want := range map[byte]string{4: "old", 5: "five", 6: "six", 7: "seven", 8: "eight"} {
		if v, _, _ := st.Get("room", seqKey(s)); string(v) != want {
			t.Errorf("seq %d = %q, want %q", s, v, want)
		}
	}
}

// The cache stays bounded and forgetting is harmless.
func TestVersionCacheBounded(t *testing.T) {
	var c versionCache
	for i := 0; i < 3*maxCachedVersions; i++ {
		c.set(strings.Repeat("r", i%50)+string(rune('a'+i%26))+strings.Repeat("x", i/26), uint64(i))
		if len(c.m) > maxCachedVersions {
			t.Fatalf("cache holds %d versions, bound %d", len(c.m), maxCachedVersions)
		}
	}
}

// No command may write the store's own keys (the object's version).
func TestDecodeRefusesReservedKeys(t *testing.T) {
	data, err := proto.Marshal(&pb.Command{Object: "room", Ops: []*pb.KVOp{{Key: []byte{0, 'v'}, Value: []byte{9}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeCommand(cluster.Shard("room"), data); err == nil || !strings.Contains(err.Error(), "store's own key") {
		t.Fatalf("decode of a write to the version key: %v", err)
	}
}

// Commands for durable objects' storage decode like rooms' do.
func TestDecodeAcceptsDurableObjects(t *testing.T) {
	object := limits.DurableObjectPrefix + "Counter/" + strings.Repeat("ab", 32)
	data, err := proto.Marshal(&pb.Command{Object: object, Ops: []*pb.KVOp{{Key: []byte("uv"), Value: []byte("1")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeCommand(cluster.Shard(object), data); err != nil {
		t.Fatalf("decode of a durable object's command: %v", err)
	}
}
