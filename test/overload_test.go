package test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/internal/chatclient"
	tc "hellochat/internal/testcluster"
	"hellochat/limits"
)

// burster is one client of a room driven past its capacity: it sends as
// fast as its socket takes frames, and records everything it is shown.
type burster struct {
	name string
	v2   bool
	cl   *chatclient.Client
	sent int

	mu       sync.Mutex
	msgs     []tc.Frame        // chat messages, in the order shown
	acks     map[string]uint64 // v2: id -> seq
	errs     map[string]string // v2: id -> error code
	seedErrs []string          // seed: the system error frames
	other    []string          // frames that should not have come
	history  bool              // v2: its connect-time history came
	users    int               // v2: the most users a presence frame listed
}

func dialBurster(t *testing.T, base, room, name string, v2 bool) *burster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cl, err := chatclient.Dial(ctx, base, room, name, v2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Conn.CloseNow() })
	b := &burster{name: name, v2: v2, cl: cl, acks: map[string]uint64{}, errs: map[string]string{}}
	go b.collect()
	return b
}

func (b *burster) collect() {
	for {
		var f tc.Frame
		select {
		case f = <-b.cl.Frames:
		case <-b.cl.Closed:
			return
		}
		b.mu.Lock()
		switch {
		case !b.v2 && f.Name == "system":
			b.seedErrs = append(b.seedErrs, f.Message)
		case !b.v2 && f.Timestamp != 0:
			b.msgs = append(b.msgs, f)
		case !b.v2: // join and leave notices
		case f.Type == "message":
			b.msgs = append(b.msgs, f)
		case f.Type == "history":
			b.history = true
			b.msgs = append(b.msgs, f.Messages...)
		case f.Type == "ack":
			b.acks[f.ID] = f.Seq
		case f.Type == "error" && f.ID != "":
			b.errs[f.ID] = f.Code
		case f.Type == "presence":
			b.users = len(f.Users)
		case f.Type == "joined":
			b.users++
		case f.Type == "left":
			b.users--
		case f.Type == "welcome", f.Type == "status":
		default:
			b.other = append(b.other, f.Raw)
		}
		b.mu.Unlock()
	}
}

// text is the text of message i of this client: unique in the room.
func (b *burster) text(i int) string { return fmt.Sprintf("%s %d", b.name, i) }

// burst sends n messages as fast as the socket takes them (bounded by a
// deadline) and returns how many were written.
func (b *burster) burst(n int, deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for i := 0; i < n; i++ {
		var frame any = map[string]string{"message": b.text(i)}
		if b.v2 {
			frame = map[string]string{"type": "send", "id": b.id(i), "text": b.text(i)}
		}
		data, _ := json.Marshal(frame)
		if err := b.cl.Write(ctx, websocket.MessageText, data); err != nil {
			return
		}
		b.sent++
	}
}

func (b *burster) id(i int) string { return fmt.Sprintf("%s-%d", b.name, i) }

