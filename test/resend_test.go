package test

import (
	"fmt"
	"testing"
	"time"

	tc "hellochat/internal/testcluster"
)

// TestResendAfterManyMessagesIsDuplicate: a message resent after the room
// took more than 4,096 others (the old in-memory dedupe window) is still
// recognised and acked with its first seq, not stored again; and an id is
// its sender's own: another user's message with the same id is stored.
func TestResendAfterManyMessagesIsDuplicate(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: -1})
	room := "resend"
	ann := tc.Dial(t, c.URL(), room, "ann", true)
	ann.Expect(wait, "history", tc.IsType("history"))
	ann.Post("keep", "the first copy")
	if a := ann.Expect(wait, "ack", tc.IsType("ack")); a.Seq != 1 {
		t.Fatalf("first ack %s", a.Raw)
	}
	const others = 5000
	fill(t, c, room, "o", others, 0)

	ann.Post("keep", "the first copy")
	a := ann.Expect(wait, "ack of the resend", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "keep" })
	if a.Seq != 1 {
		t.Fatalf("the resend was acked as seq %d, want 1 (its first copy)", a.Seq)
	}
	bob := tc.Dial(t, c.URL(), room, "bob", true)
	bob.Expect(wait, "history", tc.IsType("history"))
	bob.Post("keep", "bob's own")
	if b := bob.Expect(wait, "bob's ack", tc.IsType("ack")); b.Seq != others+2 {
		t.Fatalf("bob's message with ann's id was acked as %s, want a new seq %d", b.Raw, others+2)
	}
	reader := tc.Dial(t, c.URL(), room, "reader", true)
	h := reader.Expect(wait, "history", tc.IsType("history"))
	if last := h.Messages[len(h.Messages)-1]; last.Seq != others+2 || last.Text != "bob's own" {
		t.Fatalf("the room's last message is %+v; want bob's as seq %d, and nothing stored twice", last, others+2)
	}
}

// TestSeedNoEchoAcrossFailover: a seed client sends while its room's leader
// is killed and comes back. Its messages are resent and replayed to the
// router from another node, and still none is ever shown to their sender;
// the others see each exactly once, in order.
func TestSeedNoEchoAcrossFailover(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: -1})
	room := "no-echo"
	sam := dialBurster(t, c.URL(), room, "sam", false)
	watch := dialBurster(t, c.URL(), room, "watch", true)
	tc.Eventually(t, wait, func() error {
		watch.mu.Lock()
		defer watch.mu.Unlock()
		if !watch.history || watch.users < 2 {
			return fmt.Errorf("%d users in the room", watch.users)
		}
		return nil
	})
	leader := c.Leader(room)
	deadline := time.Now().Add(time.Minute)
	sam.burst(150, deadline)
	c.Kill(leader)
	// The second half goes to a relay whose node just died: it holds them
	// and resends them to the new leader.
	for i := 150; i < 300; i++ {
		if err := sam.cl.WriteJSON(t.Context(), map[string]string{"message": sam.text(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Start(leader)
	sent := 300

	tc.Eventually(t, 30*time.Second, func() error {
		sam.mu.Lock()
		refused := len(sam.seedErrs)
		sam.mu.Unlock()
		if n := len(watch.shown()); n+refused < sent {
			return fmt.Errorf("watcher has %d, sam was refused %d, of %d", n, refused, sent)
		}
		return nil
	})
	if shown := sam.shown(); len(shown) > 0 {
		t.Fatalf("sam was shown %d of its own messages, the first %s", len(shown), shown[0].Raw)
	}
	seen := map[string]bool{}
	for i, m := range watch.shown() {
		if m.Seq != uint64(i+1) || seen[m.Text] {
			t.Fatalf("watcher's message %d is %s: a gap, duplicate or reorder", i, m.Raw)
		}
		seen[m.Text] = true
	}
	if sam.cl.IsClosed() || watch.cl.IsClosed() {
		t.Fatal("a client was disconnected by the failover")
	}
}
