package apps

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"hellochat/durable"
	"hellochat/limits"
)

// The helpers below are what a worker's HTTP routes share: names from the
// path, request ids from Idempotency-Key, JSON calls and JSON errors.

// PathName is the route's {name} path value, checked as a room name is
// (limits.Room). what names it in the error ("counter name").
func PathName(r *http.Request, what string) (string, error) {
	raw := r.PathValue("name")
	n, err := limits.Room(raw)
	if err != nil {
		return "", err
	}
	if n != raw {
		return "", fmt.Errorf("%s has leading or trailing spaces", what)
	}
	return n, nil
}

// RequestID is the request's Idempotency-Key, checked by
// limits.IdempotencyKey, so a client's retry is recognised by the object.
// A request without one gets a fresh id that no client key can equal:
// clients' keys may not begin with limits.RouterIDMark.
func RequestID(r *http.Request) (string, error) {
	if _, given := r.Header["Idempotency-Key"]; !given {
		b := make([]byte, 12)
		rand.Read(b) // crypto/rand.Read never fails
		return limits.RouterIDMark + hex.EncodeToString(b), nil
	}
	key := r.Header.Get("Idempotency-Key")
	if err := limits.IdempotencyKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// CallJSON calls method of the object id with arg as JSON, decodes its
// result into res and writes it as the answer. A Stub error is answered
// with its HTTPStatus; what names the call in error messages ("counter").
func CallJSON[T any](w http.ResponseWriter, r *http.Request, stub Stub, id durable.ID, what, method string, arg any, res *T) {
	in, err := json.Marshal(arg)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, fmt.Sprintf("%s %s: encode the argument: %v", what, method, err))
		return
	}
	out, err := stub.Call(r.Context(), id, method, in)
	if err != nil {
		WriteError(w, HTTPStatus(err), what+" "+method+": "+err.Error())
		return
	}
	if err := json.Unmarshal(out, res); err != nil {
		WriteError(w, http.StatusInternalServerError, what+" "+method+": bad result from the object")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// WriteError answers {"error": msg} with status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Forward hands r to the Fetch handler of the object id and writes the
// object's response as the answer (a Worker's `return stub.fetch(request)`).
// A WebSocket upgrade goes to the stub's Upgrade if it has one (a
// router's does): the object may accept the socket, guarded by the
// router's defaults (SocketPolicy{}). A Stub error is answered with its
// HTTPStatus; what names the object in error messages.
func Forward(w http.ResponseWriter, r *http.Request, stub Stub, id durable.ID, what string) {
	ForwardWith(w, r, stub, id, what, SocketPolicy{})
}

// ForwardWith is Forward with the policy the router applies to the
// browser's side of the socket, if r is an upgrade the object accepts.
func ForwardWith(w http.ResponseWriter, r *http.Request, stub Stub, id durable.ID, what string, p SocketPolicy) {
	if IsWebSocketUpgrade(r) {
		u, ok := stub.(Upgrader)
		if !ok {
			WriteError(w, http.StatusNotImplemented, what+": this stub cannot hand WebSockets to objects")
			return
		}
		u.Upgrade(w, r, id, p)
		return
	}
	resp, err := stub.Fetch(r.Context(), id, r)
	if err != nil {
		WriteError(w, HTTPStatus(err), what+": "+err.Error())
		return
	}
	WriteResponse(w, resp)
}

// RoomWorker is a Worker that forwards each request to the object of ns
// named by its ?room= parameter (limits.Room: a bad name is answered 400,
// none is limits.DefaultRoom).
func RoomWorker(ns *durable.Namespace) func(Stub) http.Handler {
	return func(stub Stub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			room, err := limits.Room(r.URL.Query().Get("room"))
			if err != nil {
				WriteError(w, http.StatusBadRequest, err.Error())
				return
			}
			Forward(w, r, stub, ns.IDFromName(room), "room "+room)
		})
	}
}

// WriteResponse writes an object's response (status, headers, body) as
// the answer.
func WriteResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	for name, values := range resp.Header {
		for _, v := range values {
			w.Header().Add(name, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// Upgrader is a Stub that can hand a browser's WebSocket upgrade to an
// object (a router's stub, which keeps the browser's connection while
// the object holds the socket; durable.State.AcceptWebSocket). Upgrade
// answers r: 101 and the socket if the object accepts it, else the
// object's response or an error. Refuse answers r with a socket of the
// Worker's own, that no object holds (Cloudflare's WebSocketPair,
// accepted in the Worker): the handshake (with subprotocol, if not ""),
// frame, and a close with code and reason, so that a browser's page
// hears why in its own protocol.
type Upgrader interface {
	Upgrade(w http.ResponseWriter, r *http.Request, id durable.ID, p SocketPolicy)
	Refuse(w http.ResponseWriter, r *http.Request, subprotocol string, frame []byte, code int, reason string)
}

// SocketPolicy is how a router guards the browser's side of a socket an
// object holds, chosen by the Worker for each upgrade. Its zero value is
// the router's defaults.
type SocketPolicy struct {
	// MaxMessageBytes bounds one message from the browser: a longer one
	// closes the socket with 1009 (0: the router's bound, 1 MiB).
	MaxMessageBytes int
	// OverBudget, when set, makes the router drop the messages of a
	// browser past its frame budget (router --frame-rate, --frame-burst),
	// tell it so with the frame OverBudget returns (given the rate) at
	// most once a second, and close it with 1008 once it is refused
	// router.FloodRefusals times within router.FloodWindow. Nil: the
	// router reads such a browser no faster than its budget, and drops
	// nothing (for protocols with no way to say "refused").
	OverBudget func(rate float64) []byte
	// Overloaded, when set, answers a browser's message that finds its
	// socket's window of messages sent to the object and unanswered full
	// (the object is behind): the router drops the message and sends
	// the frame Overloaded returns instead. A nil frame, or no
	// Overloaded, has the router stop reading that browser until answers
	// come (nothing is refused, the browser's own socket fills).
	Overloaded func(msg []byte, text bool) []byte
	// JoinLines lets the router send the text frames that wait for the
	// browser together as one WebSocket message, one frame per line (up
	// to router.MaxLinesBytes), for a protocol whose browser splits its
	// messages on "\n": a busy room's frames then cost the browser one
	// message each batch, not one each frame. A frame that holds a
	// newline of its own always goes alone.
	JoinLines bool
}

// RefuseWebSocket answers the upgrade r with a socket that sends frame and
// closes (Upgrader.Refuse), or, through a stub that cannot, with status
// 400 and the reason.
func RefuseWebSocket(w http.ResponseWriter, r *http.Request, stub Stub, subprotocol string, frame []byte, code int, reason string) {
	if u, ok := stub.(Upgrader); ok && IsWebSocketUpgrade(r) {
		u.Refuse(w, r, subprotocol, frame, code, reason)
		return
	}
	WriteError(w, http.StatusBadRequest, reason)
}

// IsWebSocketUpgrade reports whether r asks for a WebSocket.
func IsWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		HeaderHasToken(r.Header, "Connection", "upgrade")
}

// HeaderHasToken reports whether one of the comma-separated values of
// header name is token (ASCII case ignored).
func HeaderHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
