package objectnode

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/durable"
	"hellochat/objectclient"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// The Objects service's side of routers' WebSockets: the Gateway stream
// (what objects send to a router's sockets one way, the browsers'
// messages and their results the other) and the Socket call, by which a
// router sends a socket's events one at a time (its close, and messages
// again after a failover).

// authorizeGateway lets only the router a gateway id names use it: a
// router's certificate names its id, which begins its gateway's id.
func (s *objectService) authorizeGateway(ctx context.Context, gateway string) error {
	who, err := s.node.cfg.Security.Authorize(ctx, security.RoleRouter)
	if err != nil {
		return err
	}
	owner, err := objectclient.ParseGateway(gateway)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if who.ID != "" && owner != who.ID {
		return status.Errorf(codes.PermissionDenied, "%s may not use the gateway of router %s", who, cut(owner, 64))
	}
	return nil
}

// Gateway serves a router's stream: its hello, then its events, while
// what objects send to its sockets goes the other way.
func (s *objectService) Gateway(stream grpc.BidiStreamingServer[pb.GatewayUp, pb.GatewayOp]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "a Gateway stream begins with a hello")
	}
	gateway := hello.GetGateway()
	if err := s.authorizeGateway(stream.Context(), gateway); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		defer cancel()
		if err := s.gatewayEvents(ctx, gateway, stream); err != nil && ctx.Err() == nil {
			s.node.log.Info("gateway stream's events ended", "gateway", gateway, "err", err)
		}
	}()
	return s.node.gateways.serve(ctx, gateway, hello.GetSharesFrames(), stream)
}

// gatewayEvents posts each event the router sends to its object, in the
// order sent, and queues its result for the router when it is known.
func (s *objectService) gatewayEvents(ctx context.Context, gateway string, stream grpc.BidiStreamingServer[pb.GatewayUp, pb.GatewayOp]) error {
	targets := newTargetCache(s.resolve)
	for {
		up, err := stream.Recv()
		if err != nil {
			return err
		}
		ev := up.GetEvent()
		if ev == nil {
			return status.Error(codes.InvalidArgument, "only events follow a Gateway stream's hello")
		}
		if err := s.node.gateways.awaitRoom(ctx, gateway); err != nil {
			return err
		}
		answer := func(resp *pb.SocketEventResponse, unavailable string) {
			s.node.gateways.putResult(gateway, ev.GetSocket(), &pb.SocketEventResult{Seq: ev.GetSeq(), Response: resp, Unavailable: unavailable})
		}
		t, err := s.socketTarget(ev, gateway, targets)
		if err != nil {
			// A bad event is answered, never retried.
			answer(&pb.SocketEventResponse{Error: &pb.ObjectError{Message: cut(status.Convert(err).Message(), maxObjectErrorBytes)}}, "")
			continue
		}
		s.node.objects.postMessage(ctx, t, ev, func(err error, redirect *pb.Redirect) {
			if redirect != nil {
				answer(nil, "redirected: "+redirect.GetReason())
				return
			}
			resp, st := s.socketOutcome(t.what+" socket message", err)
			switch code := status.Code(st); {
			case st == nil:
				answer(resp, "")
			case code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled || code == codes.Aborted:
				answer(nil, status.Convert(st).Message())
			default:
				answer(&pb.SocketEventResponse{Error: &pb.ObjectError{Message: status.Convert(st).Message()}}, "")
			}
		})
	}
}

