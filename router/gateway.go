package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"hellochat/apps"
	"hellochat/durable"
	"hellochat/objectclient"
)

// The router is the gateway of the WebSockets that apps' objects accept
// (durable.State.AcceptWebSocket): the browser's connection ends here and
// stays here while the object is evicted or moves to another node. The
// router names each socket (objectclient.SocketID), hands the upgrade to
// the object's Fetch, sends each of the browser's messages to the object
// as an event (Objects.Socket), and keeps a Gateway stream open to every
// object node, on which the nodes send what objects send to its sockets.

const (
	// MaxGatewayMessageBytes bounds a message a browser sends on an
	// object's socket (Cloudflare's 1 MiB).
	MaxGatewayMessageBytes = durable.MaxSocketMessageBytes
	// MaxGatewaySocketQueueBytes bounds what waits to be written to one
	// browser; a browser that lets more pile up is closed (1013) rather
	// than sent to with a gap.
	MaxGatewaySocketQueueBytes = 4 << 20
	// gatewayRetryMin and gatewayRetryMax bound the wait before a Gateway
	// stream to a node is opened again.
	gatewayRetryMin = 50 * time.Millisecond
	gatewayRetryMax = 2 * time.Second
)

// gateway is the router's side of objects' sockets. It is the apps.Stub
// the routes get, so that apps.Forward can hand it an upgrade.
type gateway struct {
	*objectclient.Client
	rt *Router
	id string

	// ctx ends the streams and the sockets' reads and writes; reportCtx
	// the sockets' last word to their objects. Both end at close.
	ctx, reportCtx       context.Context
	cancel, cancelReport context.CancelFunc

	mu      sync.Mutex
	next    uint64
	sockets map[string]*gatewaySocket
	closed  bool

	streams sync.WaitGroup
	wg      sync.WaitGroup // sockets, until their objects were told they ended
}

var _ apps.Upgrader = (*gateway)(nil)

func newGateway(rt *Router, client *objectclient.Client, instance string) (*gateway, error) {
	g := &gateway{Client: client, rt: rt, id: objectclient.GatewayID(rt.cfg.ID, instance),
		sockets: map[string]*gatewaySocket{}}
	if _, err := objectclient.ParseGateway(g.id); err != nil {
		return nil, fmt.Errorf("router: id %q cannot name sockets: %w", rt.cfg.ID, err)
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.reportCtx, g.cancelReport = context.WithCancel(context.Background())
	g.streams.Add(1)
	go g.run(g.ctx)
	return g, nil
}

// run keeps a Gateway stream open to every object node gossip knows,
// until the router stops.
func (g *gateway) run(ctx context.Context) {
	defer g.streams.Done()
	streams := map[string]context.CancelFunc{} // by node gRPC address
	defer func() {
		for _, cancel := range streams {
			cancel()
		}
	}()
	for {
		changed := g.rt.members.Changed()
		want := map[string]bool{}
		for _, m := range g.rt.members.Placement().Nodes() {
			if m.GRPC != "" {
				want[m.GRPC] = true
			}
		}
		for addr, cancel := range streams {
			if !want[addr] {
				cancel()
				delete(streams, addr)
			}
		}
		for addr := range want {
			if streams[addr] == nil {
				sctx, cancel := context.WithCancel(ctx)
				streams[addr] = cancel
				g.streams.Add(1)
				go g.stream(sctx, addr)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// stream receives what the node at addr sends to the gateway's sockets,
// opening the stream again after it breaks, until ctx ends.
func (g *gateway) stream(ctx context.Context, addr string) {
	defer g.streams.Done()
	backoff := gatewayRetryMin
	for ctx.Err() == nil {
		start := time.Now()
		err := g.receive(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > gatewayRetryMax {
			backoff = gatewayRetryMin
		}
		g.rt.log.Debug("gateway stream ended", "node", addr, "err", err)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, gatewayRetryMax)
	}
}

func (g *gateway) receive(ctx context.Context, addr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := g.Client.Gateway(ctx, addr, g.id)
	if err != nil {
		return err
	}
	for {
		op, err := st.Recv()
		if err != nil {
			return err
		}
		g.mu.Lock()
		s := g.sockets[op.GetSocket()]
		g.mu.Unlock()
		if s == nil {
			continue // ended here; the object has been told
		}
		s.apply(op)
	}
}

// Upgrade hands the WebSocket upgrade r to the object id's Fetch. If the
// object accepts it (101), the router completes the handshake and keeps
// the browser's connection; otherwise the object's answer is the
// router's.
func (g *gateway) Upgrade(w http.ResponseWriter, r *http.Request, id durable.ID) {
	rt := g.rt
	addr := clientAddr(r)
	if _, ok := rt.admit(w, addr); !ok {
		return
	}
	s, ok := g.open(id, addr)
	if !ok {
		rt.release(addr)
		http.Error(w, "router shutting down", http.StatusServiceUnavailable)
		return
	}
	resp, err := g.FetchSocket(r.Context(), id, r, s.id)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		// The object may have accepted the socket and answered otherwise,
		// or the outcome is unknown: it is told the socket closed.
		s.end(closeAbnormal, "the upgrade was not completed", false)
		if err != nil {
			apps.WriteError(w, apps.HTTPStatus(err), "upgrade: "+err.Error())
			return
		}
		apps.WriteResponse(w, resp)
		return
	}
	s.accept(w, r, resp)
}

// open registers a socket before its upgrade reaches the object, so that
// what the object sends at once waits for the handshake.
func (g *gateway) open(id durable.ID, addr string) (*gatewaySocket, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, false
	}
	g.next++
	s := newGatewaySocket(g, objectclient.SocketID(g.id, g.next), id, addr)
	g.sockets[s.id] = s
	g.wg.Add(1)
	return s, true
}

// forget takes an ended socket out of the table.
func (g *gateway) forget(s *gatewaySocket) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.sockets, s.id)
}

// close ends every socket with 1001, waits within ctx for their objects
// to be told, then ends the streams.
func (g *gateway) close(ctx context.Context) {
	g.mu.Lock()
	g.closed = true
	all := make([]*gatewaySocket, 0, len(g.sockets))
	for _, s := range g.sockets {
		all = append(all, s)
	}
	g.mu.Unlock()
	for _, s := range all {
		s.shut(closeGoingAway, "router shutting down")
	}
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	g.cancel()
	g.cancelReport()
	<-done
	g.streams.Wait()
}

// count is how many sockets the gateway holds (upgrading or open).
func (g *gateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sockets)
}

// eventError is why a socket event's error ends the socket (nil: it does
// not; the handler refused one message).
func eventError(err error) (code int, reason string, ends bool) {
	var appErr *apps.Error
	switch {
	case errors.Is(err, objectclient.ErrSocketGone):
		return closeInternal, "the object no longer holds this socket", true
	case errors.As(err, &appErr) && appErr.Code == apps.Refused:
		return 0, "", false
	case errors.Is(err, context.Canceled):
		return closeGoingAway, "router shutting down", true
	}
	return closeInternal, "the object is unavailable", true
}
