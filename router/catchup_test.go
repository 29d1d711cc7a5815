package router

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"hellochat/apps/chat/wire"
	pb "hellochat/proto/roompb"
)

// These tests drive one relay's catch-up logic by hand: the events a node
// would send, and what the relay then asks the node and shows its browsers.
// The whole path over real sockets is covered in ./test.

func testRelay(t *testing.T) *relay {
	t.Helper()
	rt := &Router{log: slog.New(slog.NewTextHandler(io.Discard, nil)), instance: "test.1", idPrefix: "~1-"}
	rt.metrics = newMetrics(rt)
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	t.Cleanup(rt.cancel)
	rl := newRelay(rt, "room")
	rl.newStream()
	return rl
}

// newStream stands in for dial: a fresh stream whose requests the test reads.
func (rl *relay) newStream() {
	ctx, cancel := context.WithCancel(context.Background())
	rl.gen++
	rl.stream = &relayStream{gen: rl.gen, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
	rl.ready = false
	rl.history.reset()
	for _, rs := range rl.sessions {
		rs.newestID, rs.olderID = 0, 0
	}
}

func testSession(rl *relay, id uint64, p wire.Protocol) *relaySession {
	// writerOn: the test reads the queue; no writer takes it.
	s := &session{id: id, proto: p, writerOn: true, closed: make(chan struct{}),
		seedPrefix: rl.rt.idPrefix + "s" + string(rune('0'+id)) + "-"}
	s.rl.Store(rl)
	rs := &relaySession{s: s}
	rl.sessions[id] = rs
	return rs
}

// pages returns the page requests the relay queued since the last call.
func pages(rl *relay) []*pb.PageRequest {
	var out []*pb.PageRequest
	for _, req := range rl.stream.take() {
		if p := req.GetPage(); p != nil {
			out = append(out, p)
		}
	}
	return out
}

func messages(from, to uint64) []*pb.ChatMessage {
	var out []*pb.ChatMessage
	for seq := from; seq <= to; seq++ {
		out = append(out, &pb.ChatMessage{Seq: seq, Name: "ann", Text: "m", ClientId: "c" + string(rune('a'+seq%26)), TsMs: 1})
	}
	return out
}

// shown decodes what a session was sent: seqs of v2 messages (history
// frames and message frames), or the count of seed message frames.
func shown(t *testing.T, rs *relaySession) (seqs []uint64, seed int) {
	t.Helper()
	for _, f := range rs.s.take() {
		var v struct {
			Type      string
			Seq       uint64
			Messages  []struct{ Seq uint64 }
			Timestamp int64
		}
		if err := json.Unmarshal(f, &v); err != nil {
			t.Fatal(err)
		}
		switch {
		case v.Type == "message":
			seqs = append(seqs, v.Seq)
		case v.Type == "history":
			for _, m := range v.Messages {
				seqs = append(seqs, m.Seq)
			}
		case v.Type == "" && v.Timestamp != 0:
			seed++
		}
	}
	rs.s.written()
	return seqs, seed
}

// A browser that was level with the room when its relay lost the stream
// reads what was committed meanwhile, even if the room stays quiet after.
func TestReopenedRelayCatchesUpQuietRoom(t *testing.T) {
	rl := testRelay(t)
	ann := testSession(rl, 1, wire.V2)
	rl.opened(&pb.Opened{LastSeq: 4})
	ps := pages(rl)
	if len(ps) != 1 || ps[0].Forward || ps[0].Before != 5 {
		t.Fatalf("asked %v, want the newest page before 5", ps)
	}
	rl.page(&pb.Page{Id: ps[0].Id, Messages: messages(1, 4)})
	if seqs, _ := shown(t, ann); len(seqs) != 4 || !ann.started || ann.pos != 4 {
		t.Fatalf("history %v, started %v, pos %d", seqs, ann.started, ann.pos)
	}

	// Seq 5 was committed while the stream was down; nothing follows it.
	rl.newStream()
	rl.opened(&pb.Opened{LastSeq: 5})
	ps = pages(rl)
	if len(ps) != 1 || !ps[0].Forward || ps[0].After != 4 {
		t.Fatalf("after the reconnect asked %v, want the page after 4", ps)
	}
	rl.page(&pb.Page{Id: ps[0].Id, Messages: messages(5, 5)})
	if seqs, _ := shown(t, ann); len(seqs) != 1 || seqs[0] != 5 {
		t.Fatalf("after the reconnect shown %v, want [5]", seqs)
	}
	// And live messages continue from there, once each.
	rl.deliver(messages(5, 6), true)
	if seqs, _ := shown(t, ann); len(seqs) != 1 || seqs[0] != 6 {
		t.Fatalf("live shown %v, want [6]", seqs)
	}
}

// Two seed browsers read a long history from the same position; the one
// still busy with its last page is not handed the next one read for the
// other, but waits until it drained and reads its own.
func TestBusyHistoryReaderWaitsForItsOwnPage(t *testing.T) {
	rl := testRelay(t)
	fast := testSession(rl, 1, wire.Seed)
	slow := testSession(rl, 2, wire.Seed)
	rl.opened(&pb.Opened{LastSeq: 300})
	ps := pages(rl)
	if len(ps) != 1 || !ps[0].Forward || ps[0].After != 0 {
		t.Fatalf("asked %v, want one shared page after 0", ps)
	}
	slow.s.enqueue([]byte(strings.Repeat("x", SessionQueueLowBytes+1)))
	rl.page(&pb.Page{Id: ps[0].Id, Messages: messages(1, 100)})
	if _, n := shown(t, fast); n != 100 || fast.pos != 100 {
		t.Fatalf("fast reader shown %d, pos %d", n, fast.pos)
	}
	if slow.pos != 0 {
		t.Fatalf("busy reader was handed the page: pos %d", slow.pos)
	}
	if ps = pages(rl); len(ps) != 1 || ps[0].After != 100 {
		t.Fatalf("asked %v, want only the fast reader's next page", ps)
	}
	// The busy reader's writer drains it: the relay hears of it and reads
	// its page.
	slow.s.take()
	slow.s.written()
	select {
	case <-rl.drained:
	default:
		t.Fatal("the relay was not told the busy reader drained")
	}
	rl.catchUp()
	if ps = pages(rl); len(ps) != 1 || ps[0].After != 0 {
		t.Fatalf("asked %v, want the page after 0 for the drained reader", ps)
	}
}

// A v2 browser paging back is never shown messages past its position
// (they will reach it live), and one request at a time.
func TestOlderPagesStopAtThePosition(t *testing.T) {
	rl := testRelay(t)
	ann := testSession(rl, 1, wire.V2)
	rl.opened(&pb.Opened{LastSeq: 10})
	ps := pages(rl)
	rl.page(&pb.Page{Id: ps[0].Id, Messages: messages(1, 10)})
	shown(t, ann)
	rl.older(ann.s, &pb.PageRequest{Before: 0, Limit: 50})
	if ps = pages(rl); len(ps) != 1 || ps[0].Forward || ps[0].Before != 11 {
		t.Fatalf("asked %v, want a page before 11", ps)
	}
	rl.older(ann.s, &pb.PageRequest{Before: 5})
	if f := ann.s.take(); len(f) != 1 || !strings.Contains(string(f[0]), "rate_limited") {
		t.Fatalf("a second request gave %q, want rate_limited", f)
	}
}
