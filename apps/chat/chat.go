// Package chat is hellochat's chat as an app on the object API: a Worker
// that maps ?room= to a room object by name, and the Room class, which
// keeps a room's messages, its dedupe index and its browsers (as
// hibernating WebSockets) through the public API alone. It speaks both
// browser protocols of docs/protocol.md (package wire): the original
// Hello Chat app's, and hellochat.v2 with acks, resends, resume and
// history pages.
//
// Route (served by routers):
//
//	GET /chat/ws?room=ROOM&name=NAME[&after=SEQ&key=KEY]   a WebSocket into ROOM
//
// Offer the subprotocol hellochat.v2 for v2; without it a browser speaks
// the seed protocol. A bad ROOM is answered 400 before any socket (the
// Worker has no socket to send an error frame on); a bad NAME, KEY or
// SEQ gets an error frame and a close 1008, as docs/protocol.md says.
//
// What a room guarantees, and how it gets it from the API:
//   - Every message is stored (committed through its shard's Raft group)
//     before anyone sees it or its ack: the output gate.
//   - Seqs have no gaps and timestamps never go back: events run one at a
//     time, and the next seq is taken from memory the Loader restored.
//   - A message is stored once however often it arrives: v2 messages by
//     (sender name, key, id), seed messages by their socket and number
//     (durable.MessageNumber), in a dedupe index of the newest DedupeWindow
//     messages, written in the message's own batch.
//   - Busy rooms pay one commit per batch of messages, not per message:
//     the runtime gathers the writes of the events that run while a batch
//     commits into the next one.
package chat

import (
	"hellochat/apps"
	"hellochat/durable"
)

// ClassName is the room class's namespace name.
const ClassName = "ChatRoom"

// Path is the route's path.
const Path = "/chat/ws"

// WSPath is where a router run with --chat-app serves the Worker as well:
// the built-in chat's path, so its pages and tools reach the app unchanged.
const WSPath = "/ws"

// Namespace is the room class's namespace.
var Namespace = durable.MustNamespace(ClassName)

// App is the chat app: the room class and the Worker's route.
func App() apps.App {
	return apps.App{
		Name:    "chat",
		Classes: []apps.Class{{Name: ClassName, New: func() durable.Object { return &Room{} }}},
		Routes:  []apps.Route{{Pattern: "GET " + Path, Handler: Worker}},
	}
}

// Worker is the stateless part: the room's name chooses the object.
var Worker = apps.RoomWorker(Namespace)
