// Package test holds black-box tests of whole clusters: real nodes, a real
// router, real WebSockets and real Pebble, on 127.0.0.1.
package test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"hellochat/apps/chat"
	"hellochat/apps/counter"
	tc "hellochat/internal/testcluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

const wait = 10 * time.Second

// TestSeedChat: two seed-protocol clients chat live with server
// timestamps, nobody gets their own message echoed, join/leave notices
// reach the others, and a late third client gets the whole history in order.
func TestSeedChat(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	ann := tc.Dial(t, c.URL(), "lobby", "ann", false)
	bob := tc.Dial(t, c.URL(), "lobby", " bob ", false)
	ann.Expect(wait, "bob's join notice", func(f tc.Frame) bool { return f.Name == "bob" && f.Message == "joined the chat" })

	before := time.Now().UnixMilli()
	ann.Say("hello bob")
	got := bob.Expect(wait, "ann's message", tc.IsSeedText("hello bob"))
	if got.Name != "ann" || got.Timestamp < before || got.Timestamp > time.Now().UnixMilli() {
		t.Fatalf("bob got %s; want name ann and a server timestamp in [%d, now]", got.Raw, before)
	}
	bob.Say("hi ann")
	ann.Expect(wait, "bob's reply", tc.IsSeedText("hi ann"))
	ann.Say("third")
	bob.Expect(wait, "third", tc.IsSeedText("third"))
	ann.Quiet(300*time.Millisecond, "echo of own message", func(f tc.Frame) bool {
		return f.Message == "hello bob" || f.Message == "third"
	})

	cat := tc.Dial(t, c.URL(), "lobby", "cat", false)
	want := []string{"ann: hello bob", "bob: hi ann", "ann: third"}
	var ts int64
	for i, w := range want {
		f := cat.Next(wait)
		if f.Name+": "+f.Message != w {
			t.Fatalf("history[%d] = %s, want %q", i, f.Raw, w)
		}
		if f.Timestamp < ts {
			t.Fatalf("history timestamps go backwards at %d: %s", i, f.Raw)
		}
		ts = f.Timestamp
	}
	bob.Expect(wait, "cat's join notice", func(f tc.Frame) bool { return f.Name == "cat" && f.Message == "joined the chat" })
	cat.Conn.CloseNow()
	ann.Expect(wait, "cat's leave notice", func(f tc.Frame) bool { return f.Name == "cat" && f.Message == "Disconnected" })
}

// TestV2ChatAckAndResume: the extended protocol acks each send with its
// seq, echoes it to everyone in seq order, reports presence, dedupes a
// resent id, pages back through history and resumes after a seq.
func TestV2ChatAckAndResume(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	ann := tc.Dial(t, c.URL(), "v2room", "ann", true)
	if f := ann.Next(wait); f.Type != "welcome" || f.Name != "ann" || f.Room != "v2room" {
		t.Fatalf("first frame %s, want welcome", f.Raw)
	}
	// A healthy first connect says nothing about reconnecting.
	for f := ann.Next(wait); f.Type != "presence"; f = ann.Next(wait) {
		if f.Type == "status" {
			t.Fatalf("status frame on a healthy connect: %s", f.Raw)
		}
	}
	bob := tc.Dial(t, c.URL(), "v2room", "bob", true)
	bob.Expect(wait, "history", tc.IsType("history"))
	ann.Expect(wait, "bob joining", func(f tc.Frame) bool { return f.Type == "joined" && f.Name == "bob" })

	for i := 1; i <= 150; i++ {
		ann.Post(fmt.Sprintf("a-%d", i), fmt.Sprintf("msg %d", i))
	}
	for i := 1; i <= 150; i++ {
		m := bob.Expect(wait, "message", tc.IsMessage)
		if m.Seq != uint64(i) || m.Text != fmt.Sprintf("msg %d", i) || m.ID != fmt.Sprintf("a-%d", i) {
			t.Fatalf("bob got %s, want seq %d", m.Raw, i)
		}
	}
	ack := ann.Expect(wait, "ack of a-150", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "a-150" })
	if ack.Seq != 150 {
		t.Fatalf("ack %s, want seq 150", ack.Raw)
	}

	// A resend of a stored id is acked with its first seq, not stored again.
	ann.Post("a-7", "msg 7")
	dup := ann.Expect(wait, "ack of resent a-7", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "a-7" && f.Seq == 7 })
	_ = dup
	ann.Post("a-151", "msg 151")
	m := bob.Expect(wait, "message 151", tc.IsMessage)
	if m.Seq != 151 || m.ID != "a-151" {
		t.Fatalf("after a resend bob got %s, want seq 151 (the resend must not be stored)", m.Raw)
	}

	// Newest 100 on connect, then page back to the start.
	cat := tc.Dial(t, c.URL(), "v2room", "cat", true)
	h := cat.Expect(wait, "history", tc.IsType("history"))
	if len(h.Messages) != 100 || h.Messages[0].Seq != 52 || h.Messages[99].Seq != 151 || !h.More {
		t.Fatalf("history has %d messages from %d, more=%v; want 52..151 and more", len(h.Messages), h.Messages[0].Seq, h.More)
	}
	cat.SendJSON(map[string]any{"type": "history", "before": 52, "limit": 100})
	page := cat.Expect(wait, "page", func(f tc.Frame) bool { return f.Type == "history" && f.Before == 52 })
	if len(page.Messages) != 51 || page.Messages[0].Seq != 1 || page.More {
		t.Fatalf("page has %d messages from %d, more=%v; want 1..51 and no more", len(page.Messages), page.Messages[0].Seq, page.More)
	}

	// Resume: a reconnect after seq 140 gets exactly 141..151.
	dan := tc.Dial(t, c.URL(), "v2room", "dan", true, "after=140")
	h = dan.Expect(wait, "history", tc.IsType("history"))
	if len(h.Messages) != 11 || h.Messages[0].Seq != 141 || h.Messages[10].Seq != 151 {
		t.Fatalf("resume history has %d messages, want 141..151: %s", len(h.Messages), h.Raw)
	}
}

