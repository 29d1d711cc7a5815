package router

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

// SubprotocolV2 selects our extended protocol (docs/protocol.md).
const SubprotocolV2 = "hellochat.v2"

type protocol int

const (
	protoSeed protocol = iota
	protoV2
)

// seedFrame is the seed app's one frame shape, both directions.
type seedFrame struct {
	Name      string `json:"name,omitempty"`
	Message   string `json:"message"`
	Timestamp int64  `json:"timestamp,omitempty"`
}

// seedIn is what a seed client sends; Message is a pointer to tell a
// missing field from an empty one.
type seedIn struct {
	Message *string `json:"message"`
}

// v2In is any v2 client frame.
type v2In struct {
	Type   string `json:"type"`
	ID     string `json:"id,omitempty"`
	Text   string `json:"text,omitempty"`
	Before uint64 `json:"before,omitempty"`
	Limit  uint32 `json:"limit,omitempty"`
}

type v2Message struct {
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
	Type     string      `json:"type"`
	Room     string      `json:"room,omitempty"`
	Name     string      `json:"name,omitempty"`
	Limits   *v2Limits   `json:"limits,omitempty"`
	Messages []v2Message `json:"messages,omitempty"`
	More     *bool       `json:"more,omitempty"`
	Before   uint64      `json:"before,omitempty"`
	Users    []string    `json:"users,omitempty"`
	State    string      `json:"state,omitempty"`
	Code     string      `json:"code,omitempty"`
	Message  string      `json:"message,omitempty"`
	ID       string      `json:"id,omitempty"`
	Seq      uint64      `json:"seq,omitempty"`
	Text     string      `json:"text,omitempty"`
	TS       int64       `json:"ts,omitempty"`
}

// mustJSON encodes a frame. HTML characters are not escaped (pages show
// text as text), so a frame is at most about twice its text, not six times:
// a history page of limits.MaxPageBytes stays a modest WebSocket message.
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("router: encode frame: " + err.Error()) // only plain structs are encoded
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func toV2(m *pb.ChatMessage) v2Message {
	return v2Message{Seq: m.Seq, ID: m.ClientId, Name: m.Name, Text: m.Text, TS: m.TsMs}
}

// seedMessageFrame and v2MessageFrame encode one committed message; a
// relay encodes it once per protocol present, however many browsers.
func seedMessageFrame(m *pb.ChatMessage) []byte {
	return mustJSON(seedFrame{Name: m.Name, Message: m.Text, Timestamp: m.TsMs})
}

func v2MessageFrame(m *pb.ChatMessage) []byte {
	return mustJSON(struct {
		Type string `json:"type"`
		v2Message
	}{"message", toV2(m)})
}

func welcomeFrame(room, name string) []byte {
	return mustJSON(v2Out{Type: "welcome", Room: room, Name: name, Limits: &v2Limits{
		MaxMessageBytes: limits.MaxMessageBytes, MaxNameRunes: limits.MaxNameRunes, HistoryLimit: limits.HistoryLimit}})
}

func historyFrame(msgs []*pb.ChatMessage, more bool, before uint64) []byte {
	out := make([]v2Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, toV2(m))
	}
	return mustJSON(struct {
		Type     string      `json:"type"`
		Messages []v2Message `json:"messages"`
		More     bool        `json:"more"`
		Before   uint64      `json:"before,omitempty"`
	}{"history", out, more, before})
}

func ackFrame(a *pb.Ack) []byte {
	return mustJSON(v2Out{Type: "ack", ID: a.ClientId, Seq: a.Seq, TS: a.TsMs})
}

func presenceFrame(users []string) []byte {
	if users == nil {
		users = []string{}
	}
	return mustJSON(struct {
		Type  string   `json:"type"`
		Users []string `json:"users"`
	}{"presence", users})
}

func statusFrame(state string) []byte { return mustJSON(v2Out{Type: "status", State: state}) }

// refusalFrame tells a browser that one of its messages was not stored. A
// seed page cannot match an error to a message, so its error quotes the
// message's beginning.
func refusalFrame(p protocol, code, why string, s *pb.Send) []byte {
	if p == protoSeed {
		return errorFrame(p, code, why+": "+quoteStart(s.Text), "")
	}
	return errorFrame(p, code, why, s.ClientId)
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

// errorFrame encodes a rejection in the session's protocol: the seed page
// has only one frame shape, so it gets the error as a message from "system".
func errorFrame(p protocol, code, msg, id string) []byte {
	if p == protoSeed {
		return mustJSON(seedFrame{Name: "system", Message: "error: " + msg, Timestamp: time.Now().UnixMilli()})
	}
	return mustJSON(v2Out{Type: "error", Code: code, Message: msg, ID: id})
}
