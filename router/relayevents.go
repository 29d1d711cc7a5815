package router

import (
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/apps/chat/wire"
	pb "hellochat/proto/roompb"
)

func (rl *relay) event(e streamEvent) {
	if rl.stream == nil || e.gen != rl.stream.gen {
		return // a stream we already gave up on
	}
	if e.err != nil {
		why := e.err.Error()
		if s, ok := status.FromError(e.err); ok {
			why = s.Code().String() + ": " + s.Message()
		}
		if errors.Is(e.err, io.EOF) || status.Code(e.err) == codes.Canceled {
			why = "stream closed by node"
		}
		rl.retryLater(why)
		return
	}
	switch k := e.ev.Kind.(type) {
	case *pb.AttachEvent_Opened:
		rl.opened(k.Opened)
	case *pb.AttachEvent_Redirect:
		r := k.Redirect
		if r.TooSlow {
			rl.sends.slowDown()
		}
		if r.OwnerAddr != "" && r.OwnerAddr != rl.target.GRPC {
			rl.hint = r
			rl.rt.log.Info("room redirected", "room", rl.room, "from", rl.target.ID, "to", r.OwnerId, "why", r.Reason)
			rl.backoff = backoffMin
			rl.dial()
			return
		}
		rl.hint = nil
		rl.retryLater("redirected: " + r.Reason)
	case *pb.AttachEvent_Message:
		rl.deliver([]*pb.ChatMessage{k.Message}, true)
		rl.catchUp()
	case *pb.AttachEvent_Ack:
		if rl.answered(sendKey{k.Ack.Session, k.Ack.ClientId}) != nil {
			rl.rt.metrics.acked.Inc() // once per message, however many acks name it
		}
		if rs := rl.sessions[k.Ack.Session]; rs != nil && rs.s.proto == wire.V2 {
			rs.s.enqueue(wire.Ack(k.Ack.ClientId, k.Ack.Seq, k.Ack.TsMs))
		}
	case *pb.AttachEvent_Page:
		rl.page(k.Page)
	case *pb.AttachEvent_Presence:
		rl.presence(k.Presence)
	case *pb.AttachEvent_Typing:
		frame := wire.Typing(k.Typing.Name)
		for id, rs := range rl.sessions {
			if rs.s.proto == wire.V2 && rs.started && !(k.Typing.OriginRouter == rl.rt.instance && k.Typing.OriginSession == id) {
				rs.s.enqueue(frame)
			}
		}
	case *pb.AttachEvent_Reject:
		rj := k.Reject
		var send *pb.Send
		if rj.ClientId != "" {
			send = rl.answered(sendKey{rj.Session, rj.ClientId})
		}
		if rs := rl.sessions[rj.Session]; rs != nil {
			if send != nil {
				rl.refuse(rs.s, rj.Code, wire.Refusal(rs.s.proto, rj.Code, rj.Message, send.ClientId, send.Text))
			} else {
				rl.refuse(rs.s, rj.Code, wire.Error(rs.s.proto, rj.Code, rj.Message, rj.ClientId))
			}
		}
	}
}

// opened: the node serves the room and will stream every message after
// LastSeq. Sessions waiting for that start; those behind read pages.
func (rl *relay) opened(o *pb.Opened) {
	rl.ready, rl.openedAt = true, time.Now()
	rl.head, rl.headKnown = max(rl.head, o.LastSeq), true
	for _, rs := range rl.sessions {
		rs.announced = true
		if rs.placed {
			rl.settle(rs) // what was committed while it was away, it reads in pages
		} else {
			rl.start(rs)
		}
	}
	if rl.degraded {
		rl.degraded = false
		rl.status("ready")
	}
	rl.catchUp()
}

// answered forgets an acknowledged or refused send, lets the next ones go
// out, and returns it (nil when it was not waiting).
func (rl *relay) answered(k sendKey) *pb.Send {
	s := rl.sends.answer(k)
	if s != nil {
		rl.sends.pump(rl.writeSend)
	}
	return s
}

func (rl *relay) presence(p *pb.Presence) {
	rl.users = p.Users
	var seed, v2 []byte
	switch p.Change {
	case pb.Presence_JOINED:
		seed = wire.Joined(wire.Seed, p.Name)
		v2 = wire.Joined(wire.V2, p.Name)
	case pb.Presence_LEFT:
		seed = wire.Left(wire.Seed, p.Name)
		v2 = wire.Left(wire.V2, p.Name)
	}
	// v2 browsers get the whole list when they start, then only who
	// joined or left: a join costs each member one small frame, not the
	// room's whole list. The subject of a change, and everyone on a change
	// that is neither (the list was rebuilt), get the list instead.
	var users []byte
	for id, rs := range rl.sessions {
		if !rs.started {
			continue // notices are not history; it gets the list with its history
		}
		subject := p.OriginRouter == rl.rt.instance && p.OriginSession == id
		switch rs.s.proto {
		case wire.Seed:
			if seed != nil && !subject {
				rs.s.enqueue(seed)
			}
		case wire.V2:
			if v2 != nil && !subject {
				rs.s.enqueue(v2)
				continue
			}
			if users == nil {
				users = wire.Presence(p.Users)
			}
			rs.s.enqueue(users)
		}
	}
}
