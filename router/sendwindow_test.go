package router

import (
	"fmt"
	"strings"
	"testing"

	pb "hellochat/proto/roompb"
)

func windowSend(session uint64, n int, text string) *pb.Send {
	return &pb.Send{Session: session, ClientId: fmt.Sprint(n), Text: text, Name: "n"}
}

// The window writes at most cwnd sends, more as answers come, everything
// unanswered again on a new stream, and refuses past its hard bounds.
func TestSendWindowPacesAndRefuses(t *testing.T) {
	w := newSendWindow()
	var wrote []string
	write := func(s *pb.Send) { wrote = append(wrote, s.ClientId) }
	for i := 0; i < MaxUnacked; i++ {
		if !w.add(windowSend(1, i, "x")) {
			t.Fatalf("send %d refused below MaxUnacked", i)
		}
	}
	if w.add(windowSend(1, MaxUnacked, "x")) {
		t.Fatal("a send past MaxUnacked was taken")
	}
	if !w.full() {
		t.Fatal("window not full with MaxUnacked sends")
	}
	w.pump(write)
	if len(wrote) != RelayWindow {
		t.Fatalf("wrote %d sends at once, want cwnd = %d", len(wrote), RelayWindow)
	}

	// The node dropped the stream as too slow: on the next stream only half go out.
	w.slowDown()
	w.restart()
	wrote = nil
	w.pump(write)
	if len(wrote) != RelayWindow/2 || wrote[0] != "0" {
		t.Fatalf("after a slow-down wrote %d from %s, want %d from the first", len(wrote), wrote[0], RelayWindow/2)
	}
	// Answers make room for more, out of order too, and the head is trimmed.
	for i := 1; i <= 10; i++ {
		if w.answer(sendKey{1, fmt.Sprint(i)}) == nil {
			t.Fatalf("send %d not waiting", i)
		}
	}
	wrote = nil
	w.pump(write)
	if len(wrote) != 10 || wrote[0] != fmt.Sprint(RelayWindow/2) {
		t.Fatalf("after 10 answers wrote %v", wrote)
	}
	if w.answer(sendKey{1, "1"}) != nil {
		t.Fatal("an answered send answered twice")
	}
	if w.answer(sendKey{1, "0"}) == nil || len(w.entries) != MaxUnacked-11 {
		t.Fatalf("head not trimmed: %d entries", len(w.entries))
	}
	if w.len() != MaxUnacked-11 {
		t.Fatalf("len %d", w.len())
	}
	// Acks grow the window back by one per window of
	// acks: 522 sends were written, 11 answered so far.
	for i := 11; i < RelayWindow/2+10; i++ {
		w.answer(sendKey{1, fmt.Sprint(i)})
	}
	if w.cwnd != RelayWindow/2+1 {
		t.Fatalf("cwnd %d after a window of acks, want %d", w.cwnd, RelayWindow/2+1)
	}
	w.clear()
	if w.len() != 0 || w.bytes != 0 || w.full() {
		t.Fatal("clear left sends behind")
	}
}

// The byte bounds hold too: big messages fill the window before their count does.
func TestSendWindowBytes(t *testing.T) {
	w := newSendWindow()
	big := strings.Repeat("b", 4000)
	n := 0
	for w.add(windowSend(2, n, big)) {
		n++
	}
	if n >= MaxUnacked || w.bytes > MaxUnackedBytes || w.bytes+sendBytes(windowSend(2, n, big)) <= MaxUnackedBytes {
		t.Fatalf("took %d sends of 4 KB (%d bytes)", n, w.bytes)
	}
	if !w.full() {
		t.Fatal("not full")
	}
	if w.slowDown(); w.cwnd < minSendWindow {
		t.Fatal("cwnd under its floor")
	}
	for i := 0; i < 20; i++ {
		w.slowDown()
	}
	if w.cwnd != minSendWindow {
		t.Fatalf("cwnd %d after many slow-downs, want %d", w.cwnd, minSendWindow)
	}
}