func (b *burster) shown() []tc.Frame {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

func (b *burster) texts() []string {
	var out []string
	for _, m := range b.shown() {
		out = append(out, m.Name+": "+m.Text+m.Message)
	}
	return out
}

// burstOutcome is what a burst came to in one room.
type burstOutcome struct {
	committed, refused int
}

// burstRoom drives one room with v2n v2 and seedn seed clients, each
// sending each messages as fast as it can, and checks that every message
// ended either committed once and shown to every other client in the one
// order, or refused with an error frame to its sender; and that nobody was
// disconnected.
func burstRoom(t *testing.T, c *tc.Cluster, room string, v2n, seedn, each int) burstOutcome {
	t.Helper()
	var cs []*burster
	for i := 0; i < v2n; i++ {
		cs = append(cs, dialBurster(t, c.URL(), room, fmt.Sprintf("v%d", i), true))
	}
	for i := 0; i < seedn; i++ {
		cs = append(cs, dialBurster(t, c.URL(), room, fmt.Sprintf("s%d", i), false))
	}
	watch := cs[0] // a v2 client sees every message, its own too
	tc.Eventually(t, wait, func() error {
		watch.mu.Lock()
		defer watch.mu.Unlock()
		if !watch.history || watch.users < len(cs) {
			return fmt.Errorf("%d of %d clients in the room", watch.users, len(cs))
		}
		return nil
	})

	start := time.Now()
	deadline := start.Add(90 * time.Second)
	var wg sync.WaitGroup
	for _, b := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.burst(each, deadline)
		}()
	}
	wg.Wait()
	sendTime := time.Since(start)

	// Every send ends in an ack or an error, and every committed message
	// reaches every client.
	tc.Eventually(t, 90*time.Second, func() error {
		view := watch.texts()
		for _, b := range cs {
			b.mu.Lock()
			answered, shown := len(b.acks)+len(b.errs), len(b.msgs)
			seedErrs := len(b.seedErrs)
			var lastAck uint64
			for _, seq := range b.acks {
				lastAck = max(lastAck, seq)
			}
			b.mu.Unlock()
			if b.v2 && answered < b.sent {
				return fmt.Errorf("%s: %d of %d sends answered", b.name, answered, b.sent)
			}
			if lastAck > uint64(len(view)) {
				return fmt.Errorf("%s: acked seq %d, %s shows %d messages", b.name, lastAck, watch.name, len(view))
			}
			own := 0
			for _, v := range view {
				if strings.HasPrefix(v, b.name+": ") {
					own++
				}
			}
			if !b.v2 && own+seedErrs < b.sent {
				return fmt.Errorf("%s: %d committed and %d refused of %d sent", b.name, own, seedErrs, b.sent)
			}
			if want := len(view) - map[bool]int{true: 0, false: own}[b.v2]; shown < want {
				return fmt.Errorf("%s: shown %d of %d messages", b.name, shown, want)
			}
		}
		return nil
	})

	view := watch.shown()
	texts := watch.texts()
	for i, m := range view {
		if m.Seq != uint64(i+1) {
			t.Fatalf("%s: message %d has seq %d: a gap, duplicate or reorder", watch.name, i, m.Seq)
		}
	}
	inView := map[string]int{}
	for _, v := range texts {
		if inView[v]++; inView[v] > 1 {
			t.Fatalf("%q stored twice", v)
		}
	}
	var out burstOutcome
	for _, b := range cs {
		got := b.texts()
		b.mu.Lock()
		if b.cl.IsClosed() {
			t.Errorf("%s was disconnected: %v", b.name, b.cl.CloseErr())
		}
		if len(b.other) > 0 {
			t.Errorf("%s got unexpected frames: %v", b.name, b.other[:min(3, len(b.other))])
		}
		if b.v2 {
			if !slices.Equal(got, texts) {
				t.Errorf("%s saw %d messages, %s saw %d: not the same sequence", b.name, len(got), watch.name, len(texts))
			}
			for i := 0; i < b.sent; i++ {
				seq, acked := b.acks[b.id(i)]
				code, refused := b.errs[b.id(i)]
				stored := inView[b.name+": "+b.text(i)] == 1
				switch {
				case acked && refused:
					t.Errorf("%s: %s both acked and refused", b.name, b.id(i))
				case acked && (!stored || seq == 0 || seq > uint64(len(view)) || view[seq-1].Text != b.text(i)):
					at := slices.IndexFunc(view, func(f tc.Frame) bool { return f.Text == b.text(i) })
					t.Errorf("%s: %s acked as seq %d but stored at index %d (seq %d)", b.name, b.id(i), seq, at, at+1)
				case refused && stored:
					t.Errorf("%s: %s refused (%s) but stored", b.name, b.id(i), code)
				case refused && code != limits.CodeOverloaded:
					t.Errorf("%s: %s refused with %s", b.name, b.id(i), code)
				case !acked && !refused:
					t.Errorf("%s: %s neither acked nor refused", b.name, b.id(i))
				}
				if acked {
					out.committed++
				} else {
					out.refused++
				}
			}
		} else {
			var want []string
			own := 0
			for _, v := range texts {
				if strings.HasPrefix(v, b.name+": ") {
					own++
				} else {
					want = append(want, v)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s (seed) saw %d messages, want the %d of the others in order", b.name, len(got), len(want))
			}
			for _, e := range b.seedErrs {
				if !strings.Contains(e, "overloaded") {
					t.Errorf("%s: unexpected error %q", b.name, e)
				}
			}
			if own+len(b.seedErrs) != b.sent {
				t.Errorf("%s: %d committed + %d refused != %d sent", b.name, own, len(b.seedErrs), b.sent)
			}
			out.committed += own
			out.refused += len(b.seedErrs)
		}
		b.mu.Unlock()
	}

	// The history a new seed client is sent is that same sequence.
	audit := dialBurster(t, c.URL(), room, "auditor", false)
	tc.Eventually(t, wait, func() error {
		if n := len(audit.shown()); n < len(texts) {
			return fmt.Errorf("auditor has %d of %d messages of history", n, len(texts))
		}
		return nil
	})
	if got := audit.texts(); !slices.Equal(got, texts) {
		t.Errorf("history holds %d messages, not the %d shown live in order", len(got), len(texts))
	}
	t.Logf("%s: %d clients sent %d messages in %v: %d committed, %d refused", room, len(cs),
		out.committed+out.refused, sendTime.Round(time.Millisecond), out.committed, out.refused)
	for _, b := range append(cs, audit) {
		b.cl.Conn.Close(websocket.StatusNormalClosure, "")
	}
	return out
}

// TestOverloadLosesNothing: clients with no send limit drive one room as
// fast as their sockets go, three times. Every message read by the router is
// either committed once and shown to everyone in one order, or refused with
// an error frame to its sender; nobody is disconnected.
func TestOverloadLosesNothing(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: -1})
	for run := 1; run <= 3; run++ {
		burstRoom(t, c, fmt.Sprintf("overload-%d", run), 6, 2, 1000)
		if t.Failed() {
			t.Fatalf("run %d failed", run)
		}
	}
}
