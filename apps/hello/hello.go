// Package hello is the original Hello Chat room as a Go class on the
// object API: a Worker that maps ?room= to an object by name, and a
// class that keeps the room's messages in its storage and its browsers as
// hibernating WebSockets. It speaks the original app's protocol, and is
// the smallest complete example of a WebSocket class.
//
// Route (served by routers):
//
//	GET /hello/ws?room=ROOM&name=NAME   a WebSocket into room ROOM
//
// Frames are JSON objects {"message", "name", "timestamp"}, as the
// original's. A browser sends {"message": TEXT}; everyone else in the room
// is shown it with the sender's name and the time it was stored (Unix
// milliseconds). A browser that joins is shown the newest HistoryLimit
// messages, and the others are told "joined the chat"; one that leaves is
// announced as "Disconnected". A text that is empty after trimming is
// ignored, as the original ignores it; one that breaks the limits
// (limits.Message) is answered with an error from "system", as the
// built-in chat answers a seed client, and stored nowhere. ROOM and NAME
// follow limits.Room and limits.Name (400 before any socket).
//
// The class keeps nothing in memory between events, so it can be evicted
// at any time while its browsers stay connected to their routers.
package hello

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"hellochat/apps"
	"hellochat/durable"
	"hellochat/limits"
)

// ClassName is the room class's namespace name.
const ClassName = "HelloChat"

const (
	// HistoryLimit is how many of the newest messages a browser is shown
	// when it joins.
	HistoryLimit = 100
	// Keep is how many of its newest messages a room stores; storing one
	// more deletes the oldest in the same batch.
	Keep = 10000
)

// Namespace is the room class's namespace.
var Namespace = durable.MustNamespace(ClassName)

// App is the hello app: the room class and the Worker's route.
func App() apps.App {
	return apps.App{
		Name:    "hello",
		Classes: []apps.Class{{Name: ClassName, New: func() durable.Object { return Room{} }}},
		Routes:  []apps.Route{{Pattern: "GET /hello/ws", Handler: apps.RoomWorker(Namespace)}},
	}
}

// Frame is every frame, both ways (a browser sends only Message).
type Frame struct {
	Message   string `json:"message"`
	Name      string `json:"name"`
	Timestamp int64  `json:"timestamp,omitempty"`
}

// attachment is what a socket carries: its browser's name.
type attachment struct {
	Name string `json:"name"`
}

// Room is the class. Its storage:
//
//	"seq"           the number of the newest message (JSON)
//	"msg/" %016x    message n, a Frame (JSON)
type Room struct{}

func msgKey(n int64) string { return fmt.Sprintf("msg/%016x", n) }

// Fetch accepts a WebSocket from the route.
func (Room) Fetch(ctx context.Context, s *durable.State, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/hello/ws" || !apps.IsWebSocketUpgrade(r) {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	name, err := limits.Name(r.URL.Query().Get("name"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := join(s, r, name); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusSwitchingProtocols)
}

func join(s *durable.State, r *http.Request, name string) error {
	ws, err := s.AcceptWebSocket(r)
	if err != nil {
		return err
	}
	att, _ := json.Marshal(attachment{Name: name})
	if err := ws.SetAttachment(att); err != nil {
		return err
	}
	if err := broadcast(s, Frame{Message: "joined the chat", Name: name}, ws.ID()); err != nil {
		return err
	}
	history, err := s.Storage().List(durable.ListOptions{Prefix: "msg/", Reverse: true, Limit: HistoryLimit})
	if err != nil {
		return err
	}
	slices.Reverse(history)
	for _, kv := range history {
		if err := ws.Send(kv.Value, true); err != nil {
			return err
		}
	}
	return nil
}

// WebSocketMessage stores a browser's message and shows it to the others.
func (Room) WebSocketMessage(ctx context.Context, s *durable.State, ws durable.WebSocket, data []byte, text bool) error {
	var in Frame
	if err := json.Unmarshal(data, &in); err != nil {
		return refuse(ws, "bad JSON: "+err.Error())
	}
	msg, err := limits.Message(in.Message)
	var le *limits.Error
	switch {
	case errors.As(err, &le) && le.Code == limits.CodeEmpty:
		return nil // the original ignores it
	case err != nil:
		return refuse(ws, err.Error())
	}
	name := nameOf(ws)
	seq, _, err := durable.GetJSON[int64](s.Storage(), "seq")
	if err != nil {
		return err
	}
	seq++
	out := Frame{Message: msg, Name: name, Timestamp: time.Now().UnixMilli()}
	b, _ := json.Marshal(out)
	if err := durable.PutJSON(s.Storage(), "seq", seq); err != nil {
		return err
	}
	if err := s.Storage().Put(msgKey(seq), b); err != nil {
		return err
	}
	if seq > Keep {
		if _, err := s.Storage().Delete(msgKey(seq - Keep)); err != nil {
			return err
		}
	}
	return sendAll(s, b, ws.ID())
}

// WebSocketClose announces that a browser left.
func (Room) WebSocketClose(ctx context.Context, s *durable.State, ws durable.WebSocket, code int, reason string, clean bool) error {
	return broadcast(s, Frame{Message: "Disconnected", Name: nameOf(ws)}, ws.ID())
}

// WebSocketError announces it the same way: the socket is gone either way.
func (Room) WebSocketError(ctx context.Context, s *durable.State, ws durable.WebSocket, err error) error {
	return broadcast(s, Frame{Message: "Disconnected", Name: nameOf(ws)}, ws.ID())
}

func nameOf(ws durable.WebSocket) string {
	var a attachment
	if json.Unmarshal(ws.Attachment(), &a) != nil || a.Name == "" {
		return limits.DefaultName
	}
	return a.Name
}

// refuse answers a bad frame with an error from "system"; the event
// stores nothing.
func refuse(ws durable.WebSocket, why string) error {
	b, _ := json.Marshal(Frame{Message: "error: " + why, Name: "system", Timestamp: time.Now().UnixMilli()})
	return ws.Send(b, true)
}

func broadcast(s *durable.State, f Frame, except string) error {
	b, _ := json.Marshal(f)
	return sendAll(s, b, except)
}

// sendAll sends b to every socket of the room but except.
func sendAll(s *durable.State, b []byte, except string) error {
	all, err := s.GetWebSockets("")
	if err != nil {
		return err
	}
	for _, ws := range all {
		if ws.ID() == except {
			continue
		}
		if err := ws.Send(b, true); err != nil {
			return err
		}
	}
	return nil
}