// TestRoomsSpreadOverNodes: 100 rooms land on every node, each active only
// on the leader of its shard.
func TestRoomsSpreadOverNodes(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	var clients []*tc.Client
	for i := 0; i < 100; i++ {
		room := fmt.Sprintf("room-%d", i)
		cl := tc.Dial(t, c.URL(), room, "u", true)
		cl.Post("x", "hi")
		clients = append(clients, cl)
	}
	for _, cl := range clients {
		cl.Expect(wait, "ack", tc.IsType("ack"))
	}
	perNode := map[string]int{}
	for i := range c.Nodes {
		st := nodeStatus(t, c, c.Config(i).GRPCListen)
		for _, r := range activeRooms(st) {
			if !slices.Contains(st.Leading, r.shard) {
				t.Errorf("room %s active on %s, which does not lead shard %d", r.name, st.NodeId, r.shard)
			}
			perNode[st.NodeId]++
		}
	}
	for i := range c.Nodes {
		id := c.Config(i).ID
		if perNode[id] == 0 {
			t.Errorf("%s hosts none of 100 rooms: %v", id, perNode)
		}
	}
	total := 0
	for _, n := range perNode {
		total += n
	}
	if total != 100 {
		t.Errorf("%d rooms active in all, want 100: %v", total, perNode)
	}
}

// TestNotOwnerRedirects: a node called for an object whose shard it does
// not lead answers "not leader, try X" and does not host it.
func TestNotOwnerRedirects(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	name := "redirect-me"
	leader := c.ObjectLeader(counterObject(name))
	owner := c.Config(leader).ID
	other := (leader + 1) % 3
	resp, err := callAt(t, c, other, name)
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetRedirect()
	if r == nil || r.OwnerId != owner || r.OwnerAddr != c.Config(leader).GRPCListen {
		t.Fatalf("got %v, want a redirect to %s", resp, owner)
	}
	for _, o := range nodeStatus(t, c, c.Config(other).GRPCListen).Objects {
		if o.Class == counter.ClassName && o.Name == name {
			t.Fatalf("non-owner hosts counter %s", name)
		}
	}
}

// TestIdleRoomEvictedAndReactivated: a room nobody is in leaves memory and
// comes back with its history when someone returns.
func TestIdleRoomEvictedAndReactivated(t *testing.T) {
	c := tc.New(t, 3, tc.Options{ObjectIdle: 200 * time.Millisecond})
	room := "sleepy"
	owner := c.Config(c.NodeIndex(c.Owner(room))).GRPCListen
	ann := tc.Dial(t, c.URL(), room, "ann", true)
	ann.Post("1", "before the nap")
	ann.Expect(wait, "ack", tc.IsType("ack"))
	if !hosts(t, c, owner, room) {
		t.Fatal("room not active while in use")
	}
	ann.Conn.Close(1000, "bye")
	tc.Eventually(t, wait, func() error {
		if hosts(t, c, owner, room) {
			return fmt.Errorf("room still active")
		}
		return nil
	})
	bob := tc.Dial(t, c.URL(), room, "bob", true)
	h := bob.Expect(wait, "history", tc.IsType("history"))
	if len(h.Messages) != 1 || h.Messages[0].Text != "before the nap" {
		t.Fatalf("history after reactivation: %s", h.Raw)
	}
	bob.Post("2", "after")
	if a := bob.Expect(wait, "ack", tc.IsType("ack")); a.Seq != 2 {
		t.Fatalf("seq after reactivation %d, want 2", a.Seq)
	}
}

