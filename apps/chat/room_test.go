package chat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"hellochat/apps/apptest"
	"hellochat/apps/chat/wire"
	"hellochat/durable"
	"hellochat/internal/chatclient"
	"hellochat/limits"
)

// rig is one room on the runtime over an in-memory store: every event is
// handed to it as a router would, and what it sends is read back by socket.
type rig struct {
	*apptest.Rig
	ts   int64
	room *Room // the newest instance (read it between events only)
}

func newRig(t *testing.T, window uint64) *rig {
	r := &rig{ts: 1_000}
	r.Rig = apptest.NewRig(t, Namespace.IDFromName("lobby"), func() durable.Object {
		r.room = &Room{window: window, now: func() int64 { r.ts++; return r.ts }}
		return r.room
	})
	return r
}

// v2 joins socket as name with hellochat.v2 and the query's extra fields.
func (r *rig) v2(socket, name string, extra ...string) *http.Response {
	r.T.Helper()
	resp := r.Upgrade(socket, "http://router"+Path+"?room=lobby&name="+name+"&key=secret-key-0123456789&"+strings.Join(extra, "&"),
		"Sec-WebSocket-Protocol", wire.SubprotocolV2)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		r.T.Fatalf("%s joined with %d", name, resp.StatusCode)
	}
	return resp
}

func (r *rig) seed(socket, name string) {
	r.T.Helper()
	if resp := r.Upgrade(socket, "http://router"+Path+"?room=lobby&name="+name); resp.StatusCode != http.StatusSwitchingProtocols {
		r.T.Fatalf("%s joined with %d", name, resp.StatusCode)
	}
}

// frames returns and forgets what socket was sent, decoded.
func (r *rig) frames(socket string) []chatclient.Frame {
	var out []chatclient.Frame
	for _, b := range r.Socks.Take(socket) {
		var f chatclient.Frame
		if err := json.Unmarshal(b, &f); err != nil {
			r.T.Fatalf("%s was sent %q: %v", socket, b, err)
		}
		f.Raw = string(b)
		out = append(out, f)
	}
	return out
}

// kinds is a compact view of frames: "type" or "type:detail".
func kinds(fs []chatclient.Frame) string {
	var out []string
	for _, f := range fs {
		switch f.Type {
		case "message", "ack":
			out = append(out, fmt.Sprintf("%s:%d", f.Type, f.Seq))
		case "joined", "left", "typing":
			out = append(out, f.Type+":"+f.Name)
		case "presence":
			out = append(out, "presence:"+strings.Join(f.Users, ","))
		case "history":
			var seqs []string
			for _, m := range f.Messages {
				seqs = append(seqs, fmt.Sprint(m.Seq))
			}
			out = append(out, fmt.Sprintf("history:[%s]more=%v", strings.Join(seqs, " "), f.More))
		case "error":
			out = append(out, "error:"+f.Code)
		case "":
			out = append(out, "seed:"+f.Name+":"+f.Message)
		default:
			out = append(out, f.Type)
		}
	}
	return strings.Join(out, " ")
}

func (r *rig) send(socket, id, text string) {
	r.T.Helper()
	r.Message(socket, 0, fmt.Sprintf(`{"type":"send","id":%q,"text":%q}`, id, text))
}

func expect(t *testing.T, who string, got []chatclient.Frame, want string) {
	t.Helper()
	if k := kinds(got); k != want {
		t.Fatalf("%s got %q, want %q", who, k, want)
	}
}

