package wire

import (
	"fmt"
	"strings"

	"hellochat/limits"
)

// Op is one checked frame from a browser.
type Op struct {
	Kind   string // "send", "typing" or "history"
	ID     string // client message id (v2 send); seed sends have none
	Text   string // trimmed and checked
	Before uint64
	Limit  uint32
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

// Parse decodes and checks one text frame of either protocol. Any error is
// one the client can be told about (its Op carries the frame's id, if
// any); nothing here panics on any input (FuzzParse).
func Parse(p Protocol, data []byte) (Op, *limits.Error) {
	if p == Seed {
		in, err := decodeSeed(data)
		if err != nil || in.Message == nil {
			return Op{}, &limits.Error{Code: limits.CodeBadJSON, Message: `invalid frame: expected {"message":"..."}`}
		}
		return checkedSend("", *in.Message)
	}
	in, err := decodeV2(data)
	if err != nil {
		return Op{}, &limits.Error{Code: limits.CodeBadJSON, Message: "invalid JSON frame"}
	}
	switch in.Type {
	case "send":
		if err := limits.ClientID(in.ID); err != nil {
			return Op{ID: in.ID}, err.(*limits.Error)
		}
		if strings.HasPrefix(in.ID, limits.RouterIDMark) {
			return Op{ID: in.ID}, &limits.Error{Code: limits.CodeBadID,
				Message: fmt.Sprintf("message ids beginning with %q are the router's", limits.RouterIDMark)}
		}
		return checkedSend(in.ID, in.Text)
	case "typing":
		return Op{Kind: "typing"}, nil
	case "history":
		return Op{Kind: "history", Before: in.Before, Limit: in.Limit}, nil
	default:
		return Op{ID: in.ID}, &limits.Error{Code: limits.CodeUnknownType, Message: fmt.Sprintf("unknown frame type %q", in.Type)}
	}
}

func checkedSend(id, raw string) (Op, *limits.Error) {
	text, err := limits.Message(raw)
	if err != nil {
		return Op{ID: id}, err.(*limits.Error)
	}
	return Op{Kind: "send", ID: id, Text: text}, nil
}
