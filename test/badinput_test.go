package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	tc "hellochat/internal/testcluster"
	"hellochat/limits"
)

// TestBadInputKeepsConnection: each bad frame gets a clear error, stores
// nothing, and the connection and the room carry on.
func TestBadInputKeepsConnection(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	room := "bad-input"
	watcher := tc.Dial(t, c.URL(), room, "watcher", true)
	watcher.Expect(wait, "history", tc.IsType("history"))

	type bad struct {
		name  string
		typ   websocket.MessageType
		frame string
		code  string
	}
	big := strings.Repeat("x", limits.MaxMessageBytes+1)
	cases := []bad{
		{"invalid JSON", websocket.MessageText, `{"type":"send",`, limits.CodeBadJSON},
		{"binary frame", websocket.MessageBinary, `{"type":"send","id":"b","text":"hi"}`, limits.CodeBinary},
		{"empty message", websocket.MessageText, `{"type":"send","id":"e","text":""}`, limits.CodeEmpty},
		{"whitespace message", websocket.MessageText, `{"type":"send","id":"w","text":" \n\t "}`, limits.CodeEmpty},
		{"oversize message", websocket.MessageText, `{"type":"send","id":"o","text":"` + big + `"}`, limits.CodeTooLarge},
		{"control characters", websocket.MessageText, `{"type":"send","id":"c","text":"a\u0007b"}`, limits.CodeBadJSON},
		{"missing id", websocket.MessageText, `{"type":"send","text":"no id"}`, limits.CodeBadID},
		{"long id", websocket.MessageText, `{"type":"send","id":"` + strings.Repeat("i", limits.MaxClientIDBytes+1) + `","text":"x"}`, limits.CodeBadID},
		{"a router's id", websocket.MessageText, `{"type":"send","id":"~1a2b-3-4","text":"pretending"}`, limits.CodeBadID},
		{"unknown type", websocket.MessageText, `{"type":"shout","text":"x"}`, limits.CodeUnknownType},
		{"not an object", websocket.MessageText, `[1,2,3]`, limits.CodeBadJSON},
	}
	ann := tc.Dial(t, c.URL(), room, "ann", true)
	ann.Expect(wait, "history", tc.IsType("history"))
	for i, bc := range cases {
		ann.SendRaw(bc.typ, []byte(bc.frame))
		e := ann.Expect(wait, "error for "+bc.name, tc.IsType("error"))
		if e.Code != bc.code || e.Message == "" {
			t.Errorf("%s: got %s, want code %s", bc.name, e.Raw, bc.code)
		}
		// The connection still works and the room carries on.
		ann.Post(fmt.Sprintf("ok-%d", i), fmt.Sprintf("still here %d", i))
		a := ann.Expect(wait, "ack after "+bc.name, tc.IsType("ack"))
		m := watcher.Expect(wait, "message after "+bc.name, tc.IsMessage)
		if a.Seq != uint64(i+1) || m.Seq != uint64(i+1) || m.Text != fmt.Sprintf("still here %d", i) {
			t.Fatalf("%s: after it, ack %s and watcher got %s; want seq %d (nothing bad stored)", bc.name, a.Raw, m.Raw, i+1)
		}
	}

	// The seed protocol gets its errors in its own frame shape.
	seed := tc.Dial(t, c.URL(), room, "seedy", false)
	for _, f := range []string{`not json`, `{"msg":"wrong field"}`, `{"message":"   "}`, `{"message":"` + big + `"}`} {
		seed.SendRaw(websocket.MessageText, []byte(f))
		e := seed.Expect(wait, "seed error", func(f tc.Frame) bool { return f.Name == "system" })
		if !strings.HasPrefix(e.Message, "error: ") {
			t.Errorf("seed error frame %s", e.Raw)
		}
	}
	seed.Say("seed still works")
	watcher.Expect(wait, "seed message", func(f tc.Frame) bool { return f.Type == "message" && f.Text == "seed still works" })

	// A frame over MaxFrameBytes cannot be read safely: 1009, and the room
	// carries on for everyone else.
	huge := tc.Dial(t, c.URL(), room, "huge", true)
	huge.SendRaw(websocket.MessageText, []byte(`{"type":"send","id":"h","text":"`+strings.Repeat("y", limits.MaxFrameBytes)+`"}`))
	if code := huge.WaitClosed(wait); code != websocket.StatusMessageTooBig {
		t.Errorf("oversize frame closed with %v, want 1009", code)
	}
	ann.Post("after-huge", "room carries on")
	watcher.Expect(wait, "message after the oversize frame", func(f tc.Frame) bool { return f.Text == "room carries on" })
}

