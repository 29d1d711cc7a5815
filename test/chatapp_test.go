package test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hellochat/apps/chat"
	tc "hellochat/internal/testcluster"
	"hellochat/limits"
	"hellochat/objectnode"
	pb "hellochat/proto/roompb"
)

// The chat app on the object API through a kill -9
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
	c := tc.New(t, 3, tc.Options{})
	ann := tc.Dial(t, c.URL(), "den", "ann", true, "key=ann-secret-key-0123")
	ann.Expect(wait, "presence", tc.IsType("presence"))
	bob := tc.Dial(t, c.URL(), "den", "bob", true)
	bob.Expect(wait, "presence", tc.IsType("presence"))

	const n = 60
	leader := c.ObjectLeader(chat.Namespace.IDFromName("den").StorageObject())
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

// A leader commits messages whose frames to one router never leave it,
// and dies; nothing else happens in the room. Its sender's router had
// every answer, so it sends nothing again: only the new leader, starting
// the objects that hold sockets when it takes the shard, and the room's
// Load sending its recent messages again, bring them to the other
// router's browser: each once, in order, and before the next message.
func TestChatAppSendsAgainWhatADeadLeaderHeld(t *testing.T) {
	var dropping atomic.Value // the id of the node that loses router2's frames
	dropping.Store("")
	c := tc.New(t, 3, tc.Options{GatewayFaults: func(id string) objectnode.GatewayFaults {
		return objectnode.GatewayDropFunc(func(gateway string, op *pb.GatewayOp) bool {
			return op.GetSend() != nil && strings.HasPrefix(gateway, "router2~") && dropping.Load() == id
		})
	}})
	r2 := c.StartRouter("router2")
	t.Cleanup(func() { r2.Shutdown(context.Background()) })

	ann := tc.Dial(t, c.URL(), "den", "ann", true, "key=ann-secret-key-0123")
	ann.Expect(wait, "presence", tc.IsType("presence"))
	bob := tc.Dial(t, "http://"+r2.Addr(), "den", "bob", true)
	bob.Expect(wait, "presence", tc.IsType("presence"))
	ann.Expect(wait, "bob joined", tc.IsType("joined"))

	leader := c.ObjectLeader(chat.Namespace.IDFromName("den").StorageObject())
	dropping.Store(c.Config(leader).ID)
	const n = 5
	for i := 1; i <= n; i++ {
		ann.Post(fmt.Sprintf("a-%d", i), fmt.Sprintf("m%d", i))
		if f := ann.Expect(wait, "ack", tc.IsType("ack")); f.Seq != uint64(i) {
			t.Fatalf("a-%d acked as %d", i, f.Seq)
		}
	}
	c.Kill(leader)
	for i := 1; i <= n; i++ {
		if f := bob.Expect(chatAppFailoverWait, "the held messages", tc.IsMessage); f.Seq != uint64(i) {
			t.Fatalf("bob was shown seq %d, want %d", f.Seq, i)
		}
	}
	ann.Post("a-next", "after")
	if f := bob.Expect(chatAppFailoverWait, "the next message", tc.IsMessage); f.Seq != n+1 {
		t.Fatalf("bob was shown seq %d after the failover, want %d", f.Seq, n+1)
	}
	for _, cl := range []*tc.Client{ann, bob} {
		if cl.IsClosed() {
			t.Fatalf("a browser was disconnected: %v", cl.CloseErr())
		}
	}
}

// A room that is behind (its node's answers are held back here) fills
// each socket's window of unanswered messages; the chat app's policy has
// the router refuse the next sends as overloaded, with their ids, rather
// than stop reading the browser. Nothing refused is stored, everything
// acked is, and the room answers again once its node does.
func TestChatAppRefusesSendsWhenTheRoomIsBehind(t *testing.T) {
	var holding atomic.Bool
	c := tc.New(t, 3, tc.Options{SendRate: -1, GatewayFaults: func(string) objectnode.GatewayFaults {
		return objectnode.GatewayDropFunc(func(_ string, op *pb.GatewayOp) bool {
			return holding.Load() && op.GetResult() != nil
		})
	}})
	ann := tc.Dial(t, c.URL(), "busy", "ann", true)
	ann.Expect(wait, "presence", tc.IsType("presence"))
	holding.Store(true)
	const window, n = 1024, 1200 // router's maxUnackedEvents
	for i := range n {
		ann.Post(fmt.Sprint("a-", i), "x")
	}
	// The room's acks come as it stores the messages; its answers to the
	// router do not, so the window stays full and the rest are refused.
	refused, acked := map[string]bool{}, map[string]bool{}
	for len(refused) < n-window && len(acked)+len(refused) < n {
		f := ann.Expect(chatAppFailoverWait, "acks and refusals", func(f tc.Frame) bool { return f.Type == "ack" || f.Type == "error" })
		switch {
		case f.Type == "ack":
			acked[f.ID] = true
		case f.Code != limits.CodeOverloaded || f.ID == "":
			t.Fatalf("got %s, want an overloaded refusal naming its message", f.Raw)
		default:
			refused[f.ID] = true
		}
	}
	holding.Store(false)
	for len(acked)+len(refused) < n {
		f := ann.Expect(chatAppFailoverWait, "acks", func(f tc.Frame) bool { return f.Type == "ack" || f.Type == "error" })
		if f.Type == "error" {
			t.Fatalf("after the refusals: %s", f.Raw)
		}
		acked[f.ID] = true
	}
	if len(refused) == 0 {
		t.Fatal("nothing was refused: the test did not fill the window")
	}
	for id := range refused {
		if acked[id] {
			t.Fatalf("%s was refused and acked", id)
		}
	}
	bob := tc.Dial(t, c.URL(), "busy", "bob", true)
	h := bob.Expect(wait, "history", tc.IsType("history"))
	stored := len(h.Messages)
	if h.More {
		stored = -1 // more than a page: count below
	}
	for _, m := range h.Messages {
		if refused[m.ID] || !acked[m.ID] {
			t.Fatalf("history holds %s: refused %v, acked %v", m.ID, refused[m.ID], acked[m.ID])
		}
	}
	if stored != -1 && stored != len(acked) {
		t.Fatalf("history holds %d messages, %d were acked", stored, len(acked))
	}
}
