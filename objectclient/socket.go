package objectclient

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/apps"
	"hellochat/durable"
	pb "hellochat/proto/roompb"
)

// ErrSocketGone fails a socket event the object could not take: it holds
// no such socket (it closed it, or heard that the socket's router was
// gone). The router closes the browser's end.
var ErrSocketGone = errors.New("objectclient: the object holds no such socket")

// SocketEvent delivers ev (a message, close or error of one socket) to
// the object id's handler on the node that leads its shard, with Call's
// retries: an event whose outcome was unknown may be delivered twice. A
// handler's error is an *apps.Error (Refused); the socket stays open.
func (c *Client) SocketEvent(ctx context.Context, id durable.ID, ev *pb.SocketEvent) error {
	ev.Class, ev.Id, ev.Name = id.Namespace(), id.String(), id.TravellingName()
	return c.roundTrip(ctx, id, func(ctx context.Context, conn *grpc.ClientConn) (*pb.Redirect, error) {
		resp, err := pb.NewObjectsClient(conn).Socket(ctx, ev)
		switch {
		case err != nil:
			return nil, err
		case resp.GetRedirect() != nil:
			return resp.GetRedirect(), nil
		case resp.GetGone():
			return nil, &apps.Error{Code: apps.Refused, Message: ErrSocketGone.Error(), Err: ErrSocketGone}
		case resp.GetError() != nil:
			return nil, &apps.Error{Code: apps.Refused, Message: resp.GetError().GetMessage()}
		}
		return nil, nil
	})
}

// Gateway opens the gateway stream of gateway to the node at addr, and
// says hello on it: the caller sends its sockets' events on it, and the
// node answers them and sends what its objects send to the gateway's
// sockets, until ctx ends or the stream breaks. The caller reads shared
// frames (GatewayBatch.frames, SocketSend.frame and also): the hello says
// it does.
func (c *Client) Gateway(ctx context.Context, addr, gateway string) (grpc.BidiStreamingClient[pb.GatewayUp, pb.GatewayOp], error) {
	conn, err := c.conn(addr)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	st, err := pb.NewObjectsClient(conn).Gateway(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&pb.GatewayUp{Up: &pb.GatewayUp_Hello{Hello: &pb.GatewayHello{Gateway: gateway, SharesFrames: true}}}); err != nil {
		return nil, err
	}
	return st, nil
}
