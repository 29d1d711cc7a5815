package durable

import (
	"context"
	"errors"
	"fmt"
)

// The events a socket's gateway brings an object: a message (numbered,
// in order), a close, an error.

// socketEvent is the handler a socket event of id goes to, and the
// socket's record as the event sees it.
func (a *Actor) socketEvent(s *State, id string) (WebSocketHandler, *socketRecord, error) {
	h, ok := a.obj.(WebSocketHandler)
	if !ok {
		return nil, nil, fmt.Errorf("websocket event: %w", ErrNoHandler)
	}
	rec, err := s.storage.socketRecord(id)
	if err != nil {
		return nil, nil, err
	}
	return h, rec, nil
}

// WebSocketMessage delivers a message the browser of socket sent to the
// object's WebSocketMessage handler, as one event (released like Call's
// result). ErrUnknownSocket: the object does not hold that socket.
func (a *Actor) WebSocketMessage(ctx context.Context, socket string, msg []byte, text bool) error {
	return a.do(ctx, EventSocketMessage, a.messageEvent(socket, 0, msg, text))
}

// WebSocketMessageAt delivers the socket's n-th message (from 1), in
// order, whatever the gateway resends: the number of the last message
// taken is committed with the socket's record, with what its event wrote,
// and a message whose predecessor was not taken fails with ErrOutOfOrder,
// and nothing runs. A message taken already runs again when it is resent
// (a gateway resends what it heard no outcome of: the event may have
// committed while what it sent was lost with its node), so a handler that
// must not repeat its effects dedupes on an id of its own, as the counter
// does. A handler's error drops what the handler wrote, yet the message
// counts as taken, so the next one is not held up by it. n = 0: no order,
// as WebSocketMessage.
func (a *Actor) WebSocketMessageAt(ctx context.Context, socket string, n uint64, msg []byte, text bool) error {
	return a.do(ctx, EventSocketMessage, a.messageEvent(socket, n, msg, text))
}

// PostWebSocketMessage queues WebSocketMessageAt without waiting: its
// outcome goes to done (once, on the actor's goroutine; done must not
// block). Messages posted one after another run in that order. An error
// means it was not queued.
func (a *Actor) PostWebSocketMessage(ctx context.Context, socket string, n uint64, msg []byte, text bool, done func(error)) error {
	return a.post(ctx, EventSocketMessage, a.messageEvent(socket, n, msg, text), done)
}

func (a *Actor) messageEvent(socket string, n uint64, msg []byte, text bool) func(context.Context, *State) error {
	return func(ctx context.Context, s *State) error {
		h, rec, err := a.socketEvent(s, socket)
		if err != nil {
			return err
		}
		ws := &socketHandle{s: s, id: socket, n: n}
		if n == 0 {
			return h.WebSocketMessage(ctx, s, ws, msg, text)
		}
		if n > rec.N+1 {
			return fmt.Errorf("%w: message %d of socket %s, after %d", ErrOutOfOrder, n, socket, rec.N)
		}
		taken := *rec
		taken.N = max(n, rec.N)
		s.storage.setSocket(socket, &taken)
		err = protect(ctx, s, func(ctx context.Context, s *State) error { return h.WebSocketMessage(ctx, s, ws, msg, text) })
		if err == nil || s.storage.broken != nil {
			return err // done; or a failed Sync, after which nothing commits
		}
		// Only the number stands: the handler's writes and sends go.
		s.storage.discard()
		s.outbox, s.sockOut = nil, nil
		s.storage.setSocket(socket, &taken)
		return &keptError{err}
	}
}

// MessageNumber is the number of the message that ws's WebSocketMessage
// handles: 1 for the socket's first message, one more for each after it,
// and the same number again when its router resends the message after a
// failover (messages run at least once). The socket's ID with it is an
// idempotency key for a handler that must not repeat its effects. It is 0
// for a message without a number (Actor.WebSocketMessage) and outside
// WebSocketMessage.
func MessageNumber(ws WebSocket) uint64 {
	if h, ok := ws.(*socketHandle); ok {
		return h.n
	}
	return 0
}

// WebSocketDrained tells an object that asked (WebSocket.NotifyDrained)
// that what it sent socket before asking reached the browser's
// connection. A class without WebSocketDrainer ignores it.
func (a *Actor) WebSocketDrained(ctx context.Context, socket string) error {
	return a.do(ctx, EventSocketDrained, func(ctx context.Context, s *State) error {
		if _, err := s.storage.socketRecord(socket); err != nil {
			return err
		}
		d, ok := a.obj.(WebSocketDrainer)
		if !ok {
			return nil
		}
		return d.WebSocketDrained(ctx, s, &socketHandle{s: s, id: socket})
	})
}

// WebSocketClose tells the object that socket's browser closed it (or
// its gateway lost it). The object holds the socket no more, even if the
// handler fails (its writes are dropped, and a second event drops the
// socket's record alone). During the handler the socket is already out
// of GetWebSockets; its tags and attachment can still be read.
func (a *Actor) WebSocketClose(ctx context.Context, socket string, code int, reason string, wasClean bool) error {
	return a.socketGone(ctx, EventSocketClose, socket, func(ctx context.Context, s *State, h WebSocketHandler, ws WebSocket) error {
		return h.WebSocketClose(ctx, s, ws, code, reason, wasClean)
	})
}

// WebSocketError tells the object that an error ended socket; as
// WebSocketClose otherwise.
func (a *Actor) WebSocketError(ctx context.Context, socket string, cause error) error {
	return a.socketGone(ctx, EventSocketError, socket, func(ctx context.Context, s *State, h WebSocketHandler, ws WebSocket) error {
		return h.WebSocketError(ctx, s, ws, cause)
	})
}

func (a *Actor) socketGone(ctx context.Context, kind EventKind, socket string, handle func(context.Context, *State, WebSocketHandler, WebSocket) error) error {
	err := a.do(ctx, kind, func(ctx context.Context, s *State) error {
		h, rec, err := a.socketEvent(s, socket)
		if err != nil {
			return err
		}
		if err := s.storage.forgetSocket(socket); err != nil {
			return err
		}
		return handle(ctx, s, h, &socketHandle{s: s, id: socket, gone: rec})
	})
	if err == nil || errors.Is(err, ErrUnknownSocket) || ctx.Err() != nil {
		return err
	}
	if ferr := a.do(ctx, eventRuntime, func(_ context.Context, s *State) error { return s.storage.forgetSocket(socket) }); ferr != nil {
		return errors.Join(err, fmt.Errorf("drop the socket's record: %w", ferr))
	}
	return err
}
