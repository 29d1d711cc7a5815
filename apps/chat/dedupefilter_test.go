package chat

import (
	"fmt"
	"strings"
	"testing"
)

// A Bloom filter never forgets a key, and says "maybe" of few others.
func TestBloomHasNoFalseNegatives(t *testing.T) {
	const n = 20000
	b := newBloom(n)
	for i := range n {
		b.add(fmt.Sprint("ann\x00key\x00m", i))
	}
	falsePositives := 0
	for i := range n {
		if !b.mayHave(fmt.Sprint("ann\x00key\x00m", i)) {
			t.Fatalf("key %d added and not found", i)
		}
		if b.mayHave(fmt.Sprint("bob\x00key\x00m", i)) {
			falsePositives++
		}
	}
	if falsePositives > n*3/100 {
		t.Fatalf("%d of %d absent keys may be there: over 3%%", falsePositives, n)
	}
}

// A busy instance recognises, without a read for new messages, resends
// of what an earlier instance stored (its filter is filled from the
// store) and of what it stored itself, through refills.
func TestRoomFilterKnowsWhatEarlierInstancesStored(t *testing.T) {
	r := newRig(t, 8192)
	r.v2("g.1", "ann")
	const before, after = 300, 2000
	for i := 1; i <= before; i++ {
		r.send("g.1", fmt.Sprint("old", i), "x")
	}
	r.Evict()
	r.Start()
	r.frames("g.1")
	for i := 1; i <= after; i++ {
		r.send("g.1", fmt.Sprint("new", i), "x")
	}
	if got := len(r.frames("g.1")); got != 2*after {
		t.Fatalf("%d frames for %d new messages, want a message and an ack each", got, after)
	}
	d := &r.room.dedupe
	if d.ready == nil {
		t.Fatalf("no filter after %d messages", after)
	}
	surelyNew := 0
	for i := range 1000 {
		if !d.mayHave(dedupeKey("ann", "secret-key-0123456789", fmt.Sprint("fresh", i))) {
			surelyNew++
		}
	}
	if surelyNew < 950 {
		t.Fatalf("the filter was sure of %d of 1000 new ids, want most", surelyNew)
	}
	for _, id := range []string{"old1", "old150", fmt.Sprint("old", before), "new1", fmt.Sprint("new", after)} {
		r.send("g.1", id, "again")
		var seq int
		if _, err := fmt.Sscanf(strings.TrimPrefix(strings.TrimPrefix(id, "old"), "new"), "%d", &seq); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(id, "new") {
			seq += before
		}
		expect(t, "ann after resending "+id, r.frames("g.1"), fmt.Sprint("ack:", seq))
	}
}

// A room that keeps few records fills its filter with its first message
// (one short read), so a quiet room's next messages skip the point read
// too, and still recognises resends of what it stored before and since.
func TestSmallRoomFiltersAtOnce(t *testing.T) {
	r := newRig(t, 8192)
	r.v2("g.1", "ann")
	for i := 1; i <= 3; i++ {
		r.send("g.1", fmt.Sprint("m", i), "x")
	}
	r.Evict()
	r.Start()
	r.frames("g.1")
	r.send("g.1", "m4", "x")
	if got := len(r.frames("g.1")); got != 2 {
		t.Fatalf("%d frames for a new message, want a message and an ack", got)
	}
	d := &r.room.dedupe
	if d.ready == nil {
		t.Fatalf("a room of 4 messages has no filter after its instance's first message")
	}
	for seq, id := range []string{"m1", "m2", "m3", "m4"} {
		if !d.mayHave(dedupeKey("ann", "secret-key-0123456789", id)) {
			t.Fatalf("the filter is sure %s is new", id)
		}
		r.send("g.1", id, "again")
		expect(t, "ann after resending "+id, r.frames("g.1"), fmt.Sprint("ack:", seq+1))
	}
}
