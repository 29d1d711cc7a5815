package failover

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/internal/chatclient"
)

// Stopping the load stops new sends; it must not abort a send being
// written, nor write one under a cancelled context: either closes the
// connection (the WebSocket library closes a connection whose write's
// context ends), which the checks then count as a browser disconnect and
// a message neither acknowledged nor refused. A netlab run in CI saw 5
// clients disconnected and 14 messages unanswered so, all at the load's
// last tick.
func TestStoppingTheLoadAbortsNoSend(t *testing.T) {
	var mu sync.Mutex
	got := map[string]bool{} // ids the server read
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"hellochat.v2"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			var f struct{ ID string }
			if json.Unmarshal(b, &f) == nil {
				mu.Lock()
				got[f.ID] = true
				mu.Unlock()
			}
		}
	}))
	defer srv.Close()

	const clients, rounds = 40, 10
	for round := range rounds {
		var cls []*client
		for i := range clients {
			cc, err := chatclient.Dial(context.Background(), srv.URL, "r", fmt.Sprint(i), true)
			if err != nil {
				t.Fatal(err)
			}
			cls = append(cls, &client{room: "r", name: fmt.Sprintf("c%d-%d", round, i), cc: cc, sends: map[string]*sent{}})
		}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, cl := range cls {
			wg.Add(1)
			go func() { defer wg.Done(); cl.send(ctx, 500) }()
		}
		// Stop once every client has sent a few.
		deadline := time.Now().Add(10 * time.Second)
		for !allSent(cls, 3) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		stop()
		wg.Wait()
		for _, cl := range cls {
			if cl.cc.IsClosed() {
				t.Fatalf("round %d: stopping the load closed %s's connection: %v", round, cl.name, cl.cc.CloseErr())
			}
		}
		// Every recorded send reaches the server (it reads in order, so
		// once a later frame of the same client arrived, so did these).
		waitUntil := time.Now().Add(10 * time.Second)
		for _, cl := range cls {
			for _, id := range cl.order {
				for {
					mu.Lock()
					ok := got[id]
					mu.Unlock()
					if ok {
						break
					}
					if time.Now().After(waitUntil) {
						t.Fatalf("round %d: %s recorded as sent, never written", round, id)
					}
					time.Sleep(time.Millisecond)
				}
			}
			cl.cc.Conn.CloseNow()
		}
	}
}

func allSent(cls []*client, n int) bool {
	for _, cl := range cls {
		cl.mu.Lock()
		k := len(cl.order)
		cl.mu.Unlock()
		if k < n {
			return false
		}
	}
	return true
}
