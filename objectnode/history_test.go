package objectnode

import (
	"math"
	"testing"

	pb "hellochat/proto/roompb"
)

// A forward page after the last possible seq is empty: msgKey(After+1)
// must not wrap round to the start of the room's history.
func TestPageAfterLastPossibleSeq(t *testing.T) {
	g := newRoomRig(t)
	st := g.attach("r1")
	g.send(st, 1, "ann", "a", "one")
	g.finish(nil)
	for _, after := range []uint64{1, math.MaxUint64 - 1, math.MaxUint64} {
		p, err := readPage(g.store, g.r.name, &pb.PageRequest{Forward: true, After: after})
		if err != nil || len(p.Messages) != 0 {
			t.Errorf("forward page after %d: %v, %v; want no messages", after, p.GetMessages(), err)
		}
	}
	if p, err := readPage(g.store, g.r.name, &pb.PageRequest{Forward: true}); err != nil || len(p.Messages) != 1 {
		t.Errorf("forward page from the start: %v, %v; want the one message", p.GetMessages(), err)
	}
}
