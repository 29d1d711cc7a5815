//go:build linux

package router_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/internal/chatclient"
	tc "hellochat/internal/testcluster"
	"hellochat/router"
)

// When every browser of a room falls behind, the router is what cannot
// keep up, not one browser: it stops reading the room's browsers instead
// of closing them as they pass router.MaxGatewaySocketQueueBytes. Here
// two browsers send to each other and read nothing, each far more than
// that bound; once they read again, each was shown every message of the
// other that was accepted, in order, and neither was closed.
func TestRoomWhoseBrowsersAllFallBehindIsHeld(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	rt := startBudgetRouter(t, c, "router-held", 0, 0)
	base, room := "http://"+rt.Addr(), "held"
	const perWriter = 3000
	text := strings.Repeat("x", 4000) // perWriter of them: past the bound
	if perWriter*len(text) < 5*router.MaxGatewaySocketQueueBytes/4 {
		t.Fatalf("%d messages of %d bytes do not pass the queue bound", perWriter, len(text))
	}
	names := []string{"a", "b"}
	conns := map[string]*websocket.Conn{}
	for i, name := range names {
		conns[name] = slowBrowser(t, base, room, name, fmt.Sprintf("127.0.0.%d", 2+i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*budgetWait)
	defer cancel()
	wrote := make(chan error, len(names))
	for _, name := range names {
		go func() {
			for j := range perWriter {
				frame := fmt.Sprintf(`{"type":"send","id":"%s-%d","text":"%d %s"}`, name, j, j, text)
				if err := conns[name].Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
					wrote <- fmt.Errorf("%s's send %d: %w", name, j, err)
					return
				}
			}
			wrote <- nil
		}()
	}
	// The router holds the room's browsers, and what they sent before
	// reaches their queues, which stop growing, below the bound.
	tc.Eventually(t, budgetWait, func() error {
		if st := rt.Stats(); st.Sessions != len(names) {
			return fmt.Errorf("closed: %d sessions of %d (%v)", st.Sessions, len(names), closeReasons(conns))
		} else if st.Held == 0 {

			return fmt.Errorf("not held yet; %d bytes queued", st.QueuedBytes)
		}
		return nil
	})
	if st := rt.Stats(); st.Sessions != len(names) {
		t.Fatalf("a browser was closed: %d sessions of %d", st.Sessions, len(names))
	}
	last, still := -1, 0
	tc.Eventually(t, budgetWait, func() error {
		q := rt.Stats().QueuedBytes
		if q == last {
			still++
		} else {
			last, still = q, 0
		}
		if still < 20 {
			time.Sleep(20 * time.Millisecond) // sampling a gauge until it settles
			return fmt.Errorf("queued bytes still moving: %d", q)
		}
		return nil
	})
	if st := rt.Stats(); st.Sessions != len(names) {
		t.Fatalf("a browser was closed after the hold: %d sessions of %d", st.Sessions, len(names))
	}

	// Now they read: each is answered for each of its messages (acked,
	// or refused as overloaded), and shown the other's accepted ones in
	// order (its own are shown it too, and not counted).
	var mu sync.Mutex
	answered := map[string]int{}
	acked := map[string]map[string]bool{}
	shown := map[string][]string{}
	readErr := map[string]error{}
	for _, name := range names {
		acked[name] = map[string]bool{}
		go func() {
			for {
				_, data, err := conns[name].Read(ctx)
				mu.Lock()
				if err != nil {
					readErr[name] = err
					mu.Unlock()
					return
				}
				for _, line := range bytes.Split(data, []byte("\n")) {
					var f chatclient.Frame
					if err := json.Unmarshal(line, &f); err != nil {
						readErr[name] = fmt.Errorf("frame %.40q: %w", line, err)
						break
					}
					switch {
					case f.Type == "ack":
						answered[name]++
						acked[name][f.ID] = true
					case f.Type == "error" && f.Code == "overloaded":
						answered[name]++
					case f.Type == "message" && !strings.HasPrefix(f.ID, name+"-"):
						shown[name] = append(shown[name], f.ID)
					}
				}
				mu.Unlock()
			}
		}()
	}
	tc.Eventually(t, budgetWait, func() error {
		mu.Lock()
		defer mu.Unlock()
		for i, name := range names {
			if err := readErr[name]; err != nil {
				return fmt.Errorf("%s, reading: %v", name, err)
			}
			if answered[name] < perWriter || len(shown[name]) < len(acked[names[1-i]]) {
				return fmt.Errorf("%s: %d of %d answered, shown %d of %d accepted of %s", name, answered[name], perWriter, len(shown[name]), len(acked[names[1-i]]), names[1-i])
			}
		}
		return nil
	})
	for range names {
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, name := range names {
		var want []string
		for j := range perWriter {
			if id := fmt.Sprintf("%s-%d", names[1-i], j); acked[names[1-i]][id] {
				want = append(want, id)
			}
		}
		if len(want) == 0 {
			t.Errorf("none of %s's messages was accepted", names[1-i])
		}
		if strings.Join(shown[name], ",") != strings.Join(want, ",") {
			t.Errorf("%s was shown %d messages of %s, want its %d accepted ones in order", name, len(shown[name]), names[1-i], len(want))
		}
	}
	t.Logf("%d and %d of %d messages accepted; %d reads held", len(acked["a"]), len(acked["b"]), perWriter, rt.Stats().Held)
}

// closeReasons reads, for a failure's message, why each of conns that
// was closed was, without waiting for those still open.
func closeReasons(conns map[string]*websocket.Conn) map[string]string {
	out := map[string]string{}
	for name, conn := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		for {
			_, _, err := conn.Read(ctx)
			if err != nil {
				out[name] = err.Error()
				break
			}
		}
		cancel()
	}
	return out
}
