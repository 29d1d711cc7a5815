package objectnode

import (
	"fmt"
	"testing"
)

// The dedupe index keeps the newest dedupeWindow records and no more: each
// batch deletes the records the window has passed, in the same committed
// batch, so every replica drops the same ones. Resends inside the window
// are still recognised, also across a reload; one beyond it is a new
// message.
func TestDedupeIndexKeepsWindow(t *testing.T) {
	const window = 8
	g := newRoomRig(t)
	g.r.dedupeWindow = window
	ann := g.attach("r1")
	id := func(i int) string { return fmt.Sprintf("m%d", i) }
	sent := 0
	// Batches of 1, 2, ... 6 messages (some longer than the window is
	// small), then single ones, past three windows.
	for size := 1; sent < 3*window+5; size++ {
		for i := 0; i < min(size, 6); i++ {
			sent++
			g.send(ann, 1, "ann", id(sent), "hello")
		}
		for g.inFlight() > 0 {
			g.finish(nil)
		}
		want := min(sent, window)
		if d, i := g.records(dedupeKeyPrefix), g.records(seqIDKeyPrefix); d != want || i != want {
			t.Fatalf("after %d messages: %d dedupe and %d seq index records, want %d", sent, d, i, want)
		}
	}
	take(ann)

	g2 := newRoomRigOn(t, g.store)
	g2.r.dedupeWindow = window
	bob := g2.attach("r2")
	g2.send(bob, 1, "ann", id(sent-window+1), "hello") // the oldest still in the window
	if s := take(bob); len(s.acks) != 1 || s.acks[0].Seq != uint64(sent-window+1) || !s.acks[0].Duplicate {
		t.Fatalf("resend inside the window after a reload: %+v", s.acks)
	}
	g2.send(bob, 1, "ann", id(sent-window), "hello") // just past it
	g2.finish(nil)
	if s := take(bob); len(s.acks) != 1 || s.acks[0].Seq != uint64(sent+1) {
		t.Fatalf("resend past the window: %+v, want stored anew as seq %d", s.acks, sent+1)
	}
	if d, i := g2.records(dedupeKeyPrefix), g2.records(seqIDKeyPrefix); d != window || i != window {
		t.Fatalf("after the reload: %d dedupe and %d seq index records, want %d", d, i, window)
	}
}

// A batch longer than the window passes messages of its own: their
// records are written and deleted in the same batch.
func TestDedupeWindowShorterThanBatch(t *testing.T) {
	g := newRoomRig(t)
	g.r.dedupeWindow = 2
	ann := g.attach("r1")
	g.send(ann, 1, "ann", "first", "one") // in flight while the next five wait
	for i := 0; i < 5; i++ {
		g.send(ann, 1, "ann", fmt.Sprintf("m%d", i), "hello")
	}
	g.finish(nil)
	g.finish(nil)
	if d, i := g.records(dedupeKeyPrefix), g.records(seqIDKeyPrefix); d != 2 || i != 2 {
		t.Fatalf("%d dedupe and %d seq index records, want 2", d, i)
	}
	if s := take(ann); len(s.acks) != 6 || s.acks[5].Seq != 6 {
		t.Fatalf("acks %+v, want seqs 1-6", s.acks)
	}
	g.send(ann, 1, "ann", "m4", "hello") // seq 6, inside the window
	if s := take(ann); len(s.acks) != 1 || s.acks[0].Seq != 6 || !s.acks[0].Duplicate {
		t.Fatalf("resend of the newest: %+v", s.acks)
	}
}
