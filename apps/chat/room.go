package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"hellochat/apps"
	"hellochat/apps/chat/wire"
	"hellochat/durable"
	"hellochat/limits"
)

// A new instance sends its sockets the messages stored in the last
// ReplayWindow again (at most ReplayLimit of them, and ReplayBytes of
// frames in all), numbered by seq so that their routers drop those their
// browsers were shown (durable.WebSocket.SendNumbered): a leader that
// committed a message may die before its frames leave, and the next one
// cannot know which did.
const (
	ReplayWindow = 15 * time.Second
	ReplayLimit  = 1000
	ReplayBytes  = 1 << 20
)

// closePolicy is WebSocket close 1008, for names and keys refused.
const closePolicy = 1008

// attachment is what a socket carries through eviction and failover.
type attachment struct {
	Name  string        `json:"n"`
	Key   string        `json:"k,omitempty"`
	Proto wire.Protocol `json:"p"`
	// Rate and Burst bound its messages per second (SendRateHeader).
	Rate  float64 `json:"r,omitempty"`
	Burst int     `json:"b,omitempty"`
	// A seed browser is sent the history a page at a time, the next when
	// the last is written to it (WebSocketDrained). While Behind, it is
	// sent no live message: its pages catch up with them. Sent is the
	// seq of the newest message sent it, Shown of the newest it surely
	// has (its page drained): a new instance sends (Shown, Sent] again.
	Behind bool   `json:"c,omitempty"`
	Sent   uint64 `json:"s,omitempty"`
	Shown  uint64 `json:"w,omitempty"`
}

// Room is the class: one chat room. What it keeps in memory is restored
// by Load from storage and from its sockets' attachments, so the runtime
// may evict it, or renew it after a failed commit, at any time.
type Room struct {
	lastSeq uint64         // newest seq stored (or being stored)
	lastTS  int64          // its timestamp
	users   map[string]int // sockets per name
	// joined holds the attachment of every socket that joined: a
	// broadcast reads it for each socket, and decoding it each time was a
	// fifth of a message's CPU (BenchmarkRoomSend).
	joined map[string]attachment
	// sends holds each socket's send bucket, made at its first message
	// (a new instance starts them full).
	sends map[string]*rate.Limiter
	// now is the room's clock in Unix milliseconds; tests set their own.
	now func() int64
	// window is DedupeWindow; tests shrink it.
	window uint64
	// dedupe answers most "is it stored already?" without a read.
	dedupe dedupeFilter
}

// Load restores the newest seq and timestamp and who is here.
func (r *Room) Load(ctx context.Context, s *durable.State) error {
	if r.now == nil {
		r.now = func() int64 { return time.Now().UnixMilli() }
	}
	if r.window == 0 {
		r.window = DedupeWindow
	}
	last, err := s.Storage().List(durable.ListOptions{Prefix: msgPrefix, Reverse: true, Limit: 1})
	if err != nil {
		return fmt.Errorf("load the newest message: %w", err)
	}
	if len(last) == 1 {
		m, _, err := decodeMessage(last[0])
		if err != nil {
			return err
		}
		r.lastSeq, r.lastTS = m.Seq, m.TS
	}
	r.users = map[string]int{}
	r.joined = map[string]attachment{}
	r.sends = map[string]*rate.Limiter{}
	all, err := s.GetWebSockets("")
	if err != nil {
		return fmt.Errorf("load who is here: %w", err)
	}
	for _, ws := range all {
		if a, ok := attachmentOf(ws); ok {
			r.users[a.Name]++
			r.joined[ws.ID()] = a
		}
	}
	if err := r.resumeSeedPages(s, all); err != nil {
		return err
	}
	return r.replay(s, all)
}

// resumeSeedPages sends each seed browser still behind the page it may
// not have had (its router drops what it had), and asks again to hear
// when it is written: the old instance's wish died with it.
func (r *Room) resumeSeedPages(s *durable.State, all []durable.WebSocket) error {
	for _, ws := range all {
		a, ok := r.joined[ws.ID()]
		if !ok || !a.Behind {
			continue
		}
		a.Sent = a.Shown
		a, err := r.nextSeedPage(s, ws, a)
		if err == nil {
			err = setAttachment(ws, a)
		}
		if err != nil {
			return err
		}
		r.joined[ws.ID()] = a
	}
	return nil
}

