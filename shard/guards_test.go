package shard

import (
	"io"
	"log/slog"
	"testing"

	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// Two actors that both believe seq 5 is next: the first write wins, the
// second is refused, even within one apply batch, so no committed message
// is ever overwritten.
func TestGuardsRefuseStaleWrite(t *testing.T) {
	st, err := storage.OpenStore(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key := func(seq byte) []byte { return []byte{'m', 0, 0, 0, 0, 0, 0, 0, seq} }
	if err := st.Apply("room", []storage.Op{{Key: key(4), Value: []byte("four")}}); err != nil {
		t.Fatal(err)
	}
	cmd := func(val string) *pb.Command {
		return &pb.Command{Object: "room", Ops: []*pb.KVOp{{Key: key(5), Value: []byte(val)}},
			Absent: [][]byte{key(5)}, Present: [][]byte{key(4)}}
	}
	ab := st.NewApplyBatch()
	for i, c := range []*pb.Command{cmd("first"), cmd("stale")} {
		ok, err := guardsHold(ab, c)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (i == 0) {
			t.Fatalf("command %d: guards hold = %v", i, ok)
		}
		if ok {
			ops := []storage.Op{{Key: c.Ops[0].Key, Value: c.Ops[0].Value}}
			if err := ab.ApplyOps(c.Object, ops); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ab.Commit(false); err != nil {
		t.Fatal(err)
	}
	v, _, _ := st.Get("room", key(5))
	if string(v) != "first" {
		t.Fatalf("seq 5 = %q, want the first write", v)
	}
	// A gap is refused too: seq 7 without seq 6.
	gap := &pb.Command{Object: "room", Absent: [][]byte{key(7)}, Present: [][]byte{key(6)}}
	if ok, _ := guardsHold(st.NewApplyBatch(), gap); ok {
		t.Fatal("write after a gap accepted")
	}
}
