package durable

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"hellochat/storage"
)

// Limits of the WebSockets an object accepts (Cloudflare's, where it
// has them).
const (
	// MaxSockets bounds the sockets one object holds at once.
	MaxSockets = 32768
	// MaxSocketTags bounds a socket's tags, and MaxSocketTagBytes each
	// tag (1 byte at least).
	MaxSocketTags     = 10
	MaxSocketTagBytes = 256
	// MaxAttachmentBytes bounds a socket's attachment.
	MaxAttachmentBytes = 2048
	// MaxSocketMessageBytes bounds a message an object sends.
	MaxSocketMessageBytes = 1 << 20
	// MaxSocketIDBytes bounds the id a gateway gives a socket.
	MaxSocketIDBytes = 128
	// MaxAutoResponseBytes bounds each half of the automatic reply
	// (State.SetWebSocketAutoResponse), as Cloudflare's 2,048 characters.
	MaxAutoResponseBytes = 2048
)

var (
	// ErrNotUpgrade refuses AcceptWebSocket on a request that is not a
	// WebSocket upgrade handed to the object by its gateway (WithUpgrade).
	ErrNotUpgrade = errors.New("durable: not a WebSocket upgrade handed to this object")
	// ErrUnknownSocket fails a socket event for a socket the object does
	// not hold (never accepted, or closed).
	ErrUnknownSocket = errors.New("durable: the object holds no such socket")
	// ErrSocketClosed refuses an operation on a socket the event closed.
	ErrSocketClosed = errors.New("durable: socket closed")
	// ErrSocketLimit refuses what would pass one of the socket limits.
	ErrSocketLimit = errors.New("durable: socket limit")
	// ErrOutOfOrder refuses a socket's numbered message that comes before
	// the one it follows (WebSocketMessageAt): nothing ran, and the
	// gateway sends again from the missing one.
	ErrOutOfOrder = errors.New("durable: socket message out of order")
	// ErrNoSockets refuses AcceptWebSocket on an actor made without
	// Config.Sockets.
	ErrNoSockets = errors.New("durable: actor has no socket gateway (Config.Sockets)")
)

// Sockets is how an actor reaches the sockets its object accepted, which
// live on gateways (the routers, where the browsers' connections end).
// Its methods are called on the actor's goroutine once the writes of the
// event that sent are committed, in the order the event sent; they must
// not block for long.
type Sockets interface {
	// Send sends msg to each of sockets: a broadcast's sends of one
	// frame in a row come as one call, so that a gateway can queue the
	// frame once for all of them. number, when not 0, is the frame's
	// number in each socket's sequence (WebSocket.SendNumbered), and the
	// gateway drops it where it is not above the last number it
	// delivered there. Send must not keep sockets, which the actor
	// reuses; msg is the event's own copy and is never written again.
	Send(sockets []string, msg []byte, text bool, number uint64)
	Close(socket string, code int, reason string)
	// AutoResponse sets the socket's automatic reply: the gateway answers
	// a text message equal to request with response itself, without an
	// event (request "": none).
	AutoResponse(socket, request, response string)
	// Drain asks the gateway for a WebSocketDrained event of the socket
	// once what was sent it before is written to its browser.
	Drain(socket string)
}

type upgradeKey struct{}

// WithUpgrade marks a request's context as a WebSocket upgrade whose
// socket the gateway named socket: the object's Fetch may accept it
// (State.AcceptWebSocket) and answer 101.
func WithUpgrade(ctx context.Context, socket string) context.Context {
	return context.WithValue(ctx, upgradeKey{}, socket)
}

// checkSocketID holds a gateway's socket id to MaxSocketIDBytes of
// printable ASCII.
func checkSocketID(id string) error {
	if id == "" || len(id) > MaxSocketIDBytes {
		return fmt.Errorf("%w: socket id of %d bytes (1 to %d)", ErrSocketLimit, len(id), MaxSocketIDBytes)
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: socket id holds byte %#x", ErrSocketLimit, c)
		}
	}
	return nil
}

// socketOp is a send, close or auto-response an event made, released
// after its commit.
type socketOp struct {
	socket string
	kind   socketOpKind
	msg    []byte
	text   bool
	number uint64
	// rare is a close's code and reason, or an auto-response: kept apart,
	// as a broadcast queues many sends and copies each op as it grows.
	rare *rareSocketOp
}

type rareSocketOp struct {
	code   int
	reason string
	auto   autoResponse
}

type socketOpKind int

const (
	opSend socketOpKind = iota
	opClose
	opAuto
	opDrain
)

// autoResponse is the object's automatic reply to a WebSocket ping
// (State.SetWebSocketAutoResponse); stored at autoResponseKey so that it
// outlives eviction and failover, as the sockets do.
type autoResponse struct {
	Request  string `json:"q"`
	Response string `json:"r"`
}

var autoResponseKey = []byte{metaPrefix, 'r'}

