package durable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hellochat/storage"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// room is a small chat room on hibernating sockets: a socket's name is
// its attachment, and what one socket says goes to every socket tagged
// "room", as "name: text".
type room struct {
	testClass
	failClose   bool
	failMessage bool // WebSocketMessage broadcasts, then fails
}

func (c *room) Fetch(ctx context.Context, s *State, w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	ws, err := s.AcceptWebSocket(r, "room", "name:"+name)
	if err == nil {
		err = ws.SetAttachment([]byte(name))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusSwitchingProtocols)
}

func (c *room) broadcast(s *State, line string) error {
	all, err := s.GetWebSockets("room")
	if err != nil {
		return err
	}
	for _, ws := range all {
		if err := ws.Send([]byte(line), true); err != nil {
			return err
		}
	}
	return s.Storage().Put("last", []byte(line))
}

func (c *room) WebSocketMessage(ctx context.Context, s *State, ws WebSocket, msg []byte, text bool) error {
	if string(msg) == "bye" {
		return ws.Close(1000, "asked to")
	}
	err := c.broadcast(s, fmt.Sprintf("%s: %s", ws.Attachment(), msg))
	if err == nil && c.failMessage {
		return errors.New("handler refused")
	}
	return err
}

func (c *room) WebSocketClose(ctx context.Context, s *State, ws WebSocket, code int, reason string, wasClean bool) error {
	if c.failClose {
		return errors.New("handler failed")
	}
	return c.broadcast(s, fmt.Sprintf("%s left (%d)", ws.Attachment(), code))
}

func (c *room) WebSocketError(ctx context.Context, s *State, ws WebSocket, err error) error {
	return c.broadcast(s, fmt.Sprintf("%s broke: %v", ws.Attachment(), err))
}

func newRoomRig(t *testing.T) (*rig, *room) {
	c := &room{}
	c.call = func(_ context.Context, s *State, tag string, _ []byte) ([]byte, error) {
		all, err := s.GetWebSockets(tag)
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, ws := range all {
			ids = append(ids, ws.ID()+"="+string(ws.Attachment()))
		}
		return json.Marshal(ids)
	}
	return newRig(t, c), c
}

// join hands the actor an upgrade of socket for name, as a gateway would.
func join(t *testing.T, a *Actor, socket, name string) int {
	t.Helper()
	ctx := WithUpgrade(context.Background(), socket)
	resp, err := a.Fetch(ctx, httptest.NewRequest("GET", "http://room/ws?name="+name, nil).WithContext(ctx))
	if err != nil {
		t.Fatalf("upgrade of %s: %v", socket, err)
	}
	return resp.StatusCode
}

// sent collects n socket operations the gateway was handed.
func sent(t *testing.T, r *rig, n int) []string {
	t.Helper()
	var got []string
	for range n {
		op := recv(t, r.socks.ops, "a socket operation")
		switch op.kind {
		case opClose:
			got = append(got, fmt.Sprintf("%s closed %d %s", op.socket, op.rare.code, op.rare.reason))
		case opAuto:
			got = append(got, fmt.Sprintf("%s answers %q with %q", op.socket, op.rare.auto.Request, op.rare.auto.Response))
		default:
			got = append(got, op.socket+" <- "+string(op.msg))
		}
	}
	select {
	case op := <-r.socks.ops:
		t.Fatalf("one more socket operation than expected: %+v", op)
	default:
	}
	return got
}

