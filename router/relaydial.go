package router

import (
	"context"
	"math/rand/v2"
	"time"

	"hellochat/apps/chat/wire"
	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

// dial opens a new stream to the room's node and queues, in order, the
// Open, a Join for every browser and the unacknowledged sends the window
// allows. What the browsers missed meanwhile is read in pages once the node
// says Opened.
func (rl *relay) dial() {
	rl.closeStream()
	rl.waiting = false
	rl.redial.Stop()
	target, ok := rl.pickTarget()
	if !ok {
		rl.retryLater("no object node known")
		return
	}
	conn, err := rl.rt.conn(target.GRPC)
	if err != nil {
		rl.retryLater(err.Error())
		return
	}
	if rl.gen > 0 {
		rl.rt.metrics.reconnects.Inc()
	}
	rl.gen++
	ctx, cancel := context.WithCancel(rl.rt.ctx)
	st := &relayStream{gen: rl.gen, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
	rl.stream, rl.target, rl.ready = st, target, false
	rl.history.reset()
	for _, rs := range rl.sessions {
		rs.newestID, rs.olderID = 0, 0
	}

	client := pb.NewRoomsClient(conn)
	gen, events := st.gen, rl.events
	report := func(e streamEvent) bool { return events.Push(e, ctx.Done(), nil) }
	go func() {
		// The writer ends a failed stream through its own context, so that
		// Recv reports the cause: report gives up only when the relay has
		// given up on the stream (ctx), or the failure could be lost.
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := client.Attach(sctx)
		if err != nil {
			report(streamEvent{gen: gen, err: err})
			return
		}
		go func() {
			for {
				select {
				case <-st.wake:
					for _, req := range st.take() {
						if err := stream.Send(req); err != nil {
							scancel()
							return
						}
					}
				case <-sctx.Done():
					return
				}
			}
		}()
		for {
			ev, err := stream.Recv()
			if !report(streamEvent{gen: gen, ev: ev, err: err}) || err != nil {
				return
			}
		}
	}()
	rl.write(&pb.AttachRequest{Kind: &pb.AttachRequest_Open{Open: &pb.Open{Room: rl.room, RouterId: rl.rt.instance}}})
	for _, rs := range rl.sessions {
		rl.write(rl.joinReq(rs))
	}
	rl.rt.metrics.resent.Add(float64(rl.sends.restart()))
	rl.sends.pump(rl.writeSend)
}

// pickTarget chooses where to attach: the node a redirect named, else the
// live node that gossips leadership of the room's shard, else the ring's
// first live replica (which answers with a redirect if it is not leader).
func (rl *relay) pickTarget() (cluster.Meta, bool) {
	return rl.rt.members.Placement().Target(cluster.Shard(rl.room), rl.hint.GetOwnerId(), rl.hint.GetOwnerAddr(), &rl.attempt)
}

func (rl *relay) closeStream() {
	if rl.stream != nil {
		rl.stream.cancel()
		rl.stream = nil
	}
	rl.ready = false
}

func (rl *relay) retryLater(why string) {
	if rl.ready && time.Since(rl.openedAt) >= stableStream {
		rl.backoff = backoffMin
	}
	if rl.ready || rl.backoff == backoffMin {
		rl.rt.log.Info("room relay reconnecting", "room", rl.room, "node", rl.target.ID, "why", why)
	}
	rl.closeStream()
	if !rl.degraded {
		rl.degraded = true
		rl.status("reconnecting")
	}
	d := rl.backoff/2 + rand.N(rl.backoff/2+1)
	rl.backoff = min(rl.backoff*2, backoffMax)
	rl.redial.Reset(d)
	rl.waiting = true
}

// status tells the v2 browsers that have their history whether the room
// is reachable.
func (rl *relay) status(state string) {
	frame := wire.Status(state)
	for _, rs := range rl.sessions {
		if rs.s.proto == wire.V2 && rs.started {
			rs.s.enqueue(frame)
		}
	}
}

// placementChanged re-targets the stream when gossip shows a node newly
// claiming leadership of the room's shard, or says the current node died.
// A new claim wins over an old one: that is how a relay leaves a paused
// leader, whose stream stays open but silent while its claim lingers until
// gossip declares it dead.
func (rl *relay) placementChanged() {
	p := rl.rt.members.Placement()
	leaders := p.Leaders(cluster.Shard(rl.room))
	var fresh *cluster.Meta
	claims := make(map[string]bool, len(leaders))
	for i, l := range leaders {
		claims[l.ID] = true
		if !rl.claims[l.ID] && l.ID != rl.target.ID && fresh == nil {
			fresh = &leaders[i]
		}
	}
	rl.claims = claims
	if rl.stream == nil && rl.waiting {
		// Waiting out a backoff: a new leader is worth dialing now.
		if fresh == nil {
			return
		}
	} else if rl.stream == nil {
		return
	}
	switch {
	case fresh != nil:
		rl.rt.log.Info("room leader changed", "room", rl.room, "from", rl.target.ID, "to", fresh.ID)
	case rl.target.ID != "" && !p.Alive(rl.target.ID):
		rl.rt.log.Info("room's node is down", "room", rl.room, "node", rl.target.ID)
	default:
		return
	}
	rl.hint = nil
	if fresh != nil {
		rl.hint = &pb.Redirect{OwnerId: fresh.ID, OwnerAddr: fresh.GRPC}
	}
	rl.backoff = backoffMin
	rl.dial()
}
