//go:build linux

package router

import (
	"context"
	"errors"
	"hellochat/apps/chat/wire"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// parkedSession is a session on a real socket with a real parker, in a
// relay nobody runs: what the session hands it waits in its inbox.
func parkedSession(t *testing.T) (*session, *websocket.Conn, *relay, *parker) {
	p, err := newParker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	s, client := sessionPair(t)
	s.id, s.proto, s.parker = 7, wire.V2, p
	rt := &Router{sessions: map[*session]bool{s: true}, connsByAddr: map[string]*addrState{}}
	rl := newRelay(rt, "room")
	return s, client, rl, p
}

func tracked(rl *relay, s *session) bool {
	rl.rt.mu.Lock()
	defer rl.rt.mu.Unlock()
	return rl.rt.sessions[s]
}

// nextReq waits for what the session handed its relay.
func nextReq(t *testing.T, rl *relay) relayReq {
	t.Helper()
	select {
	case <-rl.inbox.Ready:
		q, _ := rl.inbox.Pop()
		return q
	case <-time.After(10 * time.Second):
		t.Fatal("the session handed its relay nothing")
		return relayReq{}
	}
}

// An idle session's reader parks and its goroutine ends; a frame from the
// browser brings it back, and it parks again; the browser leaving ends the
// session (it leaves its relay and the router).
func TestIdleSessionParks(t *testing.T) {
	s, client, rl, p := parkedSession(t)
	ended := make(chan struct{})
	go func() {
		s.read(rl, false)
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader of an idle session did not end")
	}
	if p.parked() != 1 {
		t.Fatalf("%d parked, want 1", p.parked())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := 0; round < 3; round++ {
		if err := client.Write(ctx, websocket.MessageText, []byte(`{"type":"typing"}`)); err != nil {
			t.Fatal(err)
		}
		q := nextReq(t, rl)
		if q.from != s || q.req.GetTyping() == nil {
			t.Fatalf("round %d: relay got %+v, want the typing notice", round, q)
		}
		s.lastTyping = time.Time{} // the next notice is not throttled
		waitFor(t, "the session to park again", func() bool { return p.parked() == 1 })
	}

	client.Close(websocket.StatusNormalClosure, "bye")
	if q := nextReq(t, rl); q.leave != s {
		t.Fatalf("relay got %+v, want the leave", q)
	}
	waitFor(t, "the session to leave the router", func() bool { return !tracked(rl, s) })
	if p.parked() != 0 {
		t.Fatalf("%d parked after the browser left", p.parked())
	}
}

// A session killed while parked tells its browser why, leaves its relay
// and the router, and is not resumed.
func TestKillParkedSession(t *testing.T) {
	s, client, rl, p := parkedSession(t)
	s.rl.Store(rl)
	go s.read(rl, false)
	waitFor(t, "the session to park", func() bool { return p.parked() == 1 })
	s.kill(websocket.StatusGoingAway, "router shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := client.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "router shutting down" {
		t.Fatalf("client read %v, want close 1001 with the reason", err)
	}
	if q := nextReq(t, rl); q.leave != s {
		t.Fatalf("relay got %+v, want the leave", q)
	}
	waitFor(t, "the session to leave the router", func() bool { return !tracked(rl, s) })
	if p.parked() != 0 {
		t.Fatalf("%d parked after the kill", p.parked())
	}
}
