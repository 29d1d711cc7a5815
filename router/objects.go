package router

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/apps"
	"hellochat/cluster"
	"hellochat/durable"
	"hellochat/partition"
	pb "hellochat/proto/roompb"
)

const (
	// ObjectCallTimeout bounds a durable object call through the router:
	// finding the node that leads the object's shard, following its
	// redirects and retrying while the shard elects a new leader (one to
	// two seconds after its leader dies, plus gossip's word of it). A call
	// without an answer by then fails as Unavailable (HTTP 503).
	ObjectCallTimeout = 10 * time.Second
	// objectAttemptTimeout bounds one attempt on one node, so a node that
	// stopped answering (paused, cut off) does not use up the whole call.
	objectAttemptTimeout = 3 * time.Second
	// maxQuickRedirects is how many redirects in a row are followed at
	// once; after that the router backs off between them, so two nodes
	// that disagree about the leader do not bounce a call in a busy loop.
	maxQuickRedirects = 2
)

// objectStub is the apps.Stub the router gives apps' routes.
type objectStub struct{ rt *Router }

func (s objectStub) Call(ctx context.Context, id durable.ID, method string, arg []byte) ([]byte, error) {
	return s.rt.callObject(ctx, id, method, arg)
}

// registerRoutes serves the apps' routes on mux; a pattern that conflicts
// with another is an error, not a panic.
func (rt *Router) registerRoutes(mux *http.ServeMux, reg *apps.Registry) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("router: app routes: %v", r)
		}
	}()
	for _, route := range reg.Routes() {
		mux.Handle(route.Pattern, route.Handler(objectStub{rt}))
	}
	return nil
}

// callObject calls method on the object id on the node that leads its
// shard: the node gossip names, or the one a redirect names, retrying on
// the others while the shard has no leader that answers. Calls are
// retried after failures whose outcome is unknown, so a method that
// changes state must dedupe retries (a request id in its argument, as the
// counter's increments carry).
func (rt *Router) callObject(ctx context.Context, id durable.ID, method string, arg []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ObjectCallTimeout)
	defer cancel()
	req := &pb.CallRequest{Class: id.Namespace(), Id: id.String(), Method: method, Arg: arg}
	shard := partition.Of(id.StorageObject())
	var (
		hint      *pb.Redirect
		avoid     string // the node that just failed, while gossip still names it
		attempt   int
		redirects int // followed in a row
		backoff   = backoffMin
		why       = "no node tried"
	)
	for {
		p := rt.members.Placement()
		target, ok := pickTarget(p, shard, hint, &attempt)
		if ok && hint == nil && target.ID == avoid {
			if other, found := otherReplica(p, shard, avoid, &attempt); found {
				target = other
			}
		}
		hint = nil
		if !ok {
			why = "no object node known"
		} else {
			resp, err := rt.callOnce(ctx, target, req)
			if err == nil {
				switch o := resp.GetOutcome().(type) {
				case *pb.CallResponse_Result:
					return o.Result, nil
				case *pb.CallResponse_Error:
					return nil, &apps.Error{Code: apps.Refused, Message: o.Error.GetMessage()}
				case *pb.CallResponse_Redirect:
					r := o.Redirect
					why = fmt.Sprintf("%s redirected: %s", target.ID, r.GetReason())
					if r.GetOwnerAddr() != "" && r.GetOwnerAddr() != target.GRPC {
						hint = r
					}
				default:
					why = target.ID + " gave no outcome"
				}
			} else if e := callError(err); e != nil {
				return nil, e
			} else {
				why = fmt.Sprintf("%s: %s", target.ID, status.Convert(err).Message())
				avoid = target.ID
			}
		}
		var wait time.Duration
		if hint != nil && redirects < maxQuickRedirects {
			redirects++
		} else {
			redirects = 0
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(backoff*2, backoffMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, &apps.Error{Code: apps.Unavailable,
				Message: fmt.Sprintf("no answer within %v (last: %s)", ObjectCallTimeout, why)}
		}
	}
}

// callOnce makes one attempt on one node.
func (rt *Router) callOnce(ctx context.Context, target cluster.Meta, req *pb.CallRequest) (*pb.CallResponse, error) {
	conn, err := rt.conn(target.GRPC)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, objectAttemptTimeout)
	defer cancel()
	return pb.NewObjectsClient(conn).Call(ctx, req)
}

// callError is the error a node's refusal gives the app, or nil when the
// call should be retried (on this node or another).
func callError(err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return nil
	case codes.InvalidArgument, codes.NotFound:
		return &apps.Error{Code: apps.BadRequest, Message: st.Message()}
	}
	return &apps.Error{Code: apps.Internal, Message: st.Code().String() + ": " + st.Message()}
}

// otherReplica is a live replica of shard other than avoid, rotating with
// *attempt.
func otherReplica(p *cluster.Placement, shard int, avoid string, attempt *int) (cluster.Meta, bool) {
	replicas, err := p.Replicas(shard, 3)
	if err != nil {
		return cluster.Meta{}, false
	}
	var live []cluster.Meta
	for _, r := range replicas {
		if r.ID != avoid && p.Alive(r.ID) {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return cluster.Meta{}, false
	}
	*attempt++
	return live[*attempt%len(live)], true
}