// Joins, presence, messages, acks and leaves, in both protocols in one
// room, as docs/protocol.md describes them.
func TestRoomSpeaksBothProtocols(t *testing.T) {
	r := newRig(t, DedupeWindow)
	resp := r.v2("g.1", "ann")
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != wire.SubprotocolV2 {
		t.Fatalf("the room chose subprotocol %q", p)
	}
	expect(t, "ann", r.frames("g.1"), "welcome history:[]more=false presence:ann")
	r.v2("g.2", "bob")
	expect(t, "ann", r.frames("g.1"), "joined:bob")
	expect(t, "bob", r.frames("g.2"), "welcome history:[]more=false presence:ann,bob")

	r.send("g.1", "a-1", "  hello  ")
	ann := r.frames("g.1")
	expect(t, "ann", ann, "message:1 ack:1")
	if ann[0].Text != "hello" || ann[0].Name != "ann" || ann[0].ID != "a-1" || ann[1].ID != "a-1" || ann[0].TS != ann[1].TS {
		t.Fatalf("ann's message and ack: %s %s", ann[0].Raw, ann[1].Raw)
	}
	expect(t, "bob", r.frames("g.2"), "message:1")

	r.seed("g.3", "cyd")
	expect(t, "cyd", r.frames("g.3"), "seed:ann:hello")
	expect(t, "ann", r.frames("g.1"), "joined:cyd")
	r.Message("g.3", 1, `{"message":"hi all"}`)
	expect(t, "cyd", r.frames("g.3"), "") // the seed page shows its own message itself
	bob := r.frames("g.2")
	expect(t, "bob", bob, "joined:cyd message:2")
	if want := limits.RouterIDMark + "g.3.1"; bob[1].ID != want {
		t.Fatalf("cyd's message has id %q, want %q", bob[1].ID, want)
	}

	r.Message("g.2", 0, `{"type":"typing"}`)
	expect(t, "ann", r.frames("g.1"), "message:2 typing:bob")
	expect(t, "cyd", r.frames("g.3"), "") // the seed protocol has no typing

	r.Gone("g.2")
	expect(t, "ann", r.frames("g.1"), "left:bob")
	expect(t, "cyd", r.frames("g.3"), "seed:bob:Disconnected")
}

// A message is stored once however often it arrives: a v2 resend by its
// id (acked with the stored seq), a seed message resent by the router
// after a failover by its socket's message number; across an eviction.
func TestRoomStoresEachMessageOnce(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.v2("g.1", "ann")
	r.seed("g.2", "bob")
	r.frames("g.1")
	r.send("g.1", "a-1", "one")
	r.Message("g.2", 1, `{"message":"two"}`)
	r.Evict()
	r.Start()
	r.send("g.1", "a-1", "one again")
	r.Message("g.2", 1, `{"message":"two"}`)
	r.send("g.1", "a-2", "three")
	expect(t, "ann", r.frames("g.1"), "message:1 ack:1 message:2 ack:1 message:3 ack:3")
	expect(t, "bob", r.frames("g.2"), "seed:ann:one seed:ann:three")

	// Another sender (or the same name with another key) may use the same id.
	r.v2("g.3", "cyd")
	r.frames("g.3")
	r.send("g.3", "a-1", "cyd's own")
	expect(t, "cyd", r.frames("g.3"), "message:4 ack:4")
}

// The dedupe index keeps the newest window messages' records, deleted in
// the batch that moves them out.
func TestRoomDedupeWindow(t *testing.T) {
	r := newRig(t, 3)
	r.v2("g.1", "ann")
	for i := 1; i <= 5; i++ {
		r.send("g.1", fmt.Sprint("m", i), "x")
	}
	r.frames("g.1")
	r.send("g.1", "m3", "x") // in the window: acked as stored
	expect(t, "ann", r.frames("g.1"), "ack:3")
	r.send("g.1", "m2", "x") // out of it: stored again
	expect(t, "ann", r.frames("g.1"), "message:6 ack:6")
	var records int
	r.Store.Scan(Namespace.IDFromName("lobby").StorageObject(), nil, nil, false, func(k, _ []byte) bool {
		if strings.Contains(string(k), dedupPrefix) {
			records++
		}
		return true
	})
	if records != 3 {
		t.Fatalf("%d dedupe records kept, want 3", records)
	}
}

