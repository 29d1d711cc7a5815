package router

import (
	"fmt"
	"strconv"
	"time"

	"hellochat/apps/chat/wire"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

// handleFrame acts on one text frame.
func (s *session) handleFrame(rl *relay, data []byte) {
	op, lerr := wire.Parse(s.proto, data)
	if lerr != nil {
		rl.refuse(s, lerr.Code, wire.Error(s.proto, lerr.Code, lerr.Message, op.ID))
		return
	}
	switch op.Kind {
	case "send":
		if s.proto == wire.Seed {
			// The router names seed messages itself so a resend after a
			// failover is still stored once.
			s.seedSeq++
			op.ID = s.seedPrefix + strconv.FormatUint(s.seedSeq, 36)
		}
		if !s.sends.take(rl.rt.cfg.SendRate, rl.rt.cfg.SendBurst) {
			rl.refuse(s, limits.CodeRateLimited, wire.Error(s.proto, limits.CodeRateLimited,
				fmt.Sprintf("too many messages (max %g/s); message not sent", rl.rt.cfg.SendRate), op.ID))
			return
		}
		rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: &pb.Send{
			Session: s.id, ClientId: op.ID, Text: op.Text, Name: s.name, Key: s.key}}}})
	case "typing":
		if now := time.Now(); now.Sub(s.lastTyping) >= TypingInterval {
			s.lastTyping = now
			rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Typing{Typing: &pb.TypingRequest{Session: s.id}}}})
		}
	case "history":
		rl.submit(relayReq{from: s, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Page{Page: &pb.PageRequest{
			Before: op.Before, Limit: op.Limit}}}})
	}
}
