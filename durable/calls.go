package durable

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MaxCallDepth bounds a chain of calls between objects: an event of A
// calls B, whose event calls C, and so on. A call that would make the
// chain longer is refused with ErrCallDepth. Eight hops is far more than
// a design needs, and bounds how many objects one request can hold busy.
const MaxCallDepth = 8

var (
	// ErrCallCycle refuses a call to an object whose own event is waiting,
	// further up the chain, for this call to return (A calls B, B calls A).
	// The object runs one event at a time, so the call could never run:
	// without this error the two would wait for each other until their
	// callers gave up.
	ErrCallCycle = errors.New("durable: call cycle")
	// ErrCallDepth refuses a call that would make the chain of calls
	// between objects longer than MaxCallDepth.
	ErrCallDepth = errors.New("durable: call chain too deep")
	// ErrNoStub refuses State.Call on an actor made without Config.Stub.
	ErrNoStub = errors.New("durable: actor cannot call other objects (Config.Stub)")
)

// Stub calls a method of an object wherever it runs. The context carries
// the chain of objects whose events are waiting on the call (CallChain),
// which a Stub must pass on to the object's actor (WithCallChain) so that
// it can refuse a cycle.
type Stub interface {
	Call(ctx context.Context, id ID, method string, arg []byte) ([]byte, error)
	// Fetch hands r to the object's Fetch handler and returns its
	// response, whose body is fully read into memory.
	Fetch(ctx context.Context, id ID, r *http.Request) (*http.Response, error)
}

type chainKey struct{}

// WithCallChain returns ctx carrying chain: the objects, outermost first,
// whose events wait on a call made with it.
func WithCallChain(ctx context.Context, chain []ID) context.Context {
	return context.WithValue(ctx, chainKey{}, chain)
}

// CallChain is the chain ctx carries (nil for a call from outside any
// object, such as a router's).
func CallChain(ctx context.Context) []ID {
	chain, _ := ctx.Value(chainKey{}).([]ID)
	return chain
}

// checkChain refuses a call to id made along chain: a cycle, or a chain
// already MaxCallDepth long.
func checkChain(chain []ID, id ID) error {
	for i, c := range chain {
		if c.Equal(id) {
			return fmt.Errorf("%w: %s", ErrCallCycle, describeChain(append(chain[i:len(chain):len(chain)], id)))
		}
	}
	if len(chain) >= MaxCallDepth {
		return fmt.Errorf("%w: %s calls %s, hop %d of at most %d", ErrCallDepth,
			describeChain(chain[len(chain)-1:]), describeChain([]ID{id}), len(chain)+1, MaxCallDepth)
	}
	return nil
}

// describeChain names each object as class/first 8 hex digits of its
// ID: an ID that crossed the wire has lost the name it was made from.
func describeChain(chain []ID) string {
	parts := make([]string, len(chain))
	for i, id := range chain {
		parts[i] = id.Namespace() + "/" + id.String()[:min(8, len(id.String()))]
	}
	return strings.Join(parts, " -> ")
}

// Call calls a method of another object (through Config.Stub) from this
// event, which waits for it. The call carries this event's chain of
// callers, so a call back to an object that is waiting (this one
// included) fails at once with ErrCallCycle instead of deadlocking.
// The other object's writes commit on their own: if this event's writes
// then fail, the other's stand, so a call that changes state should be
// idempotent (a request id in its argument).
func (s *State) Call(ctx context.Context, id ID, method string, arg []byte) ([]byte, error) {
	ctx, err := s.outgoing(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.stub.Call(ctx, id, method, arg)
}

// Fetch hands an HTTP request to another object's Fetch handler (through
// Config.Stub), as Call calls its method: same chain, same caveats.
func (s *State) Fetch(ctx context.Context, id ID, r *http.Request) (*http.Response, error) {
	ctx, err := s.outgoing(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.stub.Fetch(ctx, id, r)
}

// outgoing checks a call of id from this event, and returns ctx carrying
// the event's chain of callers for it.
func (s *State) outgoing(ctx context.Context, id ID) (context.Context, error) {
	switch {
	case s.over:
		return nil, ErrNoEvent
	case s.stub == nil:
		return nil, ErrNoStub
	}
	// Made only when the event calls out: most events never do.
	chain := append(s.callers[:len(s.callers):len(s.callers)], s.id)
	if err := checkChain(chain, id); err != nil {
		return nil, err
	}
	// The output gate: the call may tell what earlier events wrote, so it
	// leaves once that is committed (this event's own writes stay its own
	// until it ends, as before).
	if err := s.actor.drain(); err != nil {
		s.storage.broken = err
		return nil, err
	}
	return WithCallChain(ctx, chain), nil
}
