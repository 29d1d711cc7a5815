// Package wire is the chat's browser protocols (docs/protocol.md): the
// frames a server sends in the seed protocol (the original Hello Chat
// app's) and in hellochat.v2, and the parser of what browsers send. It
// holds no state and imports nothing of the cluster, so the router and
// the chat class share one encoding.
package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"hellochat/limits"
)

// SubprotocolV2 selects our extended protocol.
const SubprotocolV2 = "hellochat.v2"

// Protocol is a browser's protocol.
type Protocol int

const (
	// Seed is the original app's protocol: no subprotocol offered.
	Seed Protocol = iota
	// V2 is hellochat.v2.
	V2
)

// seedFrame is the seed app's one frame shape, both directions.
type seedFrame struct {
	Name      string `json:"name,omitempty"`
	Message   string `json:"message"`
	Timestamp int64  `json:"timestamp,omitempty"`
}

// Message is a committed chat message, as v2 shows it.
type Message struct {
	Seq  uint64 `json:"seq"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	Text string `json:"text"`
	TS   int64  `json:"ts"`
}

type v2Limits struct {
	MaxMessageBytes int `json:"maxMessageBytes"`
	MaxNameRunes    int `json:"maxNameRunes"`
	HistoryLimit    int `json:"historyLimit"`
}

type v2Out struct {
	Type    string    `json:"type"`
	Room    string    `json:"room,omitempty"`
	Name    string    `json:"name,omitempty"`
	Limits  *v2Limits `json:"limits,omitempty"`
	State   string    `json:"state,omitempty"`
	Code    string    `json:"code,omitempty"`
	Message string    `json:"message,omitempty"`
	ID      string    `json:"id,omitempty"`
	Seq     uint64    `json:"seq,omitempty"`
	TS      int64     `json:"ts,omitempty"`
}

// encode encodes a frame. HTML characters are not escaped (pages show
// text as text), so a frame is at most about twice its text, not six times:
// a history page of limits.MaxPageBytes stays a modest WebSocket message.
func encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("wire: encode frame: " + err.Error()) // only plain structs are encoded
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// SeedMessage and V2Message encode one committed message; a room encodes
// it once per protocol present, however many browsers.
func SeedMessage(m Message) []byte {
	b := append(frameBuf(m), '{')
	if m.Name != "" {
		b = append(b, `"name":`...)
		b = appendString(b, m.Name)
		b = append(b, ',')
	}
	b = append(b, `"message":`...)
	b = appendString(b, m.Text)
	if m.TS != 0 {
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, m.TS, 10)
	}
	return append(b, '}')
}

// V2Message is a v2 "message" frame.
func V2Message(m Message) []byte {
	return appendMessageFields(append(frameBuf(m), `{"type":"message",`...), m)
}

// Welcome is v2's first frame.
func Welcome(room, name string) []byte {
	return encode(v2Out{Type: "welcome", Room: room, Name: name, Limits: &v2Limits{
		MaxMessageBytes: limits.MaxMessageBytes, MaxNameRunes: limits.MaxNameRunes, HistoryLimit: limits.HistoryLimit}})
}

// History is a page of messages, oldest first; before is set in replies
// to a history request.
func History(msgs []Message, more bool, before uint64) []byte {
	if msgs == nil {
		msgs = []Message{}
	}
	return encode(struct {
		Type     string    `json:"type"`
		Messages []Message `json:"messages"`
		More     bool      `json:"more"`
		Before   uint64    `json:"before,omitempty"`
	}{"history", msgs, more, before})
}

// Ack tells a v2 sender its message id is stored as seq.
func Ack(id string, seq uint64, ts int64) []byte {
	b := append(make([]byte, 0, 48+len(id)), `{"type":"ack"`...)
	if id != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, id)
	}
	if seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, seq, 10)
	}
	if ts != 0 {
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, ts, 10)
	}
	return append(b, '}')
}

// Presence is who is in the room (names sorted, with repeats).
func Presence(users []string) []byte {
	if users == nil {
		users = []string{}
	}
	return encode(struct {
		Type  string   `json:"type"`
		Users []string `json:"users"`
	}{"presence", users})
}

// Status tells v2 clients the room is "reconnecting" or "ready".
func Status(state string) []byte { return encode(v2Out{Type: "status", State: state}) }

// Typing tells v2 clients someone is typing.
func Typing(name string) []byte { return encode(v2Out{Type: "typing", Name: name}) }

// Joined and Left announce a presence change to the others, in each
// protocol's words.
func Joined(p Protocol, name string) []byte {
	if p == Seed {
		return encode(seedFrame{Name: name, Message: "joined the chat"})
	}
	return encode(v2Out{Type: "joined", Name: name})
}

// Left is Joined's counterpart.
func Left(p Protocol, name string) []byte {
	if p == Seed {
		return encode(seedFrame{Name: name, Message: "Disconnected"})
	}
	return encode(v2Out{Type: "left", Name: name})
}

// Refusal tells a browser that one of its messages (id, text) was not
// stored. A seed page cannot match an error to a message, so its error
// quotes the message's beginning.
func Refusal(p Protocol, code, why, id, text string) []byte {
	if p == Seed {
		return Error(p, code, why+": "+quoteStart(text), "")
	}
	return Error(p, code, why, id)
}

// quoteStart quotes the first refusalQuoteRunes characters of a text.
func quoteStart(text string) string {
	const refusalQuoteRunes = 40
	if utf8.RuneCountInString(text) <= refusalQuoteRunes {
		return strconv.Quote(text)
	}
	runes := []rune(text)
	return strconv.Quote(string(runes[:refusalQuoteRunes]) + "…")
}

// Error encodes a rejection in the browser's protocol: the seed page has
// only one frame shape, so it gets the error as a message from "system".
func Error(p Protocol, code, msg, id string) []byte {
	if p == Seed {
		return encode(seedFrame{Name: "system", Message: "error: " + msg, Timestamp: time.Now().UnixMilli()})
	}
	return encode(v2Out{Type: "error", Code: code, Message: msg, ID: id})
}
