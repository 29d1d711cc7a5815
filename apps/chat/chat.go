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
// the seed protocol. A bad ROOM, NAME, KEY or SEQ gets an error frame and
// a close 1008, as docs/protocol.md says (a bad ROOM from the Worker, on a
// socket no room holds).
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
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"hellochat/apps"
	"hellochat/apps/chat/wire"
	"hellochat/durable"
	"hellochat/limits"
)

// ClassName is the room class's namespace name.
const ClassName = "ChatRoom"

// Path is the route's path.
const Path = "/chat/ws"

// WSPath is where routers serve the Worker as well: the chat's documented
// path, which its pages and tools use.
const WSPath = "/ws"

// Namespace is the room class's namespace.
var Namespace = durable.MustNamespace(ClassName)

// App is the chat app: the room class and the Worker's route.
func App(o Options) apps.App {
	worker := NewWorker(o)
	return apps.App{
		Name:    "chat",
		Classes: []apps.Class{{Name: ClassName, New: func() durable.Object { return &Room{} }}},
		Routes:  []apps.Route{{Pattern: "GET " + Path, Handler: worker}, {Pattern: "GET " + WSPath, Handler: worker}},
	}
}

// DefaultSendRate and DefaultSendBurst bound each browser's messages per
// second (router --send-rate, --send-burst).
const (
	DefaultSendRate  = 100
	DefaultSendBurst = 200
)

// SendRateHeader carries a browser's send rate and burst ("RATE BURST";
// a rate of 0 or less: no bound) from the Worker to the room, which keeps
// it with the socket. The Worker always sets it, so a browser cannot.
const SendRateHeader = "Hellochat-Send-Rate"

// SeedHistoryHeader carries how many of the newest messages a seed
// browser is sent when it joins (router --seed-history; 0 or none: the
// whole history, as the seed app sends), set by the Worker.
const SeedHistoryHeader = "Hellochat-Seed-History"

// Options are the Worker's settings.
type Options struct {
	// SendRate and SendBurst bound each browser's messages per second
	// (rate 0 or less: no bound).
	SendRate  float64
	SendBurst int
	// SeedHistory caps the history a seed browser is sent (0: all).
	SeedHistory int
}

// DefaultOptions are the Worker's settings by default: the default send
// rate, and the whole history.
func DefaultOptions() Options {
	return Options{SendRate: DefaultSendRate, SendBurst: DefaultSendBurst}
}

// NewWorker returns the stateless part: the room's name chooses the
// object. A bad room is refused with the error frame of the browser's
// protocol and close 1008, on a socket of the Worker's own; the room's
// sockets are guarded by the router with frames of at most
// limits.MaxFrameBytes, and a browser past its frame budget is told
// rate_limited, in its protocol, and its frames dropped.
func NewWorker(o Options) func(apps.Stub) http.Handler {
	rateValue := strconv.FormatFloat(o.SendRate, 'g', -1, 64) + " " + strconv.Itoa(max(o.SendBurst, 1))
	seedHistory := strconv.Itoa(max(o.SeedHistory, 0))
	return func(stub apps.Stub) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, sub := wire.Seed, ""
			if apps.HeaderHasToken(r.Header, "Sec-WebSocket-Protocol", wire.SubprotocolV2) {
				p, sub = wire.V2, wire.SubprotocolV2
			}
			room, err := limits.Room(r.URL.Query().Get("room"))
			var le *limits.Error
			if errors.As(err, &le) {
				apps.RefuseWebSocket(w, r, stub, sub, wire.Error(p, le.Code, le.Message, ""), closePolicy, le.Message)
				return
			}
			r.Header.Set(SendRateHeader, rateValue)
			r.Header.Set(SeedHistoryHeader, seedHistory)
			apps.ForwardWith(w, r, stub, Namespace.IDFromName(room), "room "+room, apps.SocketPolicy{
				MaxMessageBytes: limits.MaxFrameBytes,
				OverBudget: func(rate float64) []byte {
					return wire.Error(p, limits.CodeRateLimited, fmt.Sprintf("too many frames (max %g/s); frames are being dropped", rate), "")
				},
				Overloaded: func(msg []byte, text bool) []byte {
					return overloaded(p, msg, text)
				},
				// lines=1: a v2 browser that splits messages on newlines
				// (docs/protocol.md); no frame of ours holds a raw one.
				JoinLines: p == wire.V2 && r.URL.Query().Get("lines") == "1",
			})
		})
	}
}

// overloaded refuses a browser's message when its room is behind: a send
// is refused (overloaded, with its id and the start of its text for the
// seed page), and anything else, a typing notice too, waits for the room.
func overloaded(p wire.Protocol, msg []byte, text bool) []byte {
	if !text {
		return nil
	}
	op, err := wire.Parse(p, msg)
	switch {
	case err != nil:
		return nil // the room answers what it cannot read
	case op.Kind == "send":
		return wire.Refusal(p, limits.CodeOverloaded, "server overloaded; message not sent", op.ID, op.Text)
	}
	return nil
}

// parseSeedHistory reads SeedHistoryHeader: the newest messages of last
// that a seed browser is sent.
func parseSeedHistory(v string, last uint64) uint64 {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return last
	}
	return min(n, last)
}

// parseSendRate reads SendRateHeader; a missing or bad one is no bound
// (only a Worker of this package forwards upgrades to rooms).
func parseSendRate(v string) (rate float64, burst int) {
	rs, bs, ok := strings.Cut(v, " ")
	if !ok {
		return 0, 0
	}
	rate, err1 := strconv.ParseFloat(rs, 64)
	burst, err2 := strconv.Atoi(bs)
	if err1 != nil || err2 != nil || burst < 1 {
		return 0, 0
	}
	return rate, burst
}
