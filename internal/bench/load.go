package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"hellochat/internal/chatclient"
)

// epoch is the load generator's own monotonic clock: a message carries its
// send time on this clock, and the receiver (this same process) subtracts.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// loadClient is one WebSocket client of a run: it sends on a schedule and
// checks every message it is shown (order, duplicates, latency).
type loadClient struct {
	run  *run
	room int
	idx  int // within the room
	name string
	conn *websocket.Conn

	lastSeq uint64       // owned by the read loop
	seq     atomic.Int64 // last message number used in an id
	sent    atomic.Int64
	acked   atomic.Int64
	closed  atomic.Bool
}

// run is the shared state of one load run.
type run struct {
	proto     string // "v2" or "seed"
	mu        sync.Mutex
	latencies []time.Duration // send -> receive at the other clients of the room
	delivered atomic.Int64
	dup       atomic.Int64
	reordered atomic.Int64
	errors    atomic.Int64
	measuring atomic.Bool // latencies are recorded only inside the window
}

func (r *run) record(d time.Duration) {
	if !r.measuring.Load() {
		return
	}
	r.mu.Lock()
	r.latencies = append(r.latencies, d)
	r.mu.Unlock()
}

// frame is the part of a server frame the load generator reads.
type frame struct {
	Type    string `json:"type"`
	Seq     uint64 `json:"seq"`
	ID      string `json:"id"`
	Text    string `json:"text"`
	Message string `json:"message"`
	Name    string `json:"name"`
}

// dialAll opens rooms x perRoom clients, at most parallel dials at a time,
// and returns them with the rate of successful opens.
func dialAll(ctx context.Context, base string, r *run, rooms, perRoom, parallel int, roomName func(int) string) ([]*loadClient, float64, error) {
	clients := make([]*loadClient, 0, rooms*perRoom)
	for room := 0; room < rooms; room++ {
		for i := 0; i < perRoom; i++ {
			clients = append(clients, &loadClient{run: r, room: room, idx: i, name: fmt.Sprintf("r%d-c%d", room, i)})
		}
	}
	sem := make(chan struct{}, parallel)
	var firstErr error
	var errMu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			conn, err := chatclient.DialConn(dctx, base, roomName(c.room), c.name, r.proto == "v2")
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				return
			}
			c.conn = conn
		}()
	}
	wg.Wait()
	opens := float64(len(clients)) / time.Since(start).Seconds()
	if firstErr != nil {
		closeAll(clients)
		return nil, 0, firstErr
	}
	for _, c := range clients {
		go c.read()
	}
	return clients, opens, nil
}

func closeAll(clients []*loadClient) {
	for _, c := range clients {
		if c.conn != nil {
			c.conn.CloseNow()
		}
	}
}

// read checks every frame: a message must have the next seq; a message
// from another client yields one latency sample.
func (c *loadClient) read() {
	for {
		_, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.closed.Store(true)
			return
		}
		var f frame
		if json.Unmarshal(data, &f) != nil {
			c.run.errors.Add(1)
			continue
		}
		switch f.Type {
		case "ack":
			c.acked.Add(1)
		case "error":
			c.run.errors.Add(1)
		case "message":
			switch {
			case c.lastSeq != 0 && f.Seq <= c.lastSeq:
				c.run.dup.Add(1)
			case c.lastSeq != 0 && f.Seq != c.lastSeq+1:
				c.run.reordered.Add(1)
			}
			c.lastSeq = max(c.lastSeq, f.Seq)
			if sentAt, from, ok := parseText(f.Text); ok && from != c.name {
				c.run.delivered.Add(1)
				c.run.record(time.Duration(now() - sentAt))
			}
		}
	}
}

// Message text: "<send time ns> <sender> <n>", padded to the payload size.
func makeText(sender string, n int64, pad int) string {
	s := strconv.FormatInt(now(), 10) + " " + sender + " " + strconv.FormatInt(n, 10)
	if len(s) < pad {
		s += " " + strings.Repeat("x", pad-len(s)-1)
	}
	return s
}

func parseText(t string) (sentAt int64, from string, ok bool) {
	a, rest, ok1 := strings.Cut(t, " ")
	b, _, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return 0, "", false
	}
	v, err := strconv.ParseInt(a, 10, 64)
	return v, b, err == nil
}

// send paces one client at rate messages per second until ctx ends. It
// catches up after stalls rather than silently sending less, so the rate
// asked for is the rate offered.
func (c *loadClient) send(ctx context.Context, rate float64, pad int) {
	if rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	// Spread clients over the first interval so they do not fire together.
	next := time.Now().Add(time.Duration(rand.Int64N(int64(interval) + 1)))
	for {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return
		}
		// Ids stay unique across windows: a reused id is (rightly) deduped
		// by the room and never delivered again.
		n := c.seq.Add(1)
		id := c.name + "-" + strconv.FormatInt(n, 36)
		text := makeText(c.name, n, pad)
		var b []byte
		if c.run.proto == "v2" {
			b, _ = json.Marshal(map[string]string{"type": "send", "id": id, "text": text})
		} else {
			b, _ = json.Marshal(map[string]string{"message": text})
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := c.conn.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			return
		}
		c.sent.Add(1)
		next = next.Add(interval)
	}
}

// fill sends n messages as fast as the room acks them, keeping at most
// fillWindow unacknowledged, so the router never refuses one.
func (c *loadClient) fill(ctx context.Context, n, pad int) {
	const fillWindow = 500
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		for c.sent.Load()-c.acked.Load() >= fillWindow {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
		id := c.name + "-" + strconv.FormatInt(c.seq.Add(1), 36)
		b, _ := json.Marshal(map[string]string{"type": "send", "id": id, "text": makeText(c.name, int64(i), pad)})
		if c.conn.Write(ctx, websocket.MessageText, b) != nil {
			return
		}
		c.sent.Add(1)
	}
}

// percentiles of the samples, in milliseconds.
func percentiles(ds []time.Duration) (p50, p90, p99, p999, maxv float64) {
	if len(ds) == 0 {
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i]) / 1e6
	}
	return at(0.50), at(0.90), at(0.99), at(0.999), float64(s[len(s)-1]) / 1e6
}
