package failover

import (
	"strings"
	"testing"
	"time"

	"hellochat/internal/chatclient"
)

// feed runs a client's reader over frames, as if the router had sent
// them, and returns once it has taken them all.
func feed(cl *client, frames ...chatclient.Frame) {
	cl.cc = &chatclient.Client{Frames: make(chan chatclient.Frame, len(frames)), Closed: make(chan struct{})}
	for _, f := range frames {
		cl.cc.Frames <- f
	}
	done := make(chan struct{})
	go func() { defer close(done); cl.read() }()
	// The reader takes what is still queued when the connection closes,
	// as it must in a run.
	close(cl.cc.Closed)
	<-done
	cl.closedAt = time.Time{} // the test's own close is no browser disconnect
}

// sentAll records ids as sent by cl, in order.
func sentAll(cl *client, ids ...string) {
	for _, id := range ids {
		cl.sends[id] = &sent{at: fixtureStart}
		cl.order = append(cl.order, id)
	}
}

func msg(seq uint64, id string, ts int64) chatclient.Frame {
	return chatclient.Frame{Type: "message", Seq: seq, ID: id, TS: ts}
}

func ack(seq uint64, id string, ts int64) chatclient.Frame {
	return chatclient.Frame{Type: "ack", Seq: seq, ID: id, TS: ts}
}

func newClient(name string) *client {
	return &client{room: "r", name: name, sends: map[string]*sent{}}
}

// TestVerifyPassesACleanRoom: two clients, each message acked once and
// seen by both in seq order, one message refused by the router with an
// error frame naming it.
func TestVerifyPassesACleanRoom(t *testing.T) {
	a, b := newClient("a"), newClient("b")
	sentAll(a, "a-0", "a-1", "a-2")
	sentAll(b, "b-0")
	feed(a, msg(1, "a-0", 10), ack(1, "a-0", 10), msg(2, "b-0", 11), msg(3, "a-1", 11), ack(3, "a-1", 11),
		chatclient.Frame{Type: "error", Code: "overloaded", ID: "a-2"})
	feed(b, msg(1, "a-0", 10), msg(2, "b-0", 11), ack(2, "b-0", 11), msg(3, "a-1", 11))
	var res result
	checkRoom("r", histOf("a-0", "b-0", "a-1"), []*client{a, b}, &res)
	if res.failed() {
		t.Fatalf("a clean room failed: %+v", res)
	}
}

// TestVerifyFailsWhatItUsedToTolerate: a message neither acknowledged nor
// refused, a client that never saw the room's last message, and an error
// frame about nothing the client sent each fail the run on their own.
func TestVerifyFailsWhatItUsedToTolerate(t *testing.T) {
	for _, c := range []struct {
		name  string
		frame func(a, b *client)
		want  string
	}{
		{"never acknowledged, never refused", func(a, b *client) {
			sentAll(a, "a-0", "a-1")
			feed(a, msg(1, "a-0", 10), ack(1, "a-0", 10))
			feed(b, msg(1, "a-0", 10))
		}, "a-1"},
		{"missing the tail", func(a, b *client) {
			sentAll(a, "a-0", "a-1")
			feed(a, msg(1, "a-0", 10), ack(1, "a-0", 10), msg(2, "a-1", 11), ack(2, "a-1", 11))
			feed(b, msg(1, "a-0", 10))
		}, "b"},
		{"an error frame it ignored", func(a, b *client) {
			sentAll(a, "a-0")
			feed(a, msg(1, "a-0", 10), ack(1, "a-0", 10), chatclient.Frame{Type: "error", Code: "rate_limited", Raw: `{"type":"error","code":"rate_limited"}`})
			feed(b, msg(1, "a-0", 10))
		}, "rate_limited"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := newClient("a"), newClient("b")
			c.frame(a, b)
			hist := []string{"a-0"}
			if c.name == "missing the tail" {
				hist = append(hist, "a-1")
			}
			var res result
			checkRoom("r", histOf(hist...), []*client{a, b}, &res)
			if !res.failed() {
				t.Fatalf("passed: %+v", res)
			}
			var all []string
			for _, ch := range checks(Config{}, nil, res) {
				all = append(all, ch.Examples...)
			}
			if ex := strings.Join(all, "\n"); !strings.Contains(ex, c.want) {
				t.Errorf("no example names %q:\n%s", c.want, ex)
			}
		})
	}
}

// histOf is a history of ids, the first at ts 10 and the rest at 11, as
// the tests' frames have them.
func histOf(ids ...string) []histMsg {
	h := make([]histMsg, len(ids))
	for i, id := range ids {
		h[i] = histMsg{id: id, ts: 10 + int64(min(i, 1))}
	}
	return h
}
