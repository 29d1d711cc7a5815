package objectnode

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

// StreamQueue bounds the events waiting to be sent on one Attach stream.
// A router that falls this far behind is dropped and re-attaches with a
// resume (see room.sendTo).
const StreamQueue = 8192

// stream is the node's side of one router's Attach stream for one room.
type stream struct {
	router string
	out    chan *pb.AttachEvent

	endOnce sync.Once
	ended   chan struct{} // closed by the room when it drops the stream
	final   *pb.AttachEvent
}

func newStream(router string) *stream {
	return &stream{router: router, out: make(chan *pb.AttachEvent, StreamQueue), ended: make(chan struct{})}
}

// end tells the stream's handler to flush, send the redirect and finish.
func (st *stream) end(redirect *pb.Redirect) {
	st.endOnce.Do(func() {
		st.final = &pb.AttachEvent{Kind: &pb.AttachEvent_Redirect{Redirect: redirect}}
		close(st.ended)
	})
}

// service implements the Rooms gRPC service.
type service struct {
	pb.UnimplementedRoomsServer
	node *Node
}

// Attach relays one room for one router. The handler goroutine writes to
// the stream; a second goroutine reads from it and feeds the room actor,
// waiting when the actor's mailbox is full (backpressure).
func (s *service) Attach(srv pb.Rooms_AttachServer) error {
	n := s.node
	ctx := srv.Context()
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "first request must be Open")
	}
	name, err := limits.Room(open.Room)
	if err != nil || name != open.Room {
		return status.Errorf(codes.InvalidArgument, "bad room name %q", open.Room)
	}
	if redirect := n.redirectFor(name); redirect != nil {
		return srv.Send(&pb.AttachEvent{Kind: &pb.AttachEvent_Redirect{Redirect: redirect}})
	}

	st := newStream(open.RouterId)
	r, err := n.attach(ctx, name, st, open)
	if errors.Is(err, ErrRoomStopped) {
		return srv.Send(&pb.AttachEvent{Kind: &pb.AttachEvent_Redirect{Redirect: &pb.Redirect{Reason: "node shutting down"}}})
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "attach %q: %v", name, err)
	}
	defer func() {
		// Best effort: the room may already have dropped the stream or exited.
		dctx, cancel := context.WithTimeout(context.Background(), n.cfg.RoomIdle)
		defer cancel()
		_ = r.enqueue(dctx, roomReq{detach: st})
	}()

	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := srv.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if req.GetOpen() != nil {
				recvErr <- status.Error(codes.InvalidArgument, "Open sent twice")
				return
			}
			if err := r.enqueue(ctx, roomReq{from: st, req: req}); err != nil {
				recvErr <- err
				return
			}
		}
	}()

	for {
		select {
		case ev := <-st.out:
			if err := srv.Send(ev); err != nil {
				return err
			}
		case <-st.ended:
			// Flush what the room queued before it let go, then redirect.
		flush:
			for {
				select {
				case ev := <-st.out:
					if err := srv.Send(ev); err != nil {
						return err
					}
				default:
					break flush
				}
			}
			return srv.Send(st.final)
		case err := <-recvErr:
			if errors.Is(err, ErrRoomStopped) {
				return status.Error(codes.Unavailable, "room stopped")
			}
			return nil // the router closed its side, or went away
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Status reports the node's rooms and its view of the cluster.
func (s *service) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	n := s.node
	p := n.members.Placement()
	resp := &pb.StatusResponse{NodeId: n.cfg.ID, Ready: n.ready()}
	if h := n.host.Load(); h != nil {
		for s := 0; s < cluster.Partitions; s++ {
			if serving, _ := h.Serving(s); serving {
				resp.Leading = append(resp.Leading, uint32(s))
			}
		}
	}
	for _, m := range p.Nodes() {
		resp.Members = append(resp.Members, &pb.MemberStatus{Id: m.ID, Role: m.Role, GrpcAddr: m.GRPC, Alive: p.Alive(m.ID)})
	}
	for _, r := range n.activeRooms() {
		reply := make(chan *pb.RoomStatus, 1)
		if err := r.enqueue(ctx, roomReq{status: reply}); err != nil {
			continue
		}
		select {
		case rs, ok := <-reply:
			if ok {
				resp.Rooms = append(resp.Rooms, rs)
			}
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return resp, nil
}