func sockets(t *testing.T, r *rig, tag string) string {
	t.Helper()
	out, err := r.a.Call(context.Background(), tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// Sockets are accepted with tags and an attachment, found by tag,
// written to, and all of it survives the object's eviction: a fresh
// actor on the same storage holds the same sockets.
func TestWebSocketsSurviveEviction(t *testing.T) {
	r, c := newRoomRig(t)
	if st := join(t, r.a, "gw1/1", "ann"); st != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d", st)
	}
	join(t, r.a, "gw2/7", "bob")
	if got := sockets(t, r, "room"); got != `["gw1/1=ann","gw2/7=bob"]` {
		t.Fatalf("sockets tagged room: %s", got)
	}
	if got := sockets(t, r, "name:bob"); got != `["gw2/7=bob"]` {
		t.Fatalf("sockets tagged name:bob: %s", got)
	}
	if err := r.a.WebSocketMessage(context.Background(), "gw1/1", []byte("hi"), true); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sent(t, r, 2), "; "); got != "gw1/1 <- ann: hi; gw2/7 <- ann: hi" {
		t.Fatalf("broadcast: %s", got)
	}

	// Evicted: the actor closes; the next event starts a fresh one.
	r.a.Close()
	r.start(c)
	if err := r.a.WebSocketMessage(context.Background(), "gw2/7", []byte("back?"), true); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sent(t, r, 2), "; "); got != "gw1/1 <- bob: back?; gw2/7 <- bob: back?" {
		t.Fatalf("after eviction: %s", got)
	}
}

// Nothing a socket event sends leaves before its writes are committed;
// a failed commit drops the sends and an accept with them.
func TestWebSocketOutputWaitsForCommit(t *testing.T) {
	r, _ := newRoomRig(t)
	join(t, r.a, "gw/1", "ann")
	for len(r.c.asked) > 0 {
		<-r.c.asked // the join's commit
	}
	r.c.setHold(true)
	done := make(chan error, 1)
	go func() { done <- r.a.WebSocketMessage(context.Background(), "gw/1", []byte("x"), true) }()
	r.c.waitAsked(t)
	select {
	case op := <-r.socks.ops:
		t.Fatalf("%q sent to %s before its commit", op.msg, op.socket)
	default:
	}
	r.c.release(t, nil)
	if err := recv(t, done, "the event"); err != nil {
		t.Fatal(err)
	}
	sent(t, r, 1)

	r.c.setHold(false)
	r.c.setFail(errDisk)
	if err := r.a.WebSocketMessage(context.Background(), "gw/1", []byte("lost"), true); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("event on a failing store: %v", err)
	}
	ctx := WithUpgrade(context.Background(), "gw/2")
	if _, err := r.a.Fetch(ctx, httptest.NewRequest("GET", "http://room/?name=bob", nil).WithContext(ctx)); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("upgrade on a failing store: %v", err)
	}
	sent(t, r, 0)
	r.c.setFail(nil)
	if got := sockets(t, r, ""); got != `["gw/1=ann"]` {
		t.Fatalf("after the failed accept: %s", got)
	}
}

// A browser's close runs the handler and drops the socket, even when the
// handler fails; an object's close reaches the gateway once committed.
func TestWebSocketCloseDropsTheSocket(t *testing.T) {
	r, c := newRoomRig(t)
	for i, name := range []string{"ann", "bob", "cyd"} {
		join(t, r.a, fmt.Sprintf("gw/%d", i), name)
	}
	if err := r.a.WebSocketClose(context.Background(), "gw/0", 1001, "tab closed", true); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sent(t, r, 2), "; "); got != "gw/1 <- ann left (1001); gw/2 <- ann left (1001)" {
		t.Fatalf("close: %s", got)
	}
	if err := r.a.WebSocketMessage(context.Background(), "gw/0", []byte("ghost"), true); !errors.Is(err, ErrUnknownSocket) {
		t.Fatalf("message from a closed socket: %v", err)
	}

	c.failClose = true
	if err := r.a.WebSocketClose(context.Background(), "gw/1", 1006, "", false); err == nil {
		t.Fatal("the failing close handler's error was not returned")
	}
	sent(t, r, 0)
	if got := sockets(t, r, ""); got != `["gw/2=cyd"]` {
		t.Fatalf("after a failed close handler: %s, want the socket dropped anyway", got)
	}

	if err := r.a.WebSocketMessage(context.Background(), "gw/2", []byte("bye"), true); err != nil {
		t.Fatal(err)
	}
	if got := sent(t, r, 1); got[0] != "gw/2 closed 1000 asked to" {
		t.Fatalf("object's close: %v", got)
	}
	if got := sockets(t, r, ""); got != "null" {
		t.Fatalf("after the object closed its last socket: %s", got)
	}
}

