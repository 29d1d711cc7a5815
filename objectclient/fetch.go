package objectclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/apps"
	"hellochat/durable"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
)

// Fetch hands r to the Fetch handler of the object id, on the node that
// leads its shard, as Call calls a method (same retries, same caveat:
// a request that changes state must dedupe a request id). r's body is
// read whole first; a request over the limits.MaxFetch limits fails as
// apps.BadRequest without being sent. The response's body is in memory.
func (c *Client) Fetch(ctx context.Context, id durable.ID, r *http.Request) (*http.Response, error) {
	return c.fetch(ctx, id, r, "")
}

// FetchSocket is Fetch of r, a WebSocket upgrade that the caller (a
// router) holds as socket: the object may accept it, and answers 101 if
// it does.
func (c *Client) FetchSocket(ctx context.Context, id durable.ID, r *http.Request, socket string) (*http.Response, error) {
	return c.fetch(ctx, id, r, socket)
}

func (c *Client) fetch(ctx context.Context, id durable.ID, r *http.Request, socket string) (*http.Response, error) {
	req, err := EncodeRequest(r)
	if err != nil {
		return nil, &apps.Error{Code: apps.BadRequest, Message: err.Error()}
	}
	req.Class, req.Id, req.Name, req.Chain, req.Socket = id.Namespace(), id.String(), id.TravellingName(), EncodeChain(durable.CallChain(ctx)), socket
	var out *pb.HTTPResponse
	err = c.roundTrip(ctx, id, func(ctx context.Context, conn *grpc.ClientConn) (*pb.Redirect, error) {
		resp, err := pb.NewObjectsClient(conn).Fetch(ctx, req)
		if err != nil {
			return nil, err
		}
		switch o := resp.GetOutcome().(type) {
		case *pb.FetchResponse_Response:
			out = o.Response
			return nil, nil
		case *pb.FetchResponse_Redirect:
			return o.Redirect, nil
		}
		return nil, status.Error(codes.Unavailable, "no outcome")
	})
	if err != nil {
		return nil, err
	}
	return DecodeResponse(out, r), nil
}

// EncodeRequest reads r (body included) into a FetchRequest, holding it
// to the limits.MaxFetch limits. Class, id and chain are left empty.
func EncodeRequest(r *http.Request) (*pb.FetchRequest, error) {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, limits.MaxFetchBodyBytes+1))
		if err != nil {
			return nil, fmt.Errorf("read the request body: %w", err)
		}
	}
	u := *r.URL
	if u.Host == "" {
		u.Host = r.Host
	}
	if u.Scheme == "" {
		u.Scheme = "http"
		if r.TLS != nil {
			u.Scheme = "https"
		}
	}
	req := &pb.FetchRequest{Method: r.Method, Url: u.String(), Body: body}
	var pairs [][2]string
	for name, values := range r.Header {
		if hopByHop[http.CanonicalHeaderKey(name)] {
			continue
		}
		for _, v := range values {
			req.Headers = append(req.Headers, &pb.Header{Name: name, Value: v})
			pairs = append(pairs, [2]string{name, v})
		}
	}
	if err := limits.FetchRequest(req.Method, req.Url, pairs, len(body)); err != nil {
		return nil, err
	}
	return req, nil
}

// DecodeRequest makes the http.Request a FetchRequest describes, after
// checking it against the limits.MaxFetch limits.
func DecodeRequest(ctx context.Context, req *pb.FetchRequest) (*http.Request, error) {
	pairs := make([][2]string, len(req.GetHeaders()))
	for i, h := range req.GetHeaders() {
		pairs[i] = [2]string{h.GetName(), h.GetValue()}
	}
	if err := limits.FetchRequest(req.GetMethod(), req.GetUrl(), pairs, len(req.GetBody())); err != nil {
		return nil, err
	}
	r, err := http.NewRequestWithContext(ctx, req.GetMethod(), req.GetUrl(), bytes.NewReader(req.GetBody()))
	if err != nil {
		return nil, err
	}
	for _, h := range pairs {
		r.Header.Add(h[0], h[1])
	}
	return r, nil
}

// EncodeResponse reads resp (body included) into an HTTPResponse, whose
// body may be at most limits.MaxObjectResultBytes.
func EncodeResponse(resp *http.Response) (*pb.HTTPResponse, error) {
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limits.MaxObjectResultBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > limits.MaxObjectResultBytes {
		return nil, fmt.Errorf("response body over %d bytes", limits.MaxObjectResultBytes)
	}
	out := &pb.HTTPResponse{Status: int32(resp.StatusCode), Body: body}
	for name, values := range resp.Header {
		if hopByHop[http.CanonicalHeaderKey(name)] || http.CanonicalHeaderKey(name) == "Content-Length" {
			continue
		}
		for _, v := range values {
			out.Headers = append(out.Headers, &pb.Header{Name: name, Value: v})
		}
	}
	return out, nil
}

// DecodeResponse makes the http.Response to r an HTTPResponse describes.
func DecodeResponse(in *pb.HTTPResponse, r *http.Request) *http.Response {
	h := http.Header{}
	for _, kv := range in.GetHeaders() {
		h.Add(kv.GetName(), kv.GetValue())
	}
	h.Set("Content-Length", strconv.Itoa(len(in.GetBody())))
	code := int(in.GetStatus())
	return &http.Response{
		Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(in.GetBody())), ContentLength: int64(len(in.GetBody())),
		Request: r,
	}
}

// hopByHop are the headers of one connection, which do not travel on.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}
