package durable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNoMethod is the error of a call to a method a class's Methods do not
// have.
var ErrNoMethod = errors.New("durable: no method")

// Method is one typed RPC method of a class, its request and result
// carried as JSON: the Go form of calling a public method on a Durable
// Object stub. Declare it once, beside the class, and use it on both
// sides: the class serves it (Serve, in its Methods), callers call it
// (Call) through a State (from another object), an app's stub or an
// objectclient.Client.
type Method[Req, Resp any] struct{ Name string }

// MethodCaller reaches an object's Call handler by ID: *State, the
// routers' and nodes' stubs (Stub) and objectclient.Client are ones.
type MethodCaller interface {
	Call(ctx context.Context, id ID, method string, arg []byte) ([]byte, error)
}

// Call calls the method on the object id with req and decodes its result.
// The object's own error comes back as is.
func (m Method[Req, Resp]) Call(ctx context.Context, c MethodCaller, id ID, req Req) (Resp, error) {
	var resp Resp
	arg, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("durable: encode the argument of %s: %w", m.Name, err)
	}
	out, err := c.Call(ctx, id, m.Name, arg)
	if err != nil {
		return resp, err
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return resp, fmt.Errorf("durable: decode the result of %s: %w", m.Name, err)
	}
	return resp, nil
}

// Serve is the method's entry in a class's Methods: it decodes the
// request (an empty argument is Req's zero value), runs f and encodes its
// result.
func (m Method[Req, Resp]) Serve(f func(ctx context.Context, s *State, req Req) (Resp, error)) MethodEntry {
	return MethodEntry{m.Name, func(ctx context.Context, s *State, arg []byte) ([]byte, error) {
		var req Req
		if len(arg) > 0 {
			if err := json.Unmarshal(arg, &req); err != nil {
				return nil, fmt.Errorf("%s: bad argument: %v", m.Name, err)
			}
		}
		resp, err := f(ctx, s, req)
		if err != nil {
			return nil, err
		}
		return json.Marshal(resp)
	}}
}

// MethodFunc runs one method on its raw argument.
type MethodFunc func(ctx context.Context, s *State, arg []byte) ([]byte, error)

// MethodEntry is one method of a Methods: its name and what runs it.
type MethodEntry struct {
	Name string
	Run  MethodFunc
}

// Methods dispatches a class's Call to its methods by name. A class
// holds one, built from Method.Serve entries, and calls it from its Call:
//
//	func (c *Counter) Call(ctx context.Context, s *durable.State, method string, arg []byte) ([]byte, error) {
//		return c.methods.Call(ctx, s, method, arg)
//	}
type Methods struct{ byName map[string]MethodFunc }

// NewMethods builds a dispatcher from Serve entries; a name given twice
// panics, as a class declared wrong should.
func NewMethods(entries ...MethodEntry) Methods {
	ms := Methods{byName: map[string]MethodFunc{}}
	for _, e := range entries {
		if _, dup := ms.byName[e.Name]; dup {
			panic(fmt.Sprintf("durable: method %q declared twice", e.Name))
		}
		ms.byName[e.Name] = e.Run
	}
	return ms
}

// Call runs the named method; ErrNoMethod, naming the ones there are, if
// there is none.
func (ms Methods) Call(ctx context.Context, s *State, method string, arg []byte) ([]byte, error) {
	f, ok := ms.byName[method]
	if !ok {
		names := make([]string, 0, len(ms.byName))
		for n := range ms.byName {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("%w %q (methods: %s)", ErrNoMethod, method, strings.Join(names, ", "))
	}
	return f(ctx, s, arg)
}