// socketTarget checks one streamed event: a message of a socket of the
// stream's own gateway (the stream's hello was authorized), to a
// registered object.
func (s *objectService) socketTarget(ev *pb.SocketEvent, gateway string, targets *targetCache) (target, error) {
	t, err := targets.resolve(ev.GetClass(), ev.GetId(), ev.GetName())
	if err != nil {
		return target{}, err
	}
	switch g, _, err := objectclient.ParseSocket(ev.GetSocket()); {
	case err != nil:
		return target{}, status.Errorf(codes.InvalidArgument, "%s: %v", t.what, err)
	case g != gateway:
		return target{}, status.Errorf(codes.PermissionDenied, "%s: socket %s is not of gateway %s", t.what, cut(ev.GetSocket(), 64), gateway)
	case ev.GetKind() != pb.SocketEvent_MESSAGE:
		return target{}, status.Errorf(codes.InvalidArgument, "%s: a Gateway stream carries messages only, not %s", t.what, ev.GetKind())
	}
	return t, checkMessage(t, ev)
}

// checkMessage holds a message to durable.MaxSocketMessageBytes.
func checkMessage(t target, ev *pb.SocketEvent) error {
	if len(ev.GetData()) > durable.MaxSocketMessageBytes {
		return status.Errorf(codes.InvalidArgument, "%s: a message of %d bytes, at most %d", t.what, len(ev.GetData()), durable.MaxSocketMessageBytes)
	}
	return nil
}

// Socket delivers one event of a socket to its object.
func (s *objectService) Socket(ctx context.Context, ev *pb.SocketEvent) (*pb.SocketEventResponse, error) {
	ctx, t, err := s.check(ctx, ev.GetClass(), ev.GetId(), ev.GetName(), nil)
	if err != nil {
		return nil, err
	}
	gateway, _, err := objectclient.ParseSocket(ev.GetSocket())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", t.what, err)
	}
	if err := s.authorizeGateway(ctx, gateway); err != nil {
		return nil, err
	}
	var event func(context.Context, *durable.Actor) error
	switch ev.GetKind() {
	case pb.SocketEvent_MESSAGE:
		if err := checkMessage(t, ev); err != nil {
			return nil, err
		}
		event = func(ctx context.Context, a *durable.Actor) error {
			return a.WebSocketMessageAt(ctx, ev.GetSocket(), ev.GetN(), ev.GetData(), ev.GetText())
		}
	case pb.SocketEvent_CLOSE:
		event = func(ctx context.Context, a *durable.Actor) error {
			return a.WebSocketClose(ctx, ev.GetSocket(), int(ev.GetCode()), cut(ev.GetReason(), maxCloseReasonBytes), ev.GetClean())
		}
	case pb.SocketEvent_ERROR:
		event = func(ctx context.Context, a *durable.Actor) error {
			return a.WebSocketError(ctx, ev.GetSocket(), errors.New(cut(ev.GetReason(), maxCloseReasonBytes)))
		}
	case pb.SocketEvent_DRAINED:
		event = func(ctx context.Context, a *durable.Actor) error { return a.WebSocketDrained(ctx, ev.GetSocket()) }
	default:
		return nil, status.Errorf(codes.InvalidArgument, "%s: socket event of kind %d", t.what, ev.GetKind())
	}
	redirect, err := s.node.objects.run(ctx, t.id, t.newObject, func(a *durable.Actor) error { return event(ctx, a) })
	if redirect != nil {
		return &pb.SocketEventResponse{Redirect: redirect}, nil
	}
	return s.socketOutcome(t.what+" socket "+ev.GetKind().String(), err)
}

// socketOutcome is what a socket event's outcome answers: a response, or
// a status error (Unavailable: send it again).
func (s *objectService) socketOutcome(what string, err error) (*pb.SocketEventResponse, error) {
	switch {
	case err == nil:
		return &pb.SocketEventResponse{}, nil
	case isSocketGone(err):
		return &pb.SocketEventResponse{Gone: true}, nil
	case errors.Is(err, durable.ErrOutOfOrder):
		// A message before it did not reach the object: the router sends
		// them again, in order.
		return nil, status.Errorf(codes.Unavailable, "%s: %v", what, err)
	}
	if st := s.eventError(what, err); st != nil {
		return nil, st
	}
	return &pb.SocketEventResponse{Error: &pb.ObjectError{Message: cut(err.Error(), maxObjectErrorBytes)}}, nil
}