// AcceptWebSocket accepts the WebSocket whose upgrade r is, with tags to
// find it by (GetWebSockets). The object's Fetch then answers 101. The
// socket's record is written with the event's writes; frames it sends
// leave once they are committed. The socket stays the object's across
// its eviction from memory and its leader's failover, until it or the
// object closes it.
func (s *State) AcceptWebSocket(r *http.Request, tags ...string) (WebSocket, error) {
	if err := s.storage.usable(); err != nil {
		return nil, err
	}
	if !s.canSocket {
		return nil, ErrNoSockets
	}
	id, ok := r.Context().Value(upgradeKey{}).(string)
	if !ok {
		return nil, ErrNotUpgrade
	}
	if err := checkSocketID(id); err != nil {
		return nil, err
	}
	if len(tags) > MaxSocketTags {
		return nil, fmt.Errorf("%w: %d tags, at most %d", ErrSocketLimit, len(tags), MaxSocketTags)
	}
	for _, tag := range tags {
		if tag == "" || len(tag) > MaxSocketTagBytes {
			return nil, fmt.Errorf("%w: a tag of %d bytes (1 to %d)", ErrSocketLimit, len(tag), MaxSocketTagBytes)
		}
	}
	held, err := s.storage.socketList()
	if err != nil {
		return nil, err
	}
	if len(held) >= MaxSockets && !slices.ContainsFunc(held, func(h heldSocket) bool { return h.id == id }) {
		return nil, fmt.Errorf("%w: the object holds %d sockets already", ErrSocketLimit, len(held))
	}
	if s.storage.sockets == nil {
		s.storage.sockets = map[string]*socketRecord{}
	}
	s.storage.sockets[id] = &socketRecord{Tags: slices.Clone(tags)}
	auto, err := s.storage.autoResponse()
	if err != nil {
		return nil, err
	}
	if auto.Request != "" {
		s.sockOut = append(s.sockOut, socketOp{socket: id, kind: opAuto, rare: &rareSocketOp{auto: auto}})
	}
	return &socketHandle{s: s, id: id}, nil
}

// SetWebSocketAutoResponse makes every socket of the object, those it
// holds and those it will accept, answer a text message equal to request
// with response, on the router, without waking the object: a keepalive
// ping costs no event (Cloudflare's setWebSocketAutoResponse). request ""
// takes the reply away. Both are at most MaxAutoResponseBytes; the reply
// is stored with the event's writes and takes effect once they commit.
func (s *State) SetWebSocketAutoResponse(request, response string) error {
	if err := s.storage.usable(); err != nil {
		return err
	}
	if !s.canSocket {
		return ErrNoSockets
	}
	if len(request) > MaxAutoResponseBytes || len(response) > MaxAutoResponseBytes {
		return fmt.Errorf("%w: auto-response of %d and %d bytes, at most %d each",
			ErrSocketLimit, len(request), len(response), MaxAutoResponseBytes)
	}
	if request == "" {
		response = ""
	}
	held, err := s.storage.socketList()
	if err != nil {
		return err
	}
	auto := autoResponse{Request: request, Response: response}
	s.storage.auto = &auto
	for _, h := range held {
		s.sockOut = append(s.sockOut, socketOp{socket: h.id, kind: opAuto, rare: &rareSocketOp{auto: auto}})
	}
	return nil
}

// WebSocketAutoResponse is the automatic reply as the event sees it
// (request "": none).
func (s *State) WebSocketAutoResponse() (request, response string, err error) {
	if err := s.storage.usable(); err != nil {
		return "", "", err
	}
	auto, err := s.storage.autoResponse()
	return auto.Request, auto.Response, err
}

// autoResponse reads the automatic reply as the event sees it.
func (s *Storage) autoResponse() (autoResponse, error) {
	if s.auto != nil {
		return *s.auto, nil
	}
	b, found, err := s.base.r.Get(s.base.object, autoResponseKey)
	if err != nil || !found {
		if err != nil {
			err = fmt.Errorf("durable: read the auto-response: %w", err)
		}
		return autoResponse{}, err
	}
	var auto autoResponse
	if err := json.Unmarshal(b, &auto); err != nil {
		return autoResponse{}, fmt.Errorf("durable: decode the auto-response: %w", err)
	}
	return auto, nil
}

// autoResponseOp is the write of an auto-response the event set.
func (s *Storage) autoResponseOp() []storage.Op {
	switch {
	case s.auto == nil:
		return nil
	case s.auto.Request == "":
		return []storage.Op{{Key: autoResponseKey, Delete: true}}
	}
	b, err := json.Marshal(s.auto)
	if err != nil {
		panic(fmt.Sprintf("durable: encode the auto-response: %v", err)) // strings: cannot fail
	}
	return []storage.Op{{Key: autoResponseKey, Value: b}}
}

