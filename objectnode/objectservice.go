package objectnode

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/durable"
	"hellochat/limits"
	"hellochat/objectclient"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

const (
	// maxObjectErrorBytes bounds the error message of an object's method
	// that a node passes back to its caller.
	maxObjectErrorBytes = 1024
	// maxCloseReasonBytes bounds a WebSocket close reason (a close frame
	// has room for 123 bytes).
	maxCloseReasonBytes = 123
)

// objectService implements the Objects gRPC service. See
// proto/roompb/objects.proto for its outcomes and codes.
type objectService struct {
	pb.UnimplementedObjectsServer
	node *Node
}

// target is an object a call names, checked.
type target struct {
	id        durable.ID
	newObject func() durable.Object
	what      string // class/id, for errors
}

// check authorizes the caller and checks the class, the id and the chain
// of calling objects, which it puts in the returned context.
func (s *objectService) check(ctx context.Context, class, rawID, name string, chain []string) (context.Context, target, error) {
	n := s.node
	// Routers call for their routes, nodes for their objects' calls.
	if _, err := n.cfg.Security.Authorize(ctx, security.RoleRouter, security.RoleNode); err != nil {
		return nil, target{}, err
	}
	t, err := s.resolve(class, rawID, name)
	if err != nil {
		return nil, target{}, err
	}
	ids, err := objectclient.DecodeChain(n.objects.apps, chain)
	if err != nil {
		return nil, target{}, status.Errorf(codes.InvalidArgument, "%s: %v", t.what, err)
	}
	return durable.WithCallChain(ctx, ids), t, nil
}

// resolve checks a class, an id and the name it came with (if any) and
// returns the object they name.
func (s *objectService) resolve(class, rawID, name string) (target, error) {
	ns, newObject, ok := s.node.objects.apps.Class(class)
	if !ok {
		return target{}, status.Errorf(codes.NotFound, "no object class %q is registered on this node", cut(class, durable.MaxNamespaceLen))
	}
	id, err := ns.IDFromString(rawID)
	if err != nil {
		return target{}, status.Errorf(codes.InvalidArgument, "object id for class %s: %v", ns.Name(), cutErr(err))
	}
	if name != "" {
		if id, err = ns.WithName(id, name); err != nil {
			return target{}, status.Errorf(codes.InvalidArgument, "object name for class %s: %v", ns.Name(), cutErr(err))
		}
	}
	return target{id, newObject, ns.Name() + "/" + id.String()}, nil
}

// Call runs one method of one object.
func (s *objectService) Call(ctx context.Context, req *pb.CallRequest) (*pb.CallResponse, error) {
	ctx, t, err := s.check(ctx, req.GetClass(), req.GetId(), req.GetName(), req.GetChain())
	if err != nil {
		return nil, err
	}
	if err := limits.ObjectMethod(req.GetMethod()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", t.what, cutErr(err))
	}
	if err := limits.ObjectArg(req.GetArg()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s.%s: %v", t.what, req.GetMethod(), err)
	}
	what := t.what + "." + req.GetMethod()
	out, redirect, err := s.node.objects.call(ctx, t.id, t.newObject, req.GetMethod(), req.GetArg())
	switch {
	case redirect != nil:
		return &pb.CallResponse{Outcome: &pb.CallResponse_Redirect{Redirect: redirect}}, nil
	case err == nil && len(out) > limits.MaxObjectResultBytes:
		return nil, status.Errorf(codes.Internal, "%s answered %d bytes, more than %d (its writes were committed)",
			what, len(out), limits.MaxObjectResultBytes)
	case err == nil:
		return &pb.CallResponse{Outcome: &pb.CallResponse_Result{Result: out}}, nil
	}
	if st := s.eventError(what, err); st != nil {
		return nil, st
	}
	return &pb.CallResponse{Outcome: &pb.CallResponse_Error{Error: &pb.ObjectError{
		Message: cut(err.Error(), maxObjectErrorBytes)}}}, nil
}

// Fetch hands one HTTP request to one object's Fetch handler.
func (s *objectService) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	ctx, t, err := s.check(ctx, req.GetClass(), req.GetId(), req.GetName(), req.GetChain())
	if err != nil {
		return nil, err
	}
	if socket := req.GetSocket(); socket != "" {
		// A WebSocket upgrade the calling router holds open.
		gateway, _, err := objectclient.ParseSocket(socket)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%s: %v", t.what, err)
		}
		if err := s.authorizeGateway(ctx, gateway); err != nil {
			return nil, err
		}
		ctx = durable.WithUpgrade(ctx, socket)
	}
	r, err := objectclient.DecodeRequest(ctx, req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: fetch: %v", t.what, cutErr(err))
	}
	if req.GetSocket() != "" {
		// Hop-by-hop, so not sent; the object sees the upgrade it is.
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Connection", "Upgrade")
	}
	what := t.what + " " + r.Method + " " + cut(r.URL.Path, 64)
	resp, redirect, err := s.node.objects.fetch(ctx, t.id, t.newObject, r)
	if redirect != nil {
		return &pb.FetchResponse{Outcome: &pb.FetchResponse_Redirect{Redirect: redirect}}, nil
	}
	if err != nil {
		if st := s.eventError(what, err); st != nil {
			return nil, st
		}
		return nil, status.Errorf(codes.Internal, "%s: %s", what, cut(err.Error(), maxObjectErrorBytes))
	}
	out, err := objectclient.EncodeResponse(resp)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%s: %v (its writes were committed)", what, err)
	}
	return &pb.FetchResponse{Outcome: &pb.FetchResponse_Response{Response: out}}, nil
}

// eventError is the gRPC status for an event that failed other than by
// its own handler's error (nil for such an error).
func (s *objectService) eventError(what string, err error) error {
	var panicked *durable.PanicError
	switch {
	case errors.As(err, &panicked):
		s.node.log.Error("object handler panicked", "event", what, "panic", panicked.Value, "stack", string(panicked.Stack))
		return status.Errorf(codes.Internal, "%s panicked", what)
	case errors.Is(err, durable.ErrCallCycle), errors.Is(err, durable.ErrCallDepth):
		// Refused before it ran: the caller's chain forbids it.
		return status.Error(codes.FailedPrecondition, cut(err.Error(), maxObjectErrorBytes))
	case errors.Is(err, durable.ErrNoHandler):
		return status.Errorf(codes.Unimplemented, "%s: the class takes no such event", what)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// The event may still run and commit: only a retry with a request
		// id the object dedupes is safe.
		return status.FromContextError(err).Err()
	case errors.Is(err, durable.ErrClosed), errors.Is(err, durable.ErrNotCommitted),
		errors.Is(err, durable.ErrCommitAbandoned), errors.Is(err, errObjectUnavailable):
		// ErrNotCommitted and ErrCommitAbandoned leave the outcome unknown
		// too: the batch may yet commit under the shard's next leader.
		return status.Errorf(codes.Unavailable, "%s: %v", what, err)
	}
	return nil
}

// cut shortens s to at most n bytes (an input echoed in an error).
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func cutErr(err error) string { return cut(err.Error(), 256) }