// A larger window's records are dropped a run at a time: a room keeps
// between window and window+run-1 of them, and the newest window
// messages are always recognised. The records are found by the messages
// that name them: a room keeps no index beside them.
func TestRoomDedupeWindowDropsRuns(t *testing.T) {
	const window = 512 // forgetRun: 4
	r := newRig(t, window)
	r.v2("g.1", "ann")
	count := func() (records, other int) {
		r.Store.Scan(Namespace.IDFromName("lobby").StorageObject(), nil, nil, false, func(k, _ []byte) bool {
			switch {
			case strings.Contains(string(k), dedupPrefix):
				records++
			case !strings.Contains(string(k), msgPrefix):
				other++ // the runtime's: the socket's record, the version
			}
			return true
		})
		return records, other
	}
	for i := 1; i <= window+10; i++ {
		r.send("g.1", fmt.Sprint("m", i), "x")
		if i > window {
			if d, x := count(); x > 2 || d < window || d >= window+int(forgetRun(window)) {
				t.Fatalf("after %d messages: %d records and %d other keys; want %d to %d records, and the runtime's 2", i, d, x, window, window+int(forgetRun(window))-1)
			}
		}
	}
	r.frames("g.1")
	r.send("g.1", "m11", "x") // the oldest of the newest window
	expect(t, "ann", r.frames("g.1"), "ack:11")
}

// A v2 browser resumes after the seq it has: the first page of what it
// missed as history, the rest as messages; one that missed more than
// ResumeLimit gets the newest page and pages back with history requests.
func TestRoomResumeAndHistoryPages(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.v2("g.1", "ann")
	n := limits.ResumeLimit + 50
	for i := 1; i <= n; i++ {
		r.send("g.1", fmt.Sprint("m", i), fmt.Sprint("text ", i))
	}
	r.frames("g.1")

	r.v2("g.2", "bob", "after=900")
	bob := r.frames("g.2")
	if len(bob) != 2+(n-900-limits.HistoryLimit)+1 || bob[1].Type != "history" || len(bob[1].Messages) != limits.HistoryLimit ||
		bob[1].Messages[0].Seq != 901 || bob[2].Seq != 901+limits.HistoryLimit || bob[len(bob)-2].Seq != uint64(n) || bob[len(bob)-1].Type != "presence" {
		t.Fatalf("bob resuming after 900 got %d frames: %s ... %s", len(bob), bob[1].Raw[:80], bob[len(bob)-2].Raw)
	}
	r.v2("g.3", "cyd", "after=5")
	cyd := r.frames("g.3")
	if h := cyd[1]; h.Type != "history" || !h.More || len(h.Messages) != limits.HistoryLimit || h.Messages[len(h.Messages)-1].Seq != uint64(n) {
		t.Fatalf("cyd, too far behind, got %s", kinds(cyd))
	}
	r.Message("g.3", 0, `{"type":"history","before":51,"limit":20}`)
	page := r.frames("g.3")
	if len(page) != 1 || page[0].Before != 51 || !page[0].More || len(page[0].Messages) != 20 || page[0].Messages[0].Seq != 31 {
		t.Fatalf("cyd's page before 51: %s", kinds(page))
	}
	r.Message("g.3", 0, `{"type":"history","before":3,"limit":500}`)
	expect(t, "cyd", r.frames("g.3"), "history:[1 2]more=false")
}

// Bad input is answered and stores nothing; a bad name or key refuses the
// browser with an error frame and close 1008, and it never counts as here.
func TestRoomRefusesBadInput(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.v2("g.1", "ann")
	r.frames("g.1")
	for _, bad := range []string{`not json`, `{"type":"shout"}`, `{"type":"send","id":"","text":"x"}`,
		`{"type":"send","id":"~mine","text":"x"}`, `{"type":"send","id":"a","text":"   "}`,
		fmt.Sprintf(`{"type":"send","id":"b","text":%q}`, strings.Repeat("x", limits.MaxMessageBytes+1))} {
		r.Message("g.1", 0, bad)
	}
	if err := r.Actor.WebSocketMessage(t.Context(), "g.1", []byte{1, 2}, false); err != nil {
		t.Fatal(err)
	}
	expect(t, "ann", r.frames("g.1"), "error:bad_json error:unknown_type error:bad_id error:bad_id error:empty error:too_large error:binary")

	r.v2("g.2", "system")
	if f := r.frames("g.2"); kinds(f) != "error:bad_name" {
		t.Fatalf("a browser named system got %s", kinds(f))
	}
	if code, ok := r.Socks.Closed("g.2"); !ok || code != closePolicy {
		t.Fatalf("a browser named system was closed %v with %d", ok, code)
	}
	r.Upgrade("g.3", "http://router"+Path+"?room=lobby&name=dan&key=short", "Sec-WebSocket-Protocol", wire.SubprotocolV2)
	expect(t, "dan", r.frames("g.3"), "error:bad_id")
	expect(t, "ann", r.frames("g.1"), "") // neither joined

	r.v2("g.4", "eve")
	f := r.frames("g.4")
	if !slices.Equal(f[len(f)-1].Users, []string{"ann", "eve"}) || f[1].Type != "history" || len(f[1].Messages) != 0 {
		t.Fatalf("eve got %s", kinds(f))
	}
	if st := r.Upgrade("g.5", "http://router"+Path+"?room=elsewhere&name=x").StatusCode; st != http.StatusBadRequest {
		t.Fatalf("an upgrade naming another room was answered %d", st)
	}
}

