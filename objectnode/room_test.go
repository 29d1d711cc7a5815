package objectnode

import (
	"errors"
	"slices"
	"testing"

	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/shard"
)

func ackSeqs(acks []*pb.Ack) []uint64 {
	var out []uint64
	for _, a := range acks {
		out = append(out, a.Seq)
	}
	return out
}

func msgSeqs(ms []*pb.ChatMessage) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

// G3: nothing a room sends (acks, broadcasts, the last seq a new stream is
// told, history) shows a message before its batch commits; the batch after
// it stays invisible until it commits in turn.
func TestRoomNothingLeavesBeforeCommit(t *testing.T) {
	g := newRoomRig(t)
	ann, watcher := g.attach("r1"), g.attach("r2")
	g.join(ann, 1, "ann")
	take(ann)
	take(watcher)

	g.send(ann, 1, "ann", "a", "one")
	g.send(ann, 1, "ann", "b", "two") // waits: one batch in flight per room
	g.send(watcher, 9, "ann", "a", "one")
	if g.inFlight() != 1 {
		t.Fatalf("%d batches in flight, want 1", g.inFlight())
	}
	for _, st := range []*stream{ann, watcher} {
		if s := take(st); len(s.acks)+len(s.messages)+len(s.rejects) > 0 {
			t.Fatalf("before any commit %s was sent %+v", st.router, s)
		}
	}
	late := newStream("r3", DefaultStreamQueue, DefaultStreamQueueBytes)
	a := &attachReq{st: late, result: make(chan error, 1)}
	g.r.handle(roomReq{attach: a})
	<-a.result
	if ev := late.take(); ev[0].GetOpened().GetLastSeq() != 0 {
		t.Fatalf("a stream attached before the commit was told last seq %d", ev[0].GetOpened().GetLastSeq())
	}
	if p, err := readPage(g.store, g.r.name, &pb.PageRequest{}); err != nil || len(p.Messages) != 0 {
		t.Fatalf("history before the commit: %v, %v", p, err)
	}

	g.finish(nil)
	s := take(ann)
	if !slices.Equal(msgSeqs(s.messages), []uint64{1}) || !slices.Equal(ackSeqs(s.acks), []uint64{1}) {
		t.Fatalf("after the first commit ann got messages %v acks %v, want seq 1 only", msgSeqs(s.messages), ackSeqs(s.acks))
	}
	if w := take(watcher); !slices.Equal(msgSeqs(w.messages), []uint64{1}) || len(w.acks) != 1 || !w.acks[0].Duplicate {
		t.Fatalf("the watcher's resend of an id in flight: messages %v acks %+v", msgSeqs(w.messages), w.acks)
	}
	if g.inFlight() != 1 {
		t.Fatalf("the waiting message was not proposed after the commit")
	}
	if p, _ := readPage(g.store, g.r.name, &pb.PageRequest{}); len(p.Messages) != 1 {
		t.Fatalf("history holds %d messages while the second batch is in flight, want 1", len(p.Messages))
	}
	g.finish(nil)
	if s := take(ann); !slices.Equal(msgSeqs(s.messages), []uint64{2}) || !slices.Equal(ackSeqs(s.acks), []uint64{2}) {
		t.Fatalf("after the second commit ann got messages %v acks %v", msgSeqs(s.messages), ackSeqs(s.acks))
	}
}

// G4: a failed batch leaves no hole. Its senders are refused, the next
// batch takes the seqs it would have had, and a message that waited while
// it failed is stored with the next free seq.
func TestRoomSeqsContiguousAcrossFailedBatches(t *testing.T) {
	g := newRoomRig(t)
	ann := g.attach("r1")
	g.send(ann, 1, "ann", "a", "one")
	g.finish(nil) // seq 1
	g.send(ann, 1, "ann", "b", "two")
	g.send(ann, 1, "ann", "c", "three")
	g.send(ann, 1, "ann", "d", "four")
	take(ann)

	failed := g.finish(errors.New("disk on fire")) // b, seq 2
	if !slices.Equal(failed.seqs(), []uint64{2}) {
		t.Fatalf("failed batch wrote seqs %v, want [2]", failed.seqs())
	}
	s := take(ann)
	if len(s.rejects) != 1 || s.rejects[0].ClientId != "b" || s.rejects[0].Code != limits.CodeUnavailable || len(s.acks)+len(s.messages) > 0 {
		t.Fatalf("after the failure ann got %+v, want b refused as unavailable and nothing else", s)
	}
	next := g.finish(nil) // c and d
	if !slices.Equal(next.seqs(), []uint64{2, 3}) || next.guards.Version != 1 || next.guards.Next != 3 {
		t.Fatalf("batch after the failure: seqs %v, guards %+v; want 2,3 from version 1", next.seqs(), next.guards)
	}
	g.send(ann, 1, "ann", "b", "two") // the browser's retry of the refused message
	g.finish(nil)
	if got := msgSeqs(g.history()); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("stored seqs %v, want 1-4", got)
	}
	s = take(ann)
	if !slices.Equal(ackSeqs(s.acks), []uint64{2, 3, 4}) || !slices.Equal(msgSeqs(s.messages), []uint64{2, 3, 4}) {
		t.Fatalf("ann got acks %v messages %v, want 2,3,4", ackSeqs(s.acks), msgSeqs(s.messages))
	}

	// A lost leadership neither acks nor refuses: the batch may commit
	// under the next leader, where the router resends it.
	g.send(ann, 1, "ann", "e", "five")
	g.finish(shard.ErrNotLeader)
	if s := take(ann); len(s.acks)+len(s.rejects)+len(s.messages) > 0 || !g.r.stopping {
		t.Fatalf("after losing leadership: sent %+v, stopping %v", s, g.r.stopping)
	}
}