func TestWebSocketLimits(t *testing.T) {
	r := newRig(t, &testClass{})
	err := r.call(func(s *State) error {
		_, err := s.AcceptWebSocket(httptest.NewRequest("GET", "http://room/", nil))
		return err
	})
	if !errors.Is(err, ErrNotUpgrade) {
		t.Fatalf("accept without an upgrade: %v", err)
	}
	for what, accept := range map[string]func(s *State, r *http.Request) error{
		"too many tags": func(s *State, r *http.Request) error {
			_, err := s.AcceptWebSocket(r, strings.Split(strings.Repeat("t,", MaxSocketTags+1), ",")[:MaxSocketTags+1]...)
			return err
		},
		"a tag too long": func(s *State, r *http.Request) error {
			_, err := s.AcceptWebSocket(r, strings.Repeat("t", MaxSocketTagBytes+1))
			return err
		},
		"an attachment too large": func(s *State, r *http.Request) error {
			ws, err := s.AcceptWebSocket(r)
			if err != nil {
				return err
			}
			return ws.SetAttachment(make([]byte, MaxAttachmentBytes+1))
		},
		"a message too large": func(s *State, r *http.Request) error {
			ws, err := s.AcceptWebSocket(r)
			if err != nil {
				return err
			}
			return ws.Send(make([]byte, MaxSocketMessageBytes+1), false)
		},
	} {
		err := r.call(func(s *State) error {
			ctx := WithUpgrade(context.Background(), "gw/1")
			return accept(s, httptest.NewRequest("GET", "http://room/", nil).WithContext(ctx))
		})
		if !errors.Is(err, ErrSocketLimit) {
			t.Errorf("%s: %v, want ErrSocketLimit", what, err)
		}
	}
	err = r.call(func(s *State) error {
		ctx := WithUpgrade(context.Background(), "has space")
		_, err := s.AcceptWebSocket(httptest.NewRequest("GET", "http://room/", nil).WithContext(ctx))
		return err
	})
	if !errors.Is(err, ErrSocketLimit) {
		t.Errorf("a socket id with a space: %v", err)
	}
}

// The auto-response reaches the sockets the object holds when it is set,
// each socket accepted later (also by a fresh actor after eviction), and
// is taken away by an empty request; a failed event changes nothing.
func TestWebSocketAutoResponse(t *testing.T) {
	r, c := newRoomRig(t)
	join(t, r.a, "gw/1", "ann")
	sent(t, r, 0)
	// run runs fn as an event of the room, whose own call lists sockets.
	run := func(fn func(s *State) error) error {
		list := c.call
		defer func() { c.call = list }()
		c.call = func(_ context.Context, s *State, _ string, _ []byte) ([]byte, error) { return nil, fn(s) }
		_, err := r.a.Call(context.Background(), "", nil)
		return err
	}
	set := func(req, resp string) error {
		return run(func(s *State) error { return s.SetWebSocketAutoResponse(req, resp) })
	}
	if err := set("ping", "pong"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sent(t, r, 1), "; "); got != `gw/1 answers "ping" with "pong"` {
		t.Fatalf("set with one socket: %s", got)
	}
	r.a.Close()
	r.start(c)
	join(t, r.a, "gw/2", "bob")
	if got := strings.Join(sent(t, r, 1), "; "); got != `gw/2 answers "ping" with "pong"` {
		t.Fatalf("accept after eviction: %s", got)
	}
	err := run(func(s *State) error {
		if err := s.SetWebSocketAutoResponse("hb", "ok"); err != nil {
			return err
		}
		return errors.New("handler failed")
	})
	if err == nil {
		t.Fatal("the failing event's error was not returned")
	}
	sent(t, r, 0)
	var req, resp string
	if err := run(func(s *State) (err error) { req, resp, err = s.WebSocketAutoResponse(); return err }); err != nil || req != "ping" || resp != "pong" {
		t.Fatalf("after a failed set: %q %q %v", req, resp, err)
	}
	if err := set("", "ignored"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sent(t, r, 2), "; "); got != `gw/1 answers "" with ""; gw/2 answers "" with ""` {
		t.Fatalf("taken away: %s", got)
	}
	join(t, r.a, "gw/3", "cyd")
	sent(t, r, 0)
	if err := set(strings.Repeat("p", MaxAutoResponseBytes+1), "pong"); !errors.Is(err, ErrSocketLimit) {
		t.Fatalf("a request too long: %v", err)
	}
}