// Who is here comes back from the sockets' attachments after an
// eviction, and seqs and timestamps go on from storage.
func TestRoomComesBackFromStorage(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.v2("g.1", "ann")
	r.v2("g.2", "ann")
	r.seed("g.3", "bob")
	r.send("g.1", "a", "one")
	r.frames("g.1")
	r.frames("g.2")
	r.Evict()
	r.ts = 0 // the clock went back: timestamps must not
	r.Start()
	r.v2("g.4", "cyd")
	cyd := r.frames("g.4")
	if got := cyd[len(cyd)-1].Users; !slices.Equal(got, []string{"ann", "ann", "bob", "cyd"}) {
		t.Fatalf("presence after eviction: %v", got)
	}
	first := cyd[1].Messages[0]
	r.send("g.4", "c", "two")
	got := r.frames("g.4")
	if got[0].Seq != 2 || got[0].TS < first.TS {
		t.Fatalf("after eviction: seq %d at %d, after seq 1 at %d", got[0].Seq, got[0].TS, first.TS)
	}
}

// A leader may commit messages and die before their frames leave it. The
// next instance sends the recent ones again, numbered by seq, and the
// routers drop what their browsers were shown: each browser is shown the
// lost ones once, in order (a seed browser never its own), and nothing
// older than ReplayWindow is sent again.
func TestRoomSendsAgainWhatADeadLeaderHeld(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.v2("g.1", "ann")
	r.v2("g.2", "bob")
	r.seed("g.3", "cyd")
	r.send("g.1", "a-1", "one")
	r.send("g.1", "a-2", "two")
	for _, g := range []string{"g.1", "g.2", "g.3"} {
		r.frames(g)
	}
	r.send("g.1", "a-3", "three")
	r.Message("g.3", 1, `{"message":"four"}`)
	r.Socks.Lose() // committed, never shown
	r.Evict()
	r.Start()
	expect(t, "ann", r.frames("g.1"), "message:3 message:4")
	expect(t, "bob", r.frames("g.2"), "message:3 message:4")
	expect(t, "cyd", r.frames("g.3"), "seed:ann:three")
	if n := r.Socks.Repeats(); n == 0 {
		t.Fatal("the new instance sent nothing the browsers already had: the window is not exercised")
	}
	r.send("g.1", "a-3", "three") // the resend of the unacked one
	expect(t, "ann", r.frames("g.1"), "ack:3")
	expect(t, "bob", r.frames("g.2"), "")

	// What was shown is never shown again, across another restart.
	r.Evict()
	r.Start()
	for _, g := range []string{"g.1", "g.2", "g.3"} {
		expect(t, g, r.frames(g), "")
	}

	// Past the window, a restart sends nothing again.
	r.send("g.1", "a-5", "five")
	r.Socks.Lose()
	r.ts += ReplayWindow.Milliseconds() + 1
	r.Evict()
	r.Start()
	expect(t, "bob", r.frames("g.2"), "")
}

