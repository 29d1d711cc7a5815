package durable

// EventKind names what an event of an object's actor was, for whoever
// watches the actor run (Config.Observe).
type EventKind uint8

const (
	EventFetch EventKind = iota + 1
	EventCall
	EventSocketMessage
	EventSocketDrained
	EventSocketClose
	EventSocketError
	EventAlarm
	// eventRuntime is work the runtime queues for itself (dropping a
	// socket's record after a failed close handler): not the object's
	// event, so not observed.
	eventRuntime
)

// EventKinds lists every kind Observe is told of.
var EventKinds = []EventKind{EventFetch, EventCall, EventSocketMessage, EventSocketDrained, EventSocketClose, EventSocketError, EventAlarm}

func (k EventKind) String() string {
	switch k {
	case EventFetch:
		return "fetch"
	case EventCall:
		return "call"
	case EventSocketMessage:
		return "socket_message"
	case EventSocketDrained:
		return "socket_drained"
	case EventSocketClose:
		return "socket_close"
	case EventSocketError:
		return "socket_error"
	case EventAlarm:
		return "alarm"
	}
	return "runtime"
}

// observe tells Config.Observe of an event's outcome.
func (a *Actor) observe(kind EventKind, err error) {
	if a.cfg.Observe != nil && kind != eventRuntime {
		a.cfg.Observe(kind, err)
	}
}
