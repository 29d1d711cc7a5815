// Package chatstore says where a chat room's messages live in a node's
// store, under either chat a router may serve at /ws, for the tests and
// labs that read nodes' stores after the fact.
package chatstore

import (
	"os"

	"hellochat/apps/chat"
)

// BuiltinChatEnv is the environment variable that has routers serve the
// built-in chat (--builtin-chat, through flagenv) and the test clusters
// start them so; the labs read it to know which chat their rooms are in.
const BuiltinChatEnv = "HELLOCHAT_BUILTIN_CHAT"

// BuiltinChatFromEnv reports whether BuiltinChatEnv asks for the built-in
// chat.
func BuiltinChatFromEnv() bool { return os.Getenv(BuiltinChatEnv) == "1" }

// Room is where a chat room lives in a node's store: the object its keys
// are under, and the key range of its messages, one key each.
type Room struct {
	Object           string
	MsgStart, MsgEnd []byte
}

// Of is where room lives: the chat app keeps it under its object's
// storage, the built-in chat under the room's name.
func Of(room string, builtinChat bool) Room {
	if builtinChat {
		return Room{room, []byte("m"), []byte("n")}
	}
	object, start, end := chat.StoredMessages(room)
	return Room{object, start, end}
}
