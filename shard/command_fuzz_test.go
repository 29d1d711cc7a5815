package shard

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

func encode(t testing.TB, cmd *pb.Command) []byte {
	b, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecodeCommand feeds arbitrary bytes to the log-entry decoder: it must
// never panic, and whatever it accepts must re-encode to a command that
// decodes to the same object and ops, for the shard the object hashes to.
func FuzzDecodeCommand(f *testing.F) {
	f.Add(encode(f, &pb.Command{Proposal: 1, Object: "lobby", Ops: []*pb.KVOp{{Key: []byte("m\x00\x00\x00\x00\x00\x00\x00\x01"), Value: []byte("v")}}}))
	f.Add(encode(f, &pb.Command{Proposal: 2, Object: "Ünïcødé room", Ops: []*pb.KVOp{{Key: []byte("k"), Delete: true}}}))
	f.Add(encode(f, &pb.Command{Object: "bad\x00room", Ops: []*pb.KVOp{{Key: []byte("k")}}}))
	f.Add(encode(f, &pb.Command{Object: "lobby", Ops: []*pb.KVOp{{Value: []byte("no key")}}}))
	f.Add([]byte{0xff, 0x01, 0x02})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Try the shard the object would hash to, so valid commands get
		// past the shard check, and a wrong one, which must be refused.
		probe := &pb.Command{}
		if proto.Unmarshal(data, probe) != nil {
			if _, _, err := DecodeCommand(0, data); err == nil {
				t.Fatal("accepted bytes that do not decode")
			}
			return
		}
		shard := cluster.Shard(probe.Object)
		if _, _, err := DecodeCommand((shard+1)%cluster.Partitions, data); err == nil {
			t.Fatalf("accepted object %q for the wrong shard", probe.Object)
		}
		cmd, ops, err := DecodeCommand(shard, data)
		if err != nil {
			return
		}
		again, ops2, err := DecodeCommand(shard, encode(t, cmd))
		if err != nil || again.Object != cmd.Object || len(ops2) != len(ops) {
			t.Fatalf("re-encoded command does not round-trip: %v", err)
		}
		for i := range ops {
			if len(ops[i].Key) == 0 || !bytes.Equal(ops[i].Key, ops2[i].Key) || !bytes.Equal(ops[i].Value, ops2[i].Value) || ops[i].Delete != ops2[i].Delete {
				t.Fatalf("op %d changed on round trip", i)
			}
		}
	})
}