// GetWebSockets lists the object's sockets with tag ("" for all), in id
// order, wherever their browsers are connected.
func (s *State) GetWebSockets(tag string) ([]WebSocket, error) {
	if err := s.storage.usable(); err != nil {
		return nil, err
	}
	held, err := s.storage.socketList()
	if err != nil {
		return nil, err
	}
	// One allocation for the handles: a broadcast lists every socket.
	handles := make([]socketHandle, 0, len(held))
	out := make([]WebSocket, 0, len(held))
	for _, h := range held {
		if tag == "" || slices.Contains(h.rec.Tags, tag) {
			handles = append(handles, socketHandle{s: s, id: h.id})
			out = append(out, &handles[len(handles)-1])
		}
	}
	return out, nil
}

// socketHandle is a WebSocket handle, valid during the event that made it.
type socketHandle struct {
	s  *State
	id string
	// gone is the record of a socket whose browser is gone, for the
	// close and error events: its tags and attachment can be read, but
	// nothing can be sent to it.
	gone *socketRecord
	// n is the number of the message being handled (MessageNumber).
	n uint64
}

func (w *socketHandle) ID() string { return w.id }

func (w *socketHandle) record() (*socketRecord, error) {
	if err := w.s.storage.usable(); err != nil {
		return nil, err
	}
	if w.gone != nil {
		return nil, ErrSocketClosed
	}
	return w.s.storage.socketRecord(w.id)
}

// readable is the record Tags and Attachment read.
func (w *socketHandle) readable() *socketRecord {
	if w.gone != nil {
		return w.gone
	}
	rec, err := w.record()
	if err != nil {
		return &socketRecord{}
	}
	return rec
}

func (w *socketHandle) Tags() []string { return slices.Clone(w.readable().Tags) }

func (w *socketHandle) Attachment() []byte { return slices.Clone(w.readable().Attachment) }

func (w *socketHandle) SetAttachment(b []byte) error {
	if len(b) > MaxAttachmentBytes {
		return fmt.Errorf("%w: attachment of %d bytes, at most %d", ErrSocketLimit, len(b), MaxAttachmentBytes)
	}
	rec, err := w.record()
	if err != nil {
		return err
	}
	changed := *rec
	changed.Attachment = slices.Clone(b)
	w.s.storage.setSocket(w.id, &changed)
	return nil
}

// setSocket changes socket id's record (nil: drops it) with the event's
// writes.
func (s *Storage) setSocket(id string, rec *socketRecord) {
	if s.sockets == nil {
		s.sockets = map[string]*socketRecord{}
	}
	s.sockets[id] = rec
}

func (w *socketHandle) Send(msg []byte, text bool) error {
	return w.SendNumbered(0, msg, text)
}

func (w *socketHandle) SendNumbered(n uint64, msg []byte, text bool) error {
	if len(msg) > MaxSocketMessageBytes {
		return fmt.Errorf("%w: message of %d bytes, at most %d", ErrSocketLimit, len(msg), MaxSocketMessageBytes)
	}
	if _, err := w.record(); err != nil {
		return err
	}
	if w.s.sockOut == nil && w.s.storage.held != nil {
		// A broadcast sends to every socket: room for all at once.
		w.s.sockOut = make([]socketOp, 0, len(w.s.storage.held.recs)+2)
	}
	w.s.sockOut = append(w.s.sockOut, socketOp{socket: w.id, kind: opSend, msg: w.s.copyFrame(msg), text: text, number: n})
	return nil
}

// copyFrame is the event's own copy of msg (the class may reuse its
// buffer once Send returns). A broadcast sends one frame to many sockets:
// they share one copy, and the node sends it to each router once.
func (s *State) copyFrame(msg []byte) []byte {
	if last := s.lastFrame; len(last) == len(msg) && bytes.Equal(last, msg) {
		return last
	}
	s.lastFrame = slices.Clone(msg)
	return s.lastFrame
}

func (w *socketHandle) NotifyDrained() error {
	if _, err := w.record(); err != nil {
		return err
	}
	w.s.sockOut = append(w.s.sockOut, socketOp{socket: w.id, kind: opDrain})
	return nil
}

func (w *socketHandle) Close(code int, reason string) error {
	if _, err := w.record(); err != nil {
		return err
	}
	if w.s.storage.sockets == nil {
		w.s.storage.sockets = map[string]*socketRecord{}
	}
	w.s.storage.sockets[w.id] = nil
	w.s.sockOut = append(w.s.sockOut, socketOp{socket: w.id, kind: opClose, rare: &rareSocketOp{code: code, reason: reason}})
	return nil
}

// forgetSocket drops socket id's record with the event's writes (its
// browser is gone: nothing is sent to it).
func (s *Storage) forgetSocket(id string) error {
	if _, err := s.socketRecord(id); err != nil {
		if errors.Is(err, ErrUnknownSocket) || errors.Is(err, ErrSocketClosed) {
			return nil
		}
		return err
	}
	if s.sockets == nil {
		s.sockets = map[string]*socketRecord{}
	}
	s.sockets[id] = nil
	return nil
}
