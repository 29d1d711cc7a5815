package objectnode

import (
	"context"
	"errors"
	"net/http"
	"time"

	"hellochat/durable"
	pb "hellochat/proto/roompb"
)

// How events reach objects' actors on this node: calls, fetches and
// socket events from routers and other objects, run on the actor that
// the registry (objects.go) holds, or posted to it in a Gateway stream's
// order; and the close a node reports for a socket whose router is gone.

// call runs method on the object id of a registered class, on this node if
// it serves the object's shard. A redirect means nothing ran.
func (o *objectHost) call(ctx context.Context, id durable.ID, newObject func() durable.Object, method string, arg []byte) ([]byte, *pb.Redirect, error) {
	var out []byte
	redirect, err := o.run(ctx, id, newObject, func(a *durable.Actor) (err error) {
		out, err = a.Call(ctx, method, arg)
		return err
	})
	return out, redirect, err
}

// fetch hands r to the object's Fetch handler, as call calls a method.
func (o *objectHost) fetch(ctx context.Context, id durable.ID, newObject func() durable.Object, r *http.Request) (*http.Response, *pb.Redirect, error) {
	var resp *http.Response
	redirect, err := o.run(ctx, id, newObject, func(a *durable.Actor) (err error) {
		resp, err = a.Fetch(ctx, r)
		return err
	})
	return resp, redirect, err
}

// run runs event on the object's actor if this node serves the object's
// shard, starting the actor if need be. Leadership is confirmed when the
// actor starts, then by each commit, and before the outputs of an event
// that committed nothing (durable.Config.Confirm): a leader deposed
// without knowing it yet shows nothing that another leader has moved
// past, and a writing event costs no heartbeat round of its own.
func (o *objectHost) run(ctx context.Context, id durable.ID, newObject func() durable.Object, event func(*durable.Actor) error) (*pb.Redirect, error) {
	if redirect := o.n.redirectFor(id.StorageObject()); redirect != nil {
		return redirect, nil
	}
	for attempt := 0; ; attempt++ {
		e, redirect, err := o.acquire(ctx, id, newObject)
		if redirect != nil || err != nil {
			return redirect, err
		}
		err = event(e.actor)
		o.release(e)
		if errors.Is(err, durable.ErrClosed) {
			// The event did not run: the actor was closed (idle, or its
			// shard moved) or stopped on its own. Once more, on a fresh
			// actor here or with a redirect.
			o.retireStopped(e)
			if attempt == 0 {
				continue
			}
		}
		return nil, err
	}
}

// socketGone tells the object that socket's router is gone (the gateway
// hub's report), in the background: the event needs the object's actor,
// which may be the one whose send found the router gone.
func (o *objectHost) socketGone(from objectRef, socket string, grace time.Duration) {
	o.mu.Lock()
	closed := o.closed
	if !closed {
		o.wg.Add(1)
	}
	o.mu.Unlock()
	if closed {
		return
	}
	go func() {
		defer o.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		// Another node leads the object by now if this one redirects:
		// that one reports it at its next send.
		_, err := o.run(ctx, from.id, from.newObject, func(a *durable.Actor) error {
			return a.WebSocketClose(ctx, socket, closeAbnormal, "the router holding the socket is gone", false)
		})
		if err != nil && !isSocketGone(err) {
			o.n.log.Info("could not tell an object its socket's router is gone", "socket", socket, "err", err)
		}
	}()
}

// postMessage posts a socket's message to its object's actor without
// waiting for it, so that the messages a Gateway stream carries run in the
// order it carries them; done gets the outcome (or a redirect).
func (o *objectHost) postMessage(ctx context.Context, t target, ev *pb.SocketEvent, done func(error, *pb.Redirect)) {
	if redirect := o.n.redirectFor(t.id.StorageObject()); redirect != nil {
		done(nil, redirect)
		return
	}
	e, redirect, err := o.acquire(ctx, t.id, t.newObject)
	if redirect != nil || err != nil {
		done(err, redirect)
		return
	}
	err = e.actor.PostWebSocketMessage(ctx, ev.GetSocket(), ev.GetN(), ev.GetData(), ev.GetText(), func(err error) {
		o.release(e)
		done(err, nil)
	})
	if err != nil {
		o.release(e)
		if errors.Is(err, durable.ErrClosed) {
			o.retireStopped(e)
		}
		done(err, nil)
	}
}
