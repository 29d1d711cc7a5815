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

	lastSeq uint64 // owned by the read loop
	// lastFrom is, for the seed protocol (no seqs), the newest message
	// number shown from each sender: each sender's messages must come
	// 1, 2, 3... Owned by the read loop.
	lastFrom map[string]int64
	seq      atomic.Int64 // last message number used in an id
	sent     atomic.Int64
	acked    atomic.Int64
	closed   atomic.Bool
	closeErr error // why, set before closed

	// What became of each of this client's messages, by number (from 1):
	// answered (acked or refused) and how many other clients were shown it.
	mu       sync.Mutex
	outcome  []uint8 // outcomePending, outcomeAcked, outcomeRefused
	received []int32
}

const (
	outcomePending uint8 = iota
	outcomeAcked
	outcomeRefused
)

// note records something about message n of this client.
func (c *loadClient) note(n int64, outcome uint8, received bool) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for int64(len(c.outcome)) < n {
		c.outcome = append(c.outcome, outcomePending)
		c.received = append(c.received, 0)
	}
	if outcome != outcomePending && c.outcome[n-1] == outcomePending {
		c.outcome[n-1] = outcome
	}
	if received {
		c.received[n-1]++
	}
}

// tally says what became of messages from+1..to: refused, shown to all
// others, or neither (lost, or not yet there); done is false while any is
// unanswered or acked but not yet shown to everyone.
func (c *loadClient) tally(from, to int64, others int32) (refused, shown, lost int64, done bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	done = true
	for n := from + 1; n <= to; n++ {
		var o uint8
		var r int32
		if int(n) <= len(c.outcome) {
			o, r = c.outcome[n-1], c.received[n-1]
		}
		switch {
		case o == outcomeRefused:
			refused++
		case r >= others:
			shown++
		default:
			lost++
			done = false
		}
	}
	return refused, shown, lost, done
}

// run is the shared state of one load run.
type run struct {
	proto     string                 // "v2" or "hello"
	byName    map[string]*loadClient // senders, to note who was shown their messages
	mu        sync.Mutex
	latencies []time.Duration // send -> receive at the other clients of the room
	// stamped is, for each v2 message its sender is shown, the time from
	// its scheduled send to the timestamp its room gave it (when its event
	// ran): the part of the latency before the room's commit, to tell it
	// from the commit and the way back. Millisecond stamps on the same
	// machine's wall clock.
	stamped []time.Duration
	// written is, for each message sent, the time from its scheduled send
	// to the end of its write: the load generator's own lag, and a socket
	// the router stopped reading.
	written   []time.Duration
	delivered atomic.Int64
	dup       atomic.Int64
	reordered atomic.Int64
	errors    atomic.Int64
	measuring atomic.Bool // latencies are recorded only inside the window
}

// add appends d to one of the run's samples, inside the window only.
func (r *run) add(samples *[]time.Duration, d time.Duration) {
	if !r.measuring.Load() {
		return
	}
	r.mu.Lock()
	*samples = append(*samples, d)
	r.mu.Unlock()
}

func (r *run) record(d time.Duration) { r.add(&r.latencies, d) }

func (r *run) recordWritten(d time.Duration) { r.add(&r.written, d) }

// recordStamp takes the room's timestamp (Unix ms) of a message scheduled
// at at (the load generator's clock).
func (r *run) recordStamp(at, tsMillis int64) {
	if tsMillis > 0 {
		r.add(&r.stamped, time.Duration(tsMillis*int64(time.Millisecond)-(epoch.UnixNano()+at)))
	}
}

// frame is the part of a server frame the load generator reads.
type frame struct {
	Type    string `json:"type"`
	Seq     uint64 `json:"seq"`
	ID      string `json:"id"`
	Text    string `json:"text"`
	Message string `json:"message"`
	Name    string `json:"name"`
	TS      int64  `json:"ts"`
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
			path := "/ws"
			if r.proto == "hello" {
				path = "/hello/ws"
			}
			conn, err := chatclient.DialConnAt(dctx, base, path, roomName(c.room), c.name, r.proto == "v2")
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
	r.byName = make(map[string]*loadClient, len(clients))
	for _, c := range clients {
		r.byName[c.name] = c
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
			c.closeErr = err
			c.closed.Store(true)
			return
		}
		chatclient.EachFrame(data, c.handle)
	}
}