// Numbered messages are taken in order: one past a gap fails with
// ErrOutOfOrder and runs nothing, a resend of one taken already runs
// again (nothing is skipped), and a handler's error drops its writes but
// still counts the message, so the next is not held up. The count
// survives eviction with the socket's record.
func TestNumberedSocketMessagesInOrder(t *testing.T) {
	r, c := newRoomRig(t)
	join(t, r.a, "gw/1", "ann")
	ctx := context.Background()
	say := func(n uint64, text string) error { return r.a.WebSocketMessageAt(ctx, "gw/1", n, []byte(text), true) }
	if err := say(1, "one"); err != nil {
		t.Fatal(err)
	}
	if err := say(3, "three"); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("a message past a gap: %v, want ErrOutOfOrder", err)
	}
	if err := say(1, "one again"); err != nil {
		t.Fatalf("a resend of a message taken: %v", err)
	}
	if got := strings.Join(sent(t, r, 2), "; "); got != "gw/1 <- ann: one; gw/1 <- ann: one again" {
		t.Fatalf("sent: %s (a gap ran, or a resend did not)", got)
	}
	r.a.Close()
	r.start(c)
	if err := say(2, "two"); err != nil {
		t.Fatal(err)
	}
	if err := say(4, "four"); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("a gap after eviction: %v", err)
	}
	c.failMessage = true
	if err := say(3, "three"); err == nil || !strings.Contains(err.Error(), "handler refused") {
		t.Fatalf("a failing handler: %v", err)
	}
	c.failMessage = false
	if err := say(3, "three again"); err != nil {
		t.Fatalf("a resend of the failed message: %v", err)
	}
	if err := say(4, "four"); err != nil {
		t.Fatalf("the message after a failed one: %v", err)
	}
	if got := strings.Join(sent(t, r, 3), "; "); got != "gw/1 <- ann: two; gw/1 <- ann: three again; gw/1 <- ann: four" {
		t.Fatalf("sent: %s", got)
	}
	if v, _ := r.stored("last"); v != "ann: four" {
		t.Fatalf("stored last %q (the failed handler's write must be gone)", v)
	}
}