// G5: a resend (same name and client id) is answered with the seq and the
// server timestamp of the first copy, whether that copy is waiting, in
// flight, committed, or committed before the room was reloaded.
func TestRoomResendGetsOriginalSeqAndTime(t *testing.T) {
	g := newRoomRig(t)
	ann := g.attach("r1")
	g.clock = 5_000
	g.send(ann, 1, "ann", "a", "one")
	g.clock = 6_000
	g.send(ann, 1, "ann", "a", "one") // in flight
	g.finish(nil)
	s := take(ann)
	if len(s.acks) != 2 {
		t.Fatalf("acks %+v, want two", s.acks)
	}
	for i, a := range s.acks {
		if a.Seq != 1 || a.TsMs != 5_000 || a.Duplicate != (i > 0) {
			t.Fatalf("ack %d: %+v, want seq 1 at 5000", i, a)
		}
	}

	g.clock = 9_000
	g.send(ann, 1, "ann", "a", "one") // committed
	if s := take(ann); len(s.acks) != 1 || s.acks[0].Seq != 1 || s.acks[0].TsMs != 5_000 || !s.acks[0].Duplicate {
		t.Fatalf("resend of a committed message: %+v, want seq 1 at 5000, duplicate", s.acks)
	}
	if g.inFlight() != 0 {
		t.Fatal("a resend of a committed message was proposed again")
	}

	// The room reloads (eviction, or a new leader) with a later clock.
	g2 := newRoomRigOn(t, g.store)
	g2.clock = 20_000
	bob := g2.attach("r2")
	g2.send(bob, 7, "ann", "a", "one")
	if s := take(bob); len(s.acks) != 1 || s.acks[0].Seq != 1 || s.acks[0].TsMs != 5_000 || s.acks[0].Session != 7 {
		t.Fatalf("resend after a reload: %+v, want seq 1 at 5000", s.acks)
	}
	// Same id, other sender: a different message.
	g2.send(bob, 8, "bob", "a", "mine")
	g2.finish(nil)
	if s := take(bob); len(s.acks) != 1 || s.acks[0].Seq != 2 || s.acks[0].TsMs != 20_000 || s.acks[0].Duplicate {
		t.Fatalf("bob's message with ann's id: %+v, want a new seq 2", s.acks)
	}
}

// G7: a room's timestamps never go backwards, even when the stored last
// message is stamped later than this node's clock (a leader whose clock ran
// ahead, then a failover to one behind it).
func TestRoomDoesNotUndercutStoredTime(t *testing.T) {
	g := newRoomRig(t)
	ann := g.attach("r1")
	g.clock = 50_000
	g.send(ann, 1, "ann", "a", "from the future")
	g.finish(nil)

	g2 := newRoomRigOn(t, g.store) // the new leader's clock is behind
	g2.clock = 10_000
	st := g2.attach("r1")
	g2.send(st, 1, "ann", "b", "now")
	b := g2.finish(nil)
	if ms := b.messages(t); len(ms) != 1 || ms[0].TsMs != 50_000 {
		t.Fatalf("message after a reload behind the stored time: %+v, want stamped 50000", ms)
	}
	g2.clock = 9_000 // and the clock steps back again
	g2.send(st, 1, "ann", "c", "later")
	g2.finish(nil)
	h := g2.history()
	for i := 1; i < len(h); i++ {
		if h[i].TsMs < h[i-1].TsMs {
			t.Fatalf("seq %d at %d is before seq %d at %d", h[i].Seq, h[i].TsMs, h[i-1].Seq, h[i-1].TsMs)
		}
	}
	if len(h) != 3 {
		t.Fatalf("%d messages stored, want 3", len(h))
	}
}

// A room stopped with a batch in flight waits for it, acks and broadcasts
// it if it commits, and then hands its streams the redirect it was
// stopped with, not one of its own making.
func TestRoomShutdownFinishesBatchAndKeepsRedirect(t *testing.T) {
	g := newRoomRig(t)
	ann := g.attach("r1")
	g.send(ann, 1, "ann", "a", "one")
	g.send(ann, 1, "ann", "b", "two") // waits behind the batch in flight
	b := g.c.held[0]
	g.c.held = g.c.held[1:]
	if err := g.apply(b); err != nil {
		t.Fatal(err)
	}
	b.done(nil) // committed while the room is told to stop
	g.r.shutdown(&pb.Redirect{OwnerId: "node2", OwnerAddr: "127.0.0.1:1", Reason: "leadership moved"})
	s := take(ann)
	if !slices.Equal(ackSeqs(s.acks), []uint64{1}) || !slices.Equal(msgSeqs(s.messages), []uint64{1}) || len(s.rejects) > 0 {
		t.Fatalf("stopping room sent %+v, want the ack and message of seq 1 only", s)
	}
	select {
	case <-ann.closed:
	default:
		t.Fatal("the stream was not ended")
	}
	if r := ann.final.GetRedirect(); r.GetOwnerId() != "node2" || r.GetOwnerAddr() != "127.0.0.1:1" {
		t.Fatalf("the stream was redirected with %v, want the redirect to node2", ann.final)
	}
	if g.inFlight() != 0 {
		t.Fatal("a stopping room proposed the waiting message")
	}
}
