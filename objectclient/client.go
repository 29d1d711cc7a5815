// Package objectclient calls durable objects wherever they run in the
// cluster: it finds the node that leads an object's shard, follows its
// redirects, and retries on other replicas while the shard elects a new
// leader. Routers call objects through it for their apps' routes, and
// object nodes for calls between objects (durable.State.Call).
package objectclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/apps"
	"hellochat/cluster"
	"hellochat/durable"
	"hellochat/partition"
	pb "hellochat/proto/roompb"
)

const (
	// CallTimeout bounds one call: finding the node that leads the
	// object's shard, following its redirects and retrying while the shard
	// elects a new leader (one to two seconds after its leader dies, plus
	// gossip's word of it). A call without an answer by then fails as
	// apps.Unavailable (HTTP 503).
	CallTimeout = 10 * time.Second
	// attemptTimeout bounds one attempt on one node, so a node that
	// stopped answering (paused, cut off) does not use up the whole call.
	attemptTimeout = 3 * time.Second
	// maxQuickRedirects is how many redirects in a row are followed at
	// once; after that the client backs off between them, so two nodes
	// that disagree about the leader do not bounce a call in a busy loop.
	maxQuickRedirects = 2
	// Backoff bounds between attempts that found no leader.
	backoffMin = 50 * time.Millisecond
	backoffMax = time.Second
)

// Client calls objects. It is a durable.Stub (and so an apps.Stub).
type Client struct {
	placement func() *cluster.Placement
	conn      func(addr string) (*grpc.ClientConn, error)
}

// New returns a Client that finds nodes in placement's newest answer and
// reaches them through conn (a pool of mutual-TLS connections).
func New(placement func() *cluster.Placement, conn func(addr string) (*grpc.ClientConn, error)) *Client {
	return &Client{placement: placement, conn: conn}
}

// Call calls method on the object id on the node that leads its shard:
// the node gossip names, or the one a redirect names, retrying on the
// others while the shard has no leader that answers. Calls are retried
// after failures whose outcome is unknown, so a method that changes state
// must dedupe retries (a request id in its argument, as the counter's
// increments carry). The chain of calling objects in ctx
// (durable.CallChain) goes with the call. Errors are *apps.Error.
func (c *Client) Call(ctx context.Context, id durable.ID, method string, arg []byte) ([]byte, error) {
	req := &pb.CallRequest{Class: id.Namespace(), Id: id.String(), Name: id.TravellingName(), Method: method, Arg: arg,
		Chain: EncodeChain(durable.CallChain(ctx))}
	var out []byte
	err := c.roundTrip(ctx, id, func(ctx context.Context, conn *grpc.ClientConn) (*pb.Redirect, error) {
		resp, err := pb.NewObjectsClient(conn).Call(ctx, req)
		if err != nil {
			return nil, err
		}
		switch o := resp.GetOutcome().(type) {
		case *pb.CallResponse_Result:
			out = o.Result
			return nil, nil
		case *pb.CallResponse_Error:
			msg := o.Error.GetMessage()
			return nil, &apps.Error{Code: apps.Refused, Message: msg, Err: chainRefusal(msg)}
		case *pb.CallResponse_Redirect:
			return o.Redirect, nil
		}
		return nil, status.Error(codes.Unavailable, "no outcome")
	})
	return out, err
}

// roundTrip runs try on the node that leads id's shard, following the
// redirects it returns and retrying on the errors callError says to
// retry, until try succeeds (nil, nil), fails for good, or CallTimeout.
func (c *Client) roundTrip(ctx context.Context, id durable.ID, try func(context.Context, *grpc.ClientConn) (*pb.Redirect, error)) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
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
		p := c.placement()
		target, ok := p.Target(shard, hint.GetOwnerId(), hint.GetOwnerAddr(), &attempt)
		if ok && hint == nil && target.ID == avoid {
			if other, found := p.OtherReplica(shard, avoid, &attempt); found {
				target = other
			}
		}
		hint = nil
		if !ok {
			why = "no object node known"
		} else {
			redirect, err := c.tryOnce(ctx, target, try)
			var appErr *apps.Error
			switch {
			case err == nil && redirect == nil:
				return nil
			case err == nil:
				why = fmt.Sprintf("%s redirected: %s", target.ID, redirect.GetReason())
				if redirect.GetOwnerAddr() != "" && redirect.GetOwnerAddr() != target.GRPC {
					hint = redirect
				}
			case errors.As(err, &appErr):
				return err
			default:
				if e := callError(err); e != nil {
					return e
				}
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
			return &apps.Error{Code: apps.Unavailable,
				Message: fmt.Sprintf("no answer within %v (last: %s)", CallTimeout, why)}
		}
	}
}

// tryOnce makes one attempt on one node.
func (c *Client) tryOnce(ctx context.Context, target cluster.Meta, try func(context.Context, *grpc.ClientConn) (*pb.Redirect, error)) (*pb.Redirect, error) {
	conn, err := c.conn(target.GRPC)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return try(ctx, conn)
}

// callError is the error a node's refusal gives the caller, or nil when
// the call should be retried (on this node or another).
func callError(err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return nil
	case codes.InvalidArgument, codes.NotFound:
		return &apps.Error{Code: apps.BadRequest, Message: st.Message()}
	case codes.FailedPrecondition:
		// A call the chain of calling objects forbids (or a method that
		// failed for such a call of its own).
		return &apps.Error{Code: apps.Refused, Message: st.Message(), Err: chainRefusal(st.Message())}
	}
	return &apps.Error{Code: apps.Internal, Message: st.Code().String() + ": " + st.Message()}
}

// chainRefusal is the durable error a refusal's message names, so that
// errors.Is finds a call cycle or a too deep chain across nodes too.
func chainRefusal(msg string) error {
	for _, sentinel := range []error{durable.ErrCallCycle, durable.ErrCallDepth} {
		if strings.Contains(msg, sentinel.Error()) {
			return sentinel
		}
	}
	return nil
}
