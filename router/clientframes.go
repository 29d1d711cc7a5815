package router

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

// clientOp is one checked frame from a browser.
type clientOp struct {
	kind   string // "send", "typing" or "history"
	id     string // client message id (v2 send); seed sends get one from the router
	text   string // trimmed and checked
	before uint64
	limit  uint32
}

// parseFrame decodes and checks one text frame of either protocol. Any
// error is one the client can be told about; nothing here panics on any
// input (FuzzParseFrame).
func parseFrame(p protocol, data []byte) (clientOp, *limits.Error) {
	if p == protoSeed {
		var in seedIn
		if err := json.Unmarshal(data, &in); err != nil || in.Message == nil {
			return clientOp{}, &limits.Error{Code: limits.CodeBadJSON, Message: `invalid frame: expected {"message":"..."}`}
		}
		return checkedSend("", *in.Message)
	}
	var in v2In
	if err := json.Unmarshal(data, &in); err != nil {
		return clientOp{}, &limits.Error{Code: limits.CodeBadJSON, Message: "invalid JSON frame"}
	}
	switch in.Type {
	case "send":
		if err := limits.ClientID(in.ID); err != nil {
			return clientOp{id: in.ID}, err.(*limits.Error)
		}
		if strings.HasPrefix(in.ID, limits.RouterIDMark) {
			return clientOp{id: in.ID}, &limits.Error{Code: limits.CodeBadID,
				Message: fmt.Sprintf("message ids beginning with %q are the router's", limits.RouterIDMark)}
		}
		return checkedSend(in.ID, in.Text)
	case "typing":
		return clientOp{kind: "typing"}, nil
	case "history":
		return clientOp{kind: "history", before: in.Before, limit: in.Limit}, nil
	default:
		return clientOp{id: in.ID}, &limits.Error{Code: limits.CodeUnknownType, Message: fmt.Sprintf("unknown frame type %q", in.Type)}
	}
}

func checkedSend(id, raw string) (clientOp, *limits.Error) {
	text, err := limits.Message(raw)
	if err != nil {
		return clientOp{id: id}, err.(*limits.Error)
	}
	return clientOp{kind: "send", id: id, text: text}, nil
}

// handleFrame acts on one text frame.
func (s *session) handleFrame(rl *relay, data []byte) {
	op, lerr := parseFrame(s.proto, data)
	if lerr != nil {
		rl.refuse(s, lerr.Code, errorFrame(s.proto, lerr.Code, lerr.Message, op.id))
		return
	}
	switch op.kind {
	case "send":
		if s.proto == protoSeed {
			// The router names seed messages itself so a resend after a
			// failover is still stored once.
			s.seedSeq++
			op.id = s.seedPrefix + strconv.FormatUint(s.seedSeq, 36)
		}
		if !s.sends.take(rl.rt.cfg.SendRate, rl.rt.cfg.SendBurst) {
			rl.refuse(s, limits.CodeRateLimited, errorFrame(s.proto, limits.CodeRateLimited,
				fmt.Sprintf("too many messages (max %g/s); message not sent", rl.rt.cfg.SendRate), op.id))
			return
		}
		rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: &pb.Send{
			Session: s.id, ClientId: op.id, Text: op.text, Name: s.name, Key: s.key}}}})
	case "typing":
		if now := time.Now(); now.Sub(s.lastTyping) >= TypingInterval {
			s.lastTyping = now
			rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Typing{Typing: &pb.TypingRequest{Session: s.id}}}})
		}
	case "history":
		rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Page{Page: &pb.PageRequest{
			Before: op.before, Limit: op.limit}}}})
	}
}