// TestBadNamesAndRooms: names and rooms over their limits or with control
// characters get an error frame and close 1008; the defaults apply to
// missing ones.
func TestBadNamesAndRooms(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	cases := []struct {
		room, name, code string
	}{
		{"ok", strings.Repeat("n", limits.MaxNameRunes+1), limits.CodeBadName},
		{"ok", "bad\x01name", limits.CodeBadName},
		{"ok", "System", limits.CodeBadName},
		{"ok", "ann\u202Egnp", limits.CodeBadName},
		{"ok", "zero\u200Bwidth", limits.CodeBadName},
		{strings.Repeat("r", limits.MaxRoomBytes+1), "ann", limits.CodeBadRoom},
		{"bad\nroom", "ann", limits.CodeBadRoom},
		{"bad\x00room", "ann", limits.CodeBadRoom},
	}
	for _, bc := range cases {
		cl := tc.Dial(t, c.URL(), bc.room, bc.name, true)
		e := cl.Expect(wait, "error", tc.IsType("error"))
		if e.Code != bc.code {
			t.Errorf("room %q name %q: got %s, want %s", bc.room, bc.name, e.Raw, bc.code)
		}
		if code := cl.WaitClosed(wait); code != websocket.StatusPolicyViolation {
			t.Errorf("room %q name %q: closed with %v, want 1008", bc.room, bc.name, code)
		}
	}
	// Odd but valid: unicode, spaces inside, punctuation. Defaults apply.
	odd := tc.Dial(t, c.URL(), "  Ünïcødé room / with spaces? ", "", true)
	w := odd.Next(wait)
	if w.Room != "Ünïcødé room / with spaces?" || w.Name != limits.DefaultName {
		t.Fatalf("welcome %s: want trimmed room and default name", w.Raw)
	}
	odd.Post("1", "hi")
	odd.Expect(wait, "ack", tc.IsType("ack"))
	v := tc.Dial(t, c.URL(), limits.DefaultRoom, "v", true)
	v.Expect(wait, "history", tc.IsType("history"))
	def := tc.Dial(t, c.URL(), "", "", false)
	def.Say("in the default room")
	m := v.Expect(wait, "message", tc.IsMessage)
	if m.Name != limits.DefaultName || m.Text != "in the default room" {
		t.Fatalf("default room got %s", m.Raw)
	}
}

// TestFloodIsRateLimited: a client over its send rate gets rate_limited for
// the excess, nothing it was told was refused is stored, and the others in
// the room are unaffected.
func TestFloodIsRateLimited(t *testing.T) {
	const burst = 5
	c := tc.New(t, 3, tc.Options{SendRate: 1, SendBurst: burst})
	room := "flood"
	flooder := tc.Dial(t, c.URL(), room, "flooder", true)
	flooder.Expect(wait, "history", tc.IsType("history"))
	for i := 0; i < 50; i++ {
		flooder.Post(fmt.Sprintf("f%d", i), "spam")
	}
	acked, limited := 0, 0
	for acked+limited < 50 {
		f := flooder.Expect(wait, "ack or error", func(f tc.Frame) bool { return f.Type == "ack" || f.Type == "error" })
		if f.Type == "ack" {
			acked++
		} else if f.Code == limits.CodeRateLimited {
			limited++
		} else {
			t.Fatalf("unexpected %s", f.Raw)
		}
	}
	if acked < burst || acked > burst+2 || limited != 50-acked {
		t.Fatalf("%d acked and %d limited of 50, want about %d acked", acked, limited, burst)
	}
	other := tc.Dial(t, c.URL(), room, "other", true)
	h := other.Expect(wait, "history", tc.IsType("history"))
	if len(h.Messages) != acked {
		t.Fatalf("history holds %d messages, %d were acked", len(h.Messages), acked)
	}
	other.Post("o1", "I can still talk")
	other.Expect(wait, "ack", tc.IsType("ack"))
}

// TestSlowReaderIsDisconnected: a browser that stops reading is closed
// with 1008 once its queue fills, and the room keeps serving the others.
func TestSlowReaderIsDisconnected(t *testing.T) {
	c := tc.New(t, 3, tc.Options{SendRate: 100000, SendBurst: 100000})
	room := "slow"
	// A raw connection that never reads: its TCP buffers fill, then the
	// router's queue for it.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	slow, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.URL(), "http")+"/ws?room="+room+"&name=slow",
		&websocket.DialOptions{Subprotocols: []string{"hellochat.v2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	talker := tc.Dial(t, c.URL(), room, "talker", true)
	talker.Expect(wait, "history", tc.IsType("history"))
	text := strings.Repeat("z", 4000)
	deadline := time.Now().Add(60 * time.Second)
	sent, gone := 0, false
	// The router's queue for slow holds SessionQueue frames on top of what
	// the kernel buffers, so a few thousand 4 KB messages must overflow it.
	for !gone && time.Now().Before(deadline) && sent < 20000 {
		for i := 0; i < 100; i++ {
			talker.Post(fmt.Sprintf("t%d", sent), text)
			sent++
		}
		for acks := 0; acks < 100; {
			switch f := talker.Next(wait); {
			case f.Type == "ack":
				acks++
			case f.Type == "left" && f.Name == "slow":
				gone = true
			}
		}
	}
	if !gone {
		talker.Expect(wait, "slow reader leaving", func(f tc.Frame) bool { return f.Type == "left" && f.Name == "slow" })
	}
	t.Logf("slow reader disconnected after %d messages of %d bytes", sent, len(text))
	talker.Post("last", "still fine")
	talker.Expect(wait, "ack of last", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "last" })
}