// handle checks one frame.
func (c *loadClient) handle(data []byte) {
	var f frame
	if !decodeFrame(data, &f) {
		c.run.errors.Add(1)
		return
	}
	switch f.Type {
	case "":
		c.handleSeed(f)
	case "ack":
		c.acked.Add(1)
		c.note(c.idNumber(f.ID), outcomeAcked, false)
	case "error":
		c.run.errors.Add(1)
		c.note(c.idNumber(f.ID), outcomeRefused, false)
	case "message":
		switch {
		case c.lastSeq != 0 && f.Seq <= c.lastSeq:
			c.run.dup.Add(1)
		case c.lastSeq != 0 && f.Seq != c.lastSeq+1:
			c.run.reordered.Add(1)
		}
		c.lastSeq = max(c.lastSeq, f.Seq)
		at, from, n, ok := parseText(f.Text)
		if ok && from == c.name {
			c.run.recordStamp(at, f.TS)
		}
		if ok && from != c.name {
			c.run.delivered.Add(1)
			c.run.record(time.Duration(now() - at))
			if sender := c.run.byName[from]; sender != nil {
				sender.note(n, outcomePending, true)
			}
		}
	}
}

// handleSeed checks a seed-protocol frame ({message, name, timestamp}):
// the others' messages, each sender's in order, once each.
func (c *loadClient) handleSeed(f frame) {
	at, from, n, ok := parseText(f.Message)
	if !ok || from == c.name {
		return // history, notices
	}
	if c.lastFrom == nil {
		c.lastFrom = map[string]int64{}
	}
	last := c.lastFrom[from]
	switch {
	case n <= last:
		c.run.dup.Add(1)
		return
	case n != last+1:
		c.run.reordered.Add(1)
	}
	c.lastFrom[from] = n
	c.run.delivered.Add(1)
	c.run.record(time.Duration(now() - at))
	if sender := c.run.byName[from]; sender != nil {
		sender.note(n, outcomePending, true)
	}
}

// Message text: "<scheduled send time ns> <sender> <n>", padded to the
// payload size. Latency counts from when the message was due, not from when
// the socket took it: a sender held back by a full socket is the system's
// delay, and must not vanish from the figures (coordinated omission).
func makeText(sender string, n, at int64, pad int) string {
	s := strconv.FormatInt(at, 10) + " " + sender + " " + strconv.FormatInt(n, 10)
	if len(s) < pad {
		s += " " + strings.Repeat("x", pad-len(s)-1)
	}
	return s
}

func parseText(t string) (at int64, from string, n int64, ok bool) {
	a, rest, ok1 := strings.Cut(t, " ")
	b, rest, ok2 := strings.Cut(rest, " ")
	c, _, _ := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return 0, "", 0, false
	}
	v, err1 := strconv.ParseInt(a, 10, 64)
	m, err2 := strconv.ParseInt(c, 10, 64)
	return v, b, m, err1 == nil && err2 == nil
}

func (c *loadClient) id(n int64) string { return c.name + "-" + strconv.FormatInt(n, 36) }

// idNumber is the message number in one of this client's ids (0 if none).
func (c *loadClient) idNumber(id string) int64 {
	rest, ok := strings.CutPrefix(id, c.name+"-")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(rest, 36, 64)
	return n
}

// writeLimit is the longest one frame's write may block before the client
// gives up (and its connection closes).
const writeLimit = 30 * time.Second

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
		id := c.id(n)
		text := makeText(c.name, n, int64(next.Sub(epoch)), pad)
		var b []byte
		if c.run.proto == "v2" {
			b, _ = json.Marshal(map[string]string{"type": "send", "id": id, "text": text})
		} else {
			b, _ = json.Marshal(map[string]string{"message": text})
		}
		// Not ctx: a WebSocket whose write context ends mid-write is closed,
		// and the end of a window must not close a client the router is
		// holding back. Only a write stuck for writeLimit is a failure.
		wctx, cancel := context.WithTimeout(context.Background(), writeLimit)
		err := c.conn.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
			return
		}
		c.sent.Add(1)
		c.run.recordWritten(time.Duration(now() - int64(next.Sub(epoch))))
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
		n := c.seq.Add(1)
		b, _ := json.Marshal(map[string]string{"type": "send", "id": c.id(n), "text": makeText(c.name, n, now(), pad)})
		wctx, cancel := context.WithTimeout(context.Background(), writeLimit)
		err := c.conn.Write(wctx, websocket.MessageText, b)
		cancel()
		if err != nil {
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