// replay sends the sockets the recent messages again (ReplayWindow),
// each as the socket was first sent it: a seed browser is not sent its
// own, as the seed page shows them itself.
func (r *Room) replay(s *durable.State, all []durable.WebSocket) error {
	cutoff := r.now() - ReplayWindow.Milliseconds()
	if len(r.joined) == 0 || r.lastTS < cutoff {
		return nil // a room evicted after a quiet minute reads nothing here
	}
	kvs, err := s.Storage().List(durable.ListOptions{Prefix: msgPrefix, Reverse: true, Limit: ReplayLimit})
	if err != nil {
		return fmt.Errorf("read the recent messages: %w", err)
	}
	var recent []wire.Message
	bytes := 0
	for _, kv := range kvs {
		m, _, err := decodeMessage(kv)
		if err != nil {
			return err
		}
		if bytes += len(kv.Value) * len(r.joined); m.TS < cutoff || bytes > ReplayBytes {
			break
		}
		recent = append(recent, m)
	}
	slices.Reverse(recent)
	for _, ws := range all {
		a, ok := r.joined[ws.ID()]
		if !ok || a.Behind {
			continue // a seed browser still behind gets them in its pages
		}
		own := seedPrefix(ws.ID())
		for _, m := range recent {
			var err error
			switch {
			case a.Proto == wire.V2:
				err = ws.SendNumbered(m.Seq, wire.V2Message(m), true)
			case !strings.HasPrefix(m.ID, own):
				err = ws.SendNumbered(m.Seq, wire.SeedMessage(m), true)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func attachmentOf(ws durable.WebSocket) (attachment, bool) {
	var a attachment
	if json.Unmarshal(ws.Attachment(), &a) != nil || a.Name == "" {
		return a, false // refused before it joined
	}
	return a, true
}

// Fetch takes a browser's upgrade from the Worker.
func (r *Room) Fetch(ctx context.Context, s *durable.State, w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	room, err := limits.Room(q.Get("room"))
	switch {
	case req.URL.Path != Path && req.URL.Path != WSPath || !apps.IsWebSocketUpgrade(req):
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case !Namespace.IDFromName(room).Equal(s.ID()):
		http.Error(w, "room "+room+" is another object", http.StatusBadRequest)
		return
	}
	p := wire.Seed
	if apps.HeaderHasToken(req.Header, "Sec-WebSocket-Protocol", wire.SubprotocolV2) {
		p = wire.V2
		w.Header().Set("Sec-WebSocket-Protocol", wire.SubprotocolV2)
	}
	ws, err := s.AcceptWebSocket(req)
	if err == nil {
		sendRate, sendBurst := parseSendRate(req.Header.Get(SendRateHeader))
		a := attachment{Proto: p, Rate: sendRate, Burst: sendBurst}
		if p == wire.Seed {
			// The seed page shows the whole history, or the newest
			// SeedHistoryHeader messages.
			a.Behind = true
			a.Sent = r.lastSeq - min(r.lastSeq, parseSeedHistory(req.Header.Get(SeedHistoryHeader), r.lastSeq))
			a.Shown = a.Sent
		}
		err = r.join(s, ws, a, room, q)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusSwitchingProtocols)
}

// join checks the browser's name, key and resume point, then shows it
// the room and shows it to the others. A refused browser gets the error
// frame and a close, and never counts as here.
func (r *Room) join(s *durable.State, ws durable.WebSocket, a attachment, room string, q map[string][]string) error {
	p := a.Proto
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	name, err := limits.Name(get("name"))
	var after uint64
	var key string
	if p == wire.V2 {
		if a := get("after"); a != "" && err == nil {
			if after, err = strconv.ParseUint(a, 10, 64); err != nil {
				err = &limits.Error{Code: limits.CodeBadJSON, Message: "after must be a seq number"}
			}
		}
		if key = get("key"); err == nil {
			err = limits.ClientKey(key)
		}
	}
	var le *limits.Error
	if errors.As(err, &le) {
		if err := ws.Send(wire.Error(p, le.Code, le.Message, ""), true); err != nil {
			return err
		}
		return ws.Close(closePolicy, le.Message)
	}
	if err != nil {
		return err
	}
	a.Name, a.Key = name, key
	if p == wire.V2 {
		err = r.showV2(s, ws, room, name, after)
	} else {
		a, err = r.nextSeedPage(s, ws, a)
	}
	if err == nil {
		err = setAttachment(ws, a)
	}
	if err != nil {
		return err
	}
	r.users[name]++
	r.joined[ws.ID()] = a
	if p == wire.V2 {
		err = ws.Send(wire.Presence(r.names()), true)
	}
	if err == nil {
		_, err = r.toOthers(s, ws.ID(), 0, func(p wire.Protocol) []byte { return wire.Joined(p, name) })
	}
	if err != nil {
		r.users[name]-- // the event's writes are dropped: it never joined
		delete(r.joined, ws.ID())
	}
	return err
}

// showV2 sends a v2 browser its welcome and history: the messages after
// its resume point if it missed at most limits.ResumeLimit (the first
// page in "history", the rest as "message"), else the newest page.
func (r *Room) showV2(s *durable.State, ws durable.WebSocket, room, name string, after uint64) error {
	if err := ws.Send(wire.Welcome(room, name), true); err != nil {
		return err
	}
	if after > 0 && after+limits.ResumeLimit >= r.lastSeq {
		missed, err := since(s.Storage(), after, int(min(r.lastSeq-min(after, r.lastSeq), limits.ResumeLimit)))
		if err != nil {
			return err
		}
		first := missed[:min(len(missed), limits.HistoryLimit)]
		if err := ws.SendNumbered(lastSeq(first), wire.History(first, false, 0), true); err != nil {
			return err
		}
		for _, m := range missed[len(first):] {
			if err := ws.SendNumbered(m.Seq, wire.V2Message(m), true); err != nil {
				return err
			}
		}
		return nil
	}
	pg, err := newest(s.Storage(), 0, limits.HistoryLimit)
	if err != nil {
		return err
	}
	return ws.SendNumbered(lastSeq(pg.msgs), wire.History(pg.msgs, pg.more, 0), true)
}

// lastSeq numbers a page of history by its newest message (0, unnumbered,
// for none): what a replay would send again is newer, or a repeat.
func lastSeq(msgs []wire.Message) uint64 {
	if len(msgs) == 0 {
		return 0
	}
	return msgs[len(msgs)-1].Seq
}

// nextSeedPage sends a seed browser that is behind its next page of
// history, after a.Sent and at most limits.MaxPageBytes of it, and asks
// to hear when it is written; once it has caught up with the room, it is
// live. It returns the socket's attachment as it now is.
func (r *Room) nextSeedPage(s *durable.State, ws durable.WebSocket, a attachment) (attachment, error) {
	if !a.Behind {
		return a, nil
	}
	if a.Sent < r.lastSeq {
		msgs, err := since(s.Storage(), a.Sent, int(min(r.lastSeq-a.Sent, limits.HistoryLimit)))
		if err != nil {
			return a, err
		}
		for i, bytes := 0, 0; i < len(msgs) && (i == 0 || bytes < limits.MaxPageBytes); i++ {
			m := msgs[i]
			frame := wire.SeedMessage(m)
			if err := ws.SendNumbered(m.Seq, frame, true); err != nil {
				return a, err
			}
			bytes += len(frame)
			a.Sent = m.Seq
		}
	}
	if a.Sent >= r.lastSeq {
		a.Behind, a.Sent, a.Shown = false, 0, 0
		return a, nil
	}
	return a, ws.NotifyDrained()
}

// WebSocketDrained sends a seed browser catching up its next page.
func (r *Room) WebSocketDrained(ctx context.Context, s *durable.State, ws durable.WebSocket) error {
	a, ok := r.joined[ws.ID()]
	if !ok || !a.Behind {
		return nil
	}
	a.Shown = a.Sent
	a, err := r.nextSeedPage(s, ws, a)
	if err == nil {
		err = setAttachment(ws, a)
	}
	if err == nil {
		r.joined[ws.ID()] = a
	}
	return err
}

// setAttachment stores a with the socket.
func setAttachment(ws durable.WebSocket, a attachment) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return ws.SetAttachment(b)
}

// names is who is here: names sorted, with repeats.
func (r *Room) names() []string {
	out := make([]string, 0, len(r.users))
	for n, c := range r.users {
		for range c {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// toOthers sends every socket but except the frame its protocol gets
// (nil: none), encoding it once per protocol; numbered n unless n is 0.
// It returns the frames it encoded, by protocol.
func (r *Room) toOthers(s *durable.State, except string, n uint64, frame func(wire.Protocol) []byte) (enc [2][]byte, err error) {
	all, err := s.GetWebSockets("")
	if err != nil {
		return enc, err
	}
	var done [2]bool
	for _, ws := range all {
		a, ok := r.joined[ws.ID()]
		if !ok || ws.ID() == except || n > 0 && a.Behind {
			continue // a browser catching up gets messages in its pages
		}
		if !done[a.Proto] {
			enc[a.Proto], done[a.Proto] = frame(a.Proto), true
		}
		if enc[a.Proto] == nil {
			continue
		}
		if err := ws.SendNumbered(n, enc[a.Proto], true); err != nil {
			return enc, err
		}
	}
	return enc, nil
}

// WebSocketMessage handles one frame from a browser.
func (r *Room) WebSocketMessage(ctx context.Context, s *durable.State, ws durable.WebSocket, data []byte, text bool) error {
	a, ok := r.joined[ws.ID()]
	if !ok {
		return nil // refused; its close is on its way
	}
	if !text {
		return ws.Send(wire.Error(a.Proto, limits.CodeBinary, "binary frames are not supported; send JSON text", ""), true)
	}
	op, lerr := wire.Parse(a.Proto, data)
	if lerr != nil {
		return ws.Send(wire.Error(a.Proto, lerr.Code, lerr.Message, op.ID), true)
	}
	switch op.Kind {
	case "send":
		return r.send(s, ws, a, op)
	case "typing":
		_, err := r.toOthers(s, ws.ID(), 0, func(p wire.Protocol) []byte {
			if p == wire.V2 {
				return wire.Typing(a.Name)
			}
			return nil
		})
		return err
	case "history":
		limit := int(op.Limit)
		if limit <= 0 || limit > limits.HistoryLimit {
			limit = limits.HistoryLimit
		}
		pg, err := newest(s.Storage(), op.Before, limit)
		if err != nil {
			return err
		}
		return ws.Send(wire.History(pg.msgs, pg.more, op.Before), true)
	}
	return nil
}

// send stores a message and shows it to the room, or acks a resend of
// one already stored.
func (r *Room) send(s *durable.State, ws durable.WebSocket, a attachment, op wire.Op) error {
	if !r.mayPost(ws.ID(), a) {
		return ws.Send(wire.Error(a.Proto, limits.CodeRateLimited,
			fmt.Sprintf("too many messages (max %g/s); message not sent", a.Rate), op.ID), true)
	}
	st := s.Storage()
	id := op.ID
	if a.Proto == wire.Seed {
		id = seedID(ws.ID(), durable.MessageNumber(ws))
	}
	dkey := dedupeKey(a.Name, a.Key, id)
	if r.dedupe.mayHave(dkey) { // else surely new: no read
		v, found, err := st.Get(dedupPrefix + dkey)
		if err != nil {
			return fmt.Errorf("read the dedupe index: %w", err)
		}
		if found {
			seq, ts, err := decodeStored(v)
			if err != nil {
				return err
			}
			if a.Proto == wire.V2 {
				return ws.Send(wire.Ack(id, seq, ts), true)
			}
			return nil
		}
	}
	m := wire.Message{Seq: r.lastSeq + 1, ID: id, Name: a.Name, Text: op.Text, TS: max(r.now(), r.lastTS)}
	if err := st.Put(msgKey(m.Seq), wire.AppendRecord(nil, m, a.Key)); err != nil {
		return fmt.Errorf("store message %d: %w", m.Seq, err)
	}
	if err := st.Put(dedupPrefix+dkey, encodeStored(m.Seq, m.TS)); err != nil {
		return fmt.Errorf("store message %d's dedupe record: %w", m.Seq, err)
	}
	r.dedupe.added(dkey)
	if err := forget(st, m.Seq, r.window); err != nil {
		return err
	}
	if err := r.dedupe.step(st, int(min(m.Seq, r.window+forgetRun(r.window)))); err != nil {
		return err
	}
	if err := r.show(s, ws, a, m); err != nil {
		return err
	}
	// Only a handler that succeeded takes the seq: an error drops its
	// writes, and the next message must take the same seq.
	r.lastSeq, r.lastTS = m.Seq, m.TS
	return nil
}

// mayPost takes a token from the socket's send bucket, if it has a rate.
func (r *Room) mayPost(socket string, a attachment) bool {
	if a.Rate <= 0 {
		return true
	}
	lim := r.sends[socket]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(a.Rate), a.Burst)
		r.sends[socket] = lim
	}
	return lim.AllowN(time.UnixMilli(r.now()), 1)
}

// show sends a stored message to the room, and the sender its ack.
func (r *Room) show(s *durable.State, ws durable.WebSocket, a attachment, m wire.Message) error {
	enc, err := r.toOthers(s, ws.ID(), m.Seq, func(p wire.Protocol) []byte {
		if p == wire.V2 {
			return wire.V2Message(m)
		}
		return wire.SeedMessage(m)
	})
	if err != nil {
		return err
	}
	if a.Proto == wire.Seed {
		return nil // the seed page shows its own message itself
	}
	own := enc[wire.V2]
	if own == nil {
		own = wire.V2Message(m)
	}
	if err := ws.SendNumbered(m.Seq, own, true); err != nil {
		return err
	}
	return ws.Send(wire.Ack(m.ID, m.Seq, m.TS), true)
}

// forget drops the dedupe records that storing seq moves out of the
// window, in the same batch, so every replica drops the same ones. It
// drops them a run at a time (forgetRun), named by their messages, read
// in one scan: three point reads per message of keys written 65,536
// messages earlier were 49% of a busy leader's CPU (bench scenario 8). So
// a room keeps between window and window+forgetRun-1 records.
func forget(st *durable.Storage, seq, window uint64) error {
	run := forgetRun(window)
	if seq <= window || seq%run != 0 {
		return nil
	}
	newest := seq - window
	kvs, err := st.List(durable.ListOptions{Prefix: msgPrefix, Start: msgKey(newest - min(newest, run) + 1),
		End: msgKey(newest + 1), Limit: int(run)})
	if err != nil {
		return fmt.Errorf("read the messages leaving the dedupe window: %w", err)
	}
	for _, kv := range kvs {
		m, key, err := decodeMessage(kv)
		if err != nil {
			return err
		}
		if err := st.Drop(dedupPrefix + dedupeKey(m.Name, key, m.ID)); err != nil {
			return err
		}
	}
	return nil
}

// forgetRun is how many dedupe records forget drops at once: a 128th of
// the window (512 of DedupeWindow's, well under durable.MaxKeysPerList
// and MaxBatchBytes), at least one.
func forgetRun(window uint64) uint64 { return max(window/128, 1) }

// WebSocketClose tells the others a browser left.
func (r *Room) WebSocketClose(ctx context.Context, s *durable.State, ws durable.WebSocket, code int, reason string, clean bool) error {
	return r.leave(s, ws)
}

// WebSocketError is a leave as well: the socket is gone either way.
func (r *Room) WebSocketError(ctx context.Context, s *durable.State, ws durable.WebSocket, err error) error {
	return r.leave(s, ws)
}

func (r *Room) leave(s *durable.State, ws durable.WebSocket) error {
	a, ok := r.joined[ws.ID()]
	if !ok {
		return nil
	}
	delete(r.joined, ws.ID())
	delete(r.sends, ws.ID())
	if r.users[a.Name]--; r.users[a.Name] <= 0 {
		delete(r.users, a.Name)
	}
	_, err := r.toOthers(s, ws.ID(), 0, func(p wire.Protocol) []byte { return wire.Left(p, a.Name) })
	return err
}