// TestOrderAndLoss: ten clients send concurrently into one room, many in
// the same millisecond. Every client sees the same sequence, the history is
// that sequence, and nothing is lost or duplicated.
func TestOrderAndLoss(t *testing.T) {
	const clients, each = 10, 60
	c := tc.New(t, 3, tc.Options{SendRate: 10000, SendBurst: 10000})
	room := "busy"
	var cs []*tc.Client
	for i := 0; i < clients; i++ {
		cl := tc.Dial(t, c.URL(), room, fmt.Sprintf("user%d", i), true)
		cl.Expect(wait, "history", tc.IsType("history"))
		cs = append(cs, cl)
	}
	var wg sync.WaitGroup
	for i, cl := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				cl.Post(fmt.Sprintf("c%d-%d", i, j), fmt.Sprintf("from %d #%d", i, j))
			}
		}()
	}
	wg.Wait()

	total := clients * each
	seqs := make([][]string, clients)
	for i, cl := range cs {
		for len(seqs[i]) < total {
			m := cl.Expect(wait, "message", tc.IsMessage)
			if m.Seq != uint64(len(seqs[i])+1) {
				t.Fatalf("client %d: got seq %d after %d messages (gap, duplicate or reorder)", i, m.Seq, len(seqs[i]))
			}
			seqs[i] = append(seqs[i], m.ID+"|"+m.Text)
		}
	}
	seen := map[string]bool{}
	for _, s := range seqs[0] {
		if seen[s] {
			t.Fatalf("duplicate message %s", s)
		}
		seen[s] = true
	}
	if len(seen) != total {
		t.Fatalf("%d distinct messages, want %d", len(seen), total)
	}
	for i := 1; i < clients; i++ {
		for k := range seqs[i] {
			if seqs[i][k] != seqs[0][k] {
				t.Fatalf("client %d saw %q at seq %d, client 0 saw %q", i, seqs[i][k], k+1, seqs[0][k])
			}
		}
	}
	// Per sender, its messages keep their send order.
	next := make([]int, clients)
	for _, s := range seqs[0] {
		var i, j int
		fmt.Sscanf(s, "c%d-%d", &i, &j)
		if j != next[i] {
			t.Fatalf("sender %d: message %d stored before %d", i, j, next[i])
		}
		next[i]++
	}
	if got := history(t, c, room); fmt.Sprint(got) != fmt.Sprint(seqs[0]) {
		t.Fatalf("history differs from the live sequence:\nhistory %v\nlive    %v", got, seqs[0])
	}
}

// history reads a room's whole history through the router, paging back.
func history(t *testing.T, c *tc.Cluster, room string) []string {
	t.Helper()
	cl := tc.Dial(t, c.URL(), room, "reader", true)
	h := cl.Expect(wait, "history", tc.IsType("history"))
	msgs := h.Messages
	for h.More {
		cl.SendJSON(map[string]any{"type": "history", "before": msgs[0].Seq, "limit": 100})
		h = cl.Expect(wait, "page", func(f tc.Frame) bool { return f.Type == "history" && f.Before == msgs[0].Seq })
		msgs = append(h.Messages, msgs...)
	}
	out := make([]string, 0, len(msgs))
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Fatalf("history seq %d at position %d", m.Seq, i)
		}
		out = append(out, m.ID+"|"+m.Text)
	}
	return out
}

// callAt calls the counter name's get on node i directly, as a router
// would, and returns the node's answer (a result, a redirect, an object's
// error) or the call's error.
func callAt(t *testing.T, c *tc.Cluster, i int, name string) (*pb.CallResponse, error) {
	t.Helper()
	conn := grpcConn(t, c, security.RoleRouter, c.Config(i).GRPCListen)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	id := counter.Namespace.IDFromName(name)
	return pb.NewObjectsClient(conn).Call(ctx, &pb.CallRequest{Class: counter.ClassName, Id: id.String(), Name: name,
		Method: counter.Get.Name, Arg: []byte("{}")})
}

// grpcConn dials a node as a member of the cluster's PKI with role.
func grpcConn(t *testing.T, c *tc.Cluster, role, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c.Security(role, "test-"+role).ClientCreds()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func nodeStatus(t *testing.T, c *tc.Cluster, addr string) *pb.StatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := pb.NewRoomsClient(grpcConn(t, c, security.RoleAdmin, addr)).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatalf("status of %s: %v", addr, err)
	}
	return st
}

type activeRoom struct {
	name  string
	shard uint32
}

// activeRooms lists the rooms a node runs: the chat app's objects, by the
// name they came by.
func activeRooms(st *pb.StatusResponse) []activeRoom {
	var out []activeRoom
	for _, o := range st.Objects {
		if o.Class == chat.ClassName {
			out = append(out, activeRoom{o.Name, o.Shard})
		}
	}
	return out
}

func hosts(t *testing.T, c *tc.Cluster, addr, room string) bool {
	for _, r := range activeRooms(nodeStatus(t, c, addr)) {
		if r.name == room {
			return true
		}
	}
	return false
}
