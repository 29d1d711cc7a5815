package objectnode

import (
	"context"

	pb "hellochat/proto/roompb"
)

// A router that reads its Gateway stream slower than the node's objects
// send to its sockets lets the node's queue for it grow, and a queue past
// its bound (MaxGatewayQueueBytes, maxGatewayQueueOps) closes sockets. So
// that overload slows the browsers down rather than disconnecting them,
// the node stops taking the messages that router streams while its queue
// is crowded: the router's unanswered messages then reach their bound and
// it refuses or stops reading its browsers (router's maxUnackedEvents).
// The sockets of other routers, whose queues are not crowded, go on.
const (
	// gatewayCrowdedOps and gatewayCrowdedBytes: a router's queue (what
	// waits, and what its stream took and has not sent) at either is
	// crowded. A quarter of the bounds leaves room for what the events
	// already taken go on sending, a dozen operations each in a room.
	gatewayCrowdedOps   = maxGatewayQueueOps / 4
	gatewayCrowdedBytes = MaxGatewayQueueBytes / 4
	// A crowded queue's router is heard again once its queue is below
	// half of either mark.
	gatewayRoomyOps   = gatewayCrowdedOps / 2
	gatewayRoomyBytes = gatewayCrowdedBytes / 2
)

// backlog is what q holds for its router: queued, and taken by its stream
// and not yet sent; mu is held.
func (q *gatewayQueue) backlog() (ops, bytes int) {
	return len(q.ops) + q.sendingOps, q.bytes + q.sendingBytes
}

// awaitRoom returns once gateway's queue is not crowded, or when ctx ends
// (with its error). A queue found crowded is waited on until it is roomy.
func (h *gatewayHub) awaitRoom(ctx context.Context, gateway string) error {
	h.mu.Lock()
	q := h.queue(gateway)
	if ops, bytes := q.backlog(); ops < gatewayCrowdedOps && bytes < gatewayCrowdedBytes {
		h.mu.Unlock()
		return nil
	}
	h.held++
	h.log.Info("a router's queue is crowded: its streamed messages wait", "gateway", gateway,
		"queued", len(q.ops), "sending", q.sendingOps, "bytes", q.bytes+q.sendingBytes)
	for {
		if ops, bytes := q.backlog(); ops < gatewayRoomyOps && bytes < gatewayRoomyBytes {
			h.mu.Unlock()
			return nil
		}
		if q.roomy == nil {
			q.roomy = make(chan struct{})
		}
		roomy := q.roomy
		h.mu.Unlock()
		select {
		case <-roomy:
		case <-ctx.Done():
			return ctx.Err()
		}
		h.mu.Lock()
	}
}

// sent records that q's stream sent ops operations of bytes, and wakes
// those waiting for room once there is; mu is held.
func (q *gatewayQueue) sent(ops, bytes int) {
	q.sendingOps -= ops
	q.sendingBytes -= bytes
	if q.roomy == nil {
		return
	}
	if ops, bytes := q.backlog(); ops < gatewayRoomyOps && bytes < gatewayRoomyBytes {
		close(q.roomy)
		q.roomy = nil
	}
}

// sendBytes is the bytes of the frames ops send, as the queue counts them.
func sendBytes(ops []queuedOp) int {
	n := 0
	for _, op := range ops {
		if s, ok := op.op.Op.(*pb.GatewayOp_Send); ok {
			n += len(s.Send.Data) * (1 + len(s.Send.Also))
		}
	}
	return n
}

// holds is how many times awaitRoom found a queue crowded.
func (h *gatewayHub) holds() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held
}
