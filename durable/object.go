package durable

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Object is an instance of a class: a value holding the object's state
// in memory, which the class builds from storage (Loader) and keeps up
// to date in its event handlers. It handles the events of whichever of
// Fetcher, Caller, Alarmer it implements; an event it does not handle
// fails with ErrNoHandler. Its actor calls it from one goroutine, one
// event at a time, so it needs no locks.
type Object any

// Loader is implemented by a class that reads its state before its
// first event (Cloudflare's blockConcurrencyWhile in a constructor).
// Load runs as an event: what it writes is committed before any other
// event starts, and an error fails Start.
type Loader interface {
	Load(ctx context.Context, s *State) error
}

// Fetcher handles HTTP requests. The response is buffered, and sent only
// once the event's writes are committed (so it cannot stream).
type Fetcher interface {
	Fetch(ctx context.Context, s *State, w http.ResponseWriter, r *http.Request)
}

// Caller handles RPCs: a method name and its argument, both opaque to the
// runtime (CallJSON encodes them as JSON).
type Caller interface {
	Call(ctx context.Context, s *State, method string, arg []byte) ([]byte, error)
}

// Alarmer handles the object's alarm (Storage.SetAlarm). An Alarm that
// returns an error is retried (see RetryPolicy); one that returns nil
// clears the alarm in the same batch as its writes, unless it set a new
// one.
type Alarmer interface {
	Alarm(ctx context.Context, s *State, info AlarmInfo) error
}

// AlarmInfo describes an alarm run.
type AlarmInfo struct {
	// ScheduledTime is when the alarm was set to fire.
	ScheduledTime time.Time
	// RetryCount is how many runs of this alarm failed before this one.
	RetryCount int
	// IsRetry is RetryCount > 0.
	IsRetry bool
}

// WebSocketHandler handles the events of the sockets a class accepted
// (State.AcceptWebSocket; Cloudflare's hibernation API): a message from
// the browser, its close, or an error that ended it. The actor delivers
// them one at a time like any event (Actor.WebSocketMessage and so on),
// waking the object from storage if it was evicted; after a close or an
// error the object no longer holds the socket.
type WebSocketHandler interface {
	WebSocketMessage(ctx context.Context, s *State, ws WebSocket, msg []byte, text bool) error
	WebSocketClose(ctx context.Context, s *State, ws WebSocket, code int, reason string, wasClean bool) error
	WebSocketError(ctx context.Context, s *State, ws WebSocket, err error) error
}

// WebSocketDrainer is implemented by a class that paces what it sends a
// socket by how fast the browser takes it (WebSocket.NotifyDrained): a
// long history sent a page at a time, the next when the last one is out.
type WebSocketDrainer interface {
	WebSocketDrained(ctx context.Context, s *State, ws WebSocket) error
}

// WebSocket is a socket an object accepted, valid during one event. Its
// tags and attachment (a small value, MaxAttachmentBytes) are stored with
// the object: they survive its eviction from memory and its leader's
// failover. What Send and Close do leaves once the event's writes are
// committed.
type WebSocket interface {
	ID() string
	Tags() []string
	Send(msg []byte, text bool) error
	// SendNumbered sends msg as frame n of the socket's numbered
	// sequence (n > 0): the gateway delivers it only if n is above the
	// last number it delivered on the socket, and drops it as a repeat
	// otherwise. A class sends a frame again this way when it cannot
	// know whether the browser had it: a leader that committed an event
	// may die before its frames leave, and the next instance, not
	// knowing, sends the recent ones again (apps/chat does, numbering
	// messages by their seq). Unnumbered frames (Send) are never
	// dropped and do not move the number.
	SendNumbered(n uint64, msg []byte, text bool) error
	// NotifyDrained asks for a WebSocketDrained event once what the
	// object sent the socket until now (this event's frames included) is
	// written to the browser's connection. It is a hint, not a promise:
	// the request is lost with a leader that dies or a socket that
	// closes, so a class that waits on it starts again from what it
	// stored (its Load), and numbers what it sends (SendNumbered).
	NotifyDrained() error
	Close(code int, reason string) error
	Attachment() []byte
	SetAttachment(b []byte) error
}

// Message is an output an event sends (State.Send): released, like the
// event's response, only once the event's writes are committed.
type Message struct {
	To   string
	Data []byte
}

// ErrNoOutbox refuses State.Send on an actor made without Config.Deliver.
var ErrNoOutbox = errors.New("durable: actor has no outbox (Config.Deliver)")

// State is what an event handler gets besides its input: the object's
// identity, storage and outbox. It is valid only during the event.
type State struct {
	id      ID
	storage *Storage
	outbox  []Message
	canSend bool
	over    bool
	stub    Stub
	callers []ID // the objects waiting on this event (CallChain)
	// actor runs the event: its drain commits what earlier events wrote
	// before a call leaves, and BlockConcurrencyWhile may reset it.
	actor *Actor
	// canSocket: the actor has a gateway (Config.Sockets); sockOut holds
	// the event's socket sends and closes until its commit.
	canSocket bool
	sockOut   []socketOp
	lastFrame []byte // the last frame sent (copyFrame)
}

// ID is the object's ID.
func (s *State) ID() ID { return s.id }

// Storage is the object's storage.
func (s *State) Storage() *Storage { return s.storage }

// Send queues a message to be delivered (Config.Deliver) once the event's
// writes are committed, in the order sent; it is dropped if they are not.
func (s *State) Send(to string, data []byte) error {
	switch {
	case s.over:
		return ErrNoEvent
	case !s.canSend:
		return ErrNoOutbox
	}
	s.outbox = append(s.outbox, Message{To: to, Data: append([]byte(nil), data...)})
	return nil
}
