// Package counter is the first app on the cluster's durable objects: named
// counters, each one object of class Counter, incremented over HTTP.
//
// Routes (served by routers):
//
//	POST /counter/NAME   increment NAME's counter; answers {"value": N}, the new value
//	GET  /counter/NAME   read it; answers {"value": N}
//
// NAME is held to the rules of room names (limits.Room). A POST may carry
// an Idempotency-Key header (limits.IdempotencyKey): a retried increment
// with the same key answers the value the first one got instead of
// counting twice, as long as fewer than Window increments of that counter
// came in between. A POST without one gets a key the router makes, so the
// router's own retries (after a leader failover) never count twice either.
package counter

import (
	"context"
	"fmt"
	"net/http"

	"hellochat/apps"
	"hellochat/durable"
)

// ClassName is the Counter class's namespace name.
const ClassName = "Counter"

// Window is how many of a counter's newest increments keep their request
// ids (and the values they got): a counter stores at most Window ids, and a
// retry is recognised while fewer than Window increments followed its
// first attempt. Dedupe windows of this kind are what chat rooms use too
// (objectnode.DedupeWindow).
const Window = 1024

// MaxRequestIDBytes bounds a request id (a router passes an
// Idempotency-Key, at most limits.MaxIdempotencyKeyBytes, or its own).
const MaxRequestIDBytes = 128

// Namespace is the Counter class's namespace.
var Namespace = durable.MustNamespace(ClassName)

// App is the counter app: its class and its routes.
func App() apps.App {
	return apps.App{
		Name:    "counter",
		Classes: []apps.Class{{Name: ClassName, New: func() durable.Object { return New() }}},
		Routes: []apps.Route{
			{Pattern: "POST /counter/{name}", Handler: incrementHandler},
			{Pattern: "GET /counter/{name}", Handler: getHandler},
			{Pattern: "/counter/{name}", Handler: func(apps.Stub) http.Handler { return http.HandlerFunc(notAllowed) }},
		},
	}
}

// Arg is the argument of the Counter's methods (JSON).
type Arg struct {
	// RequestID, when set, makes a retried increment answer what the
	// first attempt got.
	RequestID string `json:"request_id,omitempty"`
}

// Result is what the Counter's methods answer (JSON).
type Result struct {
	Value int64 `json:"value"`
}

// The Counter's methods, typed: a caller uses them as
// Increment.Call(ctx, stub, id, Arg{...}).
var (
	// Increment adds one and answers the new value; a request id it has
	// seen answers the value that request got.
	Increment = durable.Method[Arg, Result]{Name: "increment"}
	// Get answers the value.
	Get = durable.Method[Arg, Result]{Name: "get"}
)

// Counter is the class. Its storage:
//
//	"v"            the value (JSON)
//	"r/" <id>      the value the increment with request id <id> got (JSON)
//	"q/" <value>   the request id of the increment that got <value> (16
//	               hex digits), so that the id that leaves the window is
//	               found and deleted in the same batch as the new one
//
// It keeps nothing in memory: every event reads storage, so a fresh
// instance (on a new leader, or after a failed commit) needs no Load.
type Counter struct {
	window  int64
	methods durable.Methods
}

// New returns a Counter with the default Window.
func New() *Counter { return newCounter(Window) }

func newCounter(window int64) *Counter {
	c := &Counter{window: window}
	c.methods = durable.NewMethods(
		Increment.Serve(func(_ context.Context, s *durable.State, a Arg) (Result, error) {
			if err := a.check(); err != nil {
				return Result{}, err
			}
			v, err := c.increment(s.Storage(), a.RequestID)
			return Result{Value: v}, err
		}),
		Get.Serve(func(_ context.Context, s *durable.State, _ Arg) (Result, error) {
			v, _, err := durable.GetJSON[int64](s.Storage(), "v")
			return Result{Value: v}, err
		}),
	)
	return c
}

func (a Arg) check() error {
	if len(a.RequestID) > MaxRequestIDBytes {
		return fmt.Errorf("counter: request id longer than %d bytes", MaxRequestIDBytes)
	}
	return nil
}

// Call runs the Counter's methods (Increment, Get).
func (c *Counter) Call(ctx context.Context, s *durable.State, method string, arg []byte) ([]byte, error) {
	return c.methods.Call(ctx, s, method, arg)
}

func (c *Counter) increment(st *durable.Storage, id string) (int64, error) {
	if id != "" {
		if v, found, err := durable.GetJSON[int64](st, "r/"+id); err != nil || found {
			return v, err
		}
	}
	v, _, err := durable.GetJSON[int64](st, "v")
	if err != nil {
		return 0, err
	}
	v++
	if err := durable.PutJSON(st, "v", v); err != nil {
		return 0, err
	}
	if v > c.window {
		// The increment that leaves the window forgets its id, if it
		// had one.
		old := seqKey(v - c.window)
		oldID, found, err := st.Get(old)
		if err != nil {
			return 0, err
		}
		if found {
			if _, err := st.Delete("r/" + string(oldID)); err != nil {
				return 0, err
			}
			if _, err := st.Delete(old); err != nil {
				return 0, err
			}
		}
	}
	if id == "" {
		return v, nil
	}
	if err := durable.PutJSON(st, "r/"+id, v); err != nil {
		return 0, err
	}
	return v, st.Put(seqKey(v), []byte(id))
}

func seqKey(v int64) string { return fmt.Sprintf("q/%016x", v) }

func incrementHandler(stub apps.Stub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := apps.PathName(r, "counter name")
		if err != nil {
			apps.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		key, err := apps.RequestID(r)
		if err != nil {
			apps.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		var res Result
		apps.CallJSON(w, r, stub, Namespace.IDFromName(n), "counter", Increment.Name, Arg{RequestID: key}, &res)
	})
}

func getHandler(stub apps.Stub) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := apps.PathName(r, "counter name")
		if err != nil {
			apps.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		var res Result
		apps.CallJSON(w, r, stub, Namespace.IDFromName(n), "counter", Get.Name, Arg{}, &res)
	})
}

func notAllowed(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", "GET, POST")
	apps.WriteError(w, http.StatusMethodNotAllowed, "use POST to increment a counter, GET to read it")
}
