package test

import (
	"fmt"
	"testing"
	"time"

	"hellochat/apps/chat"
	tc "hellochat/internal/testcluster"
)

// The chat app on the object API (router --chat-app) through a kill -9
// of its room's leader mid-chat: every message is acked, stored exactly
// once with seqs 1..n in order, neither browser is disconnected, and the
// other browser is shown every message live, in seq order, none twice:
// what the dead leader committed and had not handed to the routers, the
// next instance sends again (apps/chat, ReplayWindow), and the router
// drops what its browser was already shown.
//
// chatAppFailoverWait bounds a wait that spans a failover on a loaded
// machine.
const chatAppFailoverWait = 30 * time.Second

func TestChatAppThroughALeaderKill(t *testing.T) {
	c := tc.New(t, 3, tc.Options{ChatApp: true})
	ann := tc.Dial(t, c.URL(), "den", "ann", true, "key=ann-secret-key-0123")
	ann.Expect(wait, "presence", tc.IsType("presence"))
	bob := tc.Dial(t, c.URL(), "den", "bob", true)
	bob.Expect(wait, "presence", tc.IsType("presence"))

	const n = 60
	leader := c.Leader(chat.Namespace.IDFromName("den").StorageObject())
	for i := 1; i <= n; i++ {
		if i == n/2 {
			c.Kill(leader)
		}
		ann.Post(fmt.Sprintf("a-%d", i), fmt.Sprintf("m%d", i))
	}
	acked := map[string]uint64{}
	for len(acked) < n {
		f := ann.Expect(chatAppFailoverWait, "acks", tc.IsType("ack"))
		if prev, ok := acked[f.ID]; ok && prev != f.Seq {
			t.Fatalf("%s acked as %d and as %d", f.ID, prev, f.Seq)
		}
		acked[f.ID] = f.Seq
	}

	var last uint64
	for last < n {
		f := bob.Expect(chatAppFailoverWait, "messages", tc.IsMessage)
		if f.Seq != last+1 {
			t.Fatalf("bob was shown seq %d after %d", f.Seq, last)
		}
		last = f.Seq
	}

	cat := tc.Dial(t, c.URL(), "den", "cat", true)
	h := cat.Expect(wait, "history", tc.IsType("history"))
	if len(h.Messages) != n {
		t.Fatalf("history holds %d messages, want %d", len(h.Messages), n)
	}
	for i, m := range h.Messages {
		if m.Seq != uint64(i+1) || m.ID != fmt.Sprintf("a-%d", i+1) || acked[m.ID] != m.Seq {
			t.Fatalf("history[%d] is %+v (acked as %d)", i, m, acked[m.ID])
		}
	}
	for _, cl := range []*tc.Client{ann, bob} {
		if cl.IsClosed() {
			t.Fatalf("a browser was disconnected: %v", cl.CloseErr())
		}
	}
}