// A frame sent to many sockets is copied once, and the sends share the
// copy (the node then sends it to each router once); a class that reuses
// its buffer still has each send carry what it held at the time.
func TestWebSocketBroadcastSharesOneCopy(t *testing.T) {
	r, _ := newRoomRig(t)
	join(t, r.a, "gw/1", "ann")
	join(t, r.a, "gw/2", "bob")
	if err := r.a.WebSocketMessage(context.Background(), "gw/1", []byte("hi"), true); err != nil {
		t.Fatal(err)
	}
	a, b := recv(t, r.socks.ops, "the first send"), recv(t, r.socks.ops, "the second send")
	if string(a.msg) != "ann: hi" || string(b.msg) != "ann: hi" || &a.msg[0] != &b.msg[0] {
		t.Fatalf("broadcast sent %q and %q, sharing a copy: %v", a.msg, b.msg, &a.msg[0] == &b.msg[0])
	}

	// The actor hands the gateway a run of sends of one copy, with one
	// number, as one call; any other send between ends the run, and a
	// socket's operations keep their order.
	f := &fakeSockets{ops: make(chan socketOp, 100), calls: make(chan []string, 100)}
	act := &Actor{cfg: Config{Sockets: f}}
	frame, other := []byte("frame"), []byte("other")
	st := &State{sockOut: []socketOp{
		{socket: "gw/1", kind: opSend, msg: frame, number: 4},
		{socket: "gw/2", kind: opSend, msg: frame, number: 4},
		{socket: "gw/3", kind: opSend, msg: frame, number: 5},
		{socket: "gw/1", kind: opSend, msg: other, number: 5},
		{socket: "gw/4", kind: opSend, msg: frame, number: 5},
		{socket: "gw/2", kind: opDrain},
		{socket: "gw/5", kind: opSend, msg: frame, number: 5},
		{socket: "gw/6", kind: opSend, msg: []byte("frame"), number: 5},
	}}
	act.release(st)
	close(f.calls)
	var calls []string
	for c := range f.calls {
		calls = append(calls, strings.Join(c, "+"))
	}
	if got, want := strings.Join(calls, " "), "gw/1+gw/2 gw/3 gw/1 gw/4 gw/5 gw/6"; got != want {
		t.Fatalf("release sent to %s, want %s", got, want)
	}
	var order []string
	for range 8 {
		op := recv(t, f.ops, "a released op")
		order = append(order, op.socket)
	}
	if got := strings.Join(order, " "); got != "gw/1 gw/2 gw/3 gw/1 gw/4 gw/2 gw/5 gw/6" {
		t.Fatalf("released in the order %s", got)
	}

	s := &State{}
	buf := []byte("abc")
	first, again := s.copyFrame(buf), s.copyFrame(buf)
	buf[0] = 'x'
	changed := s.copyFrame(buf)
	if string(first) != "abc" || &first[0] != &again[0] || string(changed) != "xbc" || &buf[0] == &first[0] {
		t.Fatalf("copies of a reused buffer: %q %q %q", first, again, changed)
	}
}

// A numbered message writes its socket's number under a key of its own,
// not the socket's record again: the record's tags and attachment would
// ride in every message's batch. A record in the old format, with the
// number inside, still counts, and the larger of the two wins.
func TestNumberedMessageWritesOnlyItsNumber(t *testing.T) {
	r, c := newRoomRig(t)
	join(t, r.a, "gw/1", "ann")
	for len(r.c.asked) > 0 {
		<-r.c.asked // the join's commits
	}
	ctx := context.Background()
	if err := r.a.WebSocketMessageAt(ctx, "gw/1", 1, []byte("one"), true); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, op := range r.c.waitAsked(t).ops { // the store records the version itself
		keys = append(keys, fmt.Sprintf("%q=%x", op.Key, op.Value))
	}
	slices.Sort(keys)
	if got, want := strings.Join(keys, " "), fmt.Sprintf("%q=%x %q=%x", socketNumberKey("gw/1"), encodeUint64(1), userKey("last"), "ann: one"); got != want {
		t.Fatalf("a numbered message wrote %s, want %s", got, want)
	}
	sent(t, r, 1)

	// bob's record as the previous format stored it: number 5 inside.
	old, err := json.Marshal(map[string]any{"t": []string{"room"}, "a": []byte("bob"), "n": 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.c.Apply(r.id.StorageObject(), []storage.Op{{Key: socketKey("gw/2"), Value: old}}, storage.Guards{}); err != nil {
		t.Fatal(err)
	}
	say := func(n uint64) error { return r.a.WebSocketMessageAt(ctx, "gw/2", n, []byte(fmt.Sprint(n)), true) }
	for _, evict := range []bool{true, false, true} {
		if evict {
			r.a.Close()
			r.start(c)
		}
		if err := say(7); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("message 7 after 5 (evicted: %v): %v, want ErrOutOfOrder", evict, err)
		}
	}
	if err := say(6); err != nil {
		t.Fatal(err)
	}
	r.a.Close()
	r.start(c)
	if err := say(7); err != nil {
		t.Fatalf("message 7 after 6 was taken, and the actor evicted: %v", err)
	}
	if got := strings.Join(sent(t, r, 4), "; "); got != "gw/1 <- bob: 6; gw/2 <- bob: 6; gw/1 <- bob: 7; gw/2 <- bob: 7" {
		t.Fatalf("sent: %s", got)
	}
}