// A browser's sends are bounded by the rate its Worker gave the room: past
// the burst, a send is answered rate_limited with its id and not stored.
func TestRoomBoundsEachBrowsersSends(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.Upgrade("g.1", "http://router"+Path+"?room=lobby&name=ann&key=secret-key-0123456789",
		"Sec-WebSocket-Protocol", wire.SubprotocolV2, SendRateHeader, "1 2")
	r.v2("g.2", "bob") // no header: no bound
	r.frames("g.1")
	for i := 1; i <= 4; i++ {
		r.send("g.1", fmt.Sprint("a-", i), "x")
	}
	ann := r.frames("g.1")
	expect(t, "ann", ann, "message:1 ack:1 message:2 ack:2 error:rate_limited error:rate_limited")
	if ann[4].ID != "a-3" || ann[5].ID != "a-4" {
		t.Fatalf("refusals name %q and %q, want a-3 and a-4", ann[4].ID, ann[5].ID)
	}
	for i := 1; i <= 4; i++ {
		r.send("g.2", fmt.Sprint("b-", i), "y")
	}
	if got := strings.Count(kinds(r.frames("g.2")), "ack:"); got != 4 {
		t.Fatalf("bob, unbounded, got %d acks of 4", got)
	}
	r.ts += 1000 // a second later, one more token
	r.send("g.1", "a-5", "x")
	if f := r.frames("g.1"); kinds(f) != "message:3 message:4 message:5 message:6 message:7 ack:7" {
		t.Fatalf("ann after a second: %s", kinds(f))
	}
}

// A seed browser is sent the whole history a page at a time, the next
// when the last is written to it; live messages wait for it to catch up,
// so it is shown every message once, in order. A new instance sends the
// page that may have been lost again; the Worker's cap sends the newest.
func TestRoomPagesASeedBrowsersHistory(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.v2("g.1", "ann")
	const n = 250
	for i := 1; i <= n; i++ {
		r.send("g.1", fmt.Sprint("m", i), fmt.Sprint("text ", i))
	}
	r.frames("g.1")
	r.seed("g.2", "cyd")
	var shown []string
	take := func() int {
		f := r.frames("g.2")
		for _, m := range f {
			shown = append(shown, m.Message)
		}
		return len(f)
	}
	r.Socks.Lose() // the first page is lost with its leader
	r.Evict()
	r.Start()
	if got := take(); got != limits.HistoryLimit {
		t.Fatalf("the first page again: %d messages, want %d", got, limits.HistoryLimit)
	}
	r.send("g.1", "live-1", "live 1")
	if got := take(); got != 0 {
		t.Fatalf("cyd, behind, was sent %d live messages", got)
	}
	pages := 1
	for r.Drained("g.2") {
		take()
		pages++
	}
	if pages != 3 || len(shown) != n+1 {
		t.Fatalf("cyd got %d messages in %d pages, want %d in 3", len(shown), pages, n+1)
	}
	for i := range n {
		if shown[i] != fmt.Sprint("text ", i+1) {
			t.Fatalf("cyd's message %d is %q", i, shown[i])
		}
	}
	if shown[n] != "live 1" {
		t.Fatalf("after the history cyd got %q", shown[n])
	}
	r.send("g.1", "live-2", "live 2")
	if f := r.frames("g.2"); len(f) != 1 || f[0].Message != "live 2" {
		t.Fatalf("cyd, caught up, got %s", kinds(f))
	}

	r.Upgrade("g.3", "http://router"+Path+"?room=lobby&name=dan", SeedHistoryHeader, "10")
	f := r.frames("g.3")
	if len(f) != 10 || f[0].Message != fmt.Sprint("text ", n-7) || f[9].Message != "live 2" {
		t.Fatalf("dan, capped at 10, got %d from %q", len(f), f[0].Message)
	}
	if r.Drained("g.3") {
		t.Fatal("dan, caught up at once, asked to hear of a drain")
	}
}

// A message is stored with its sender's client key, to find its dedupe
// record later; no browser is ever shown that key, live or in history,
// in either protocol.
func TestRoomNeverShowsClientKeys(t *testing.T) {
	r := newRig(t, DedupeWindow)
	r.v2("g.1", "ann")
	r.send("g.1", "m1", "hello")
	r.v2("g.2", "bob")
	r.seed("g.3", "cy")
	r.send("g.1", "m2", "again")
	r.Message("g.2", 0, `{"type":"history"}`)
	for _, socket := range []string{"g.1", "g.2", "g.3"} {
		fs := r.frames(socket)
		if len(fs) == 0 {
			t.Fatalf("%s was sent nothing", socket)
		}
		for _, f := range fs {
			if strings.Contains(f.Raw, "secret-key") {
				t.Fatalf("%s was shown a client key: %s", socket, f.Raw)
			}
		}
	}
}
