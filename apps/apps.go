// Package apps is where applications plug into the cluster: an App names
// the durable object classes it defines, which object nodes run, and the
// HTTP routes through which routers expose them. Both binaries link the
// same registry (package apps/builtin), so a class a router calls is one
// its nodes know.
package apps

import (
	"errors"
	"fmt"
	"net/http"

	"hellochat/durable"
)

// Class is an object class: its namespace name and its constructor.
type Class struct {
	Name string
	New  func() durable.Object
}

// Stub calls a method of an object wherever it runs in the cluster
// (package objectclient finds the node that leads the object's shard,
// follows redirects and retries within a bounded time). Its errors are
// *Error.
type Stub = durable.Stub

// Route is an HTTP route a router serves for an app.
type Route struct {
	// Pattern is a net/http ServeMux pattern, such as "POST /counter/{name}".
	Pattern string
	// Handler makes the route's handler, which reaches objects with stub.
	Handler func(stub Stub) http.Handler
}

// App is one application.
type App struct {
	Name    string
	Classes []Class
	Routes  []Route
}

// Registry is a set of apps: their classes by name, and their routes.
type Registry struct {
	classes map[string]registered
	routes  []Route
}

type registered struct {
	ns  *durable.Namespace
	new func() durable.Object
}

// NewRegistry checks the apps' classes (valid, unique names, a
// constructor each) and routes, and returns their registry.
func NewRegistry(apps ...App) (*Registry, error) {
	r := &Registry{classes: map[string]registered{}}
	for _, a := range apps {
		for _, c := range a.Classes {
			ns, err := durable.NewNamespace(c.Name)
			if err != nil {
				return nil, fmt.Errorf("apps: %s: %w", a.Name, err)
			}
			if c.New == nil {
				return nil, fmt.Errorf("apps: %s: class %s has no constructor", a.Name, c.Name)
			}
			if _, dup := r.classes[c.Name]; dup {
				return nil, fmt.Errorf("apps: %s: class %s is registered twice", a.Name, c.Name)
			}
			r.classes[c.Name] = registered{ns: ns, new: c.New}
		}
		for _, rt := range a.Routes {
			if rt.Pattern == "" || rt.Handler == nil {
				return nil, fmt.Errorf("apps: %s: a route needs a pattern and a handler", a.Name)
			}
			r.routes = append(r.routes, rt)
		}
	}
	return r, nil
}

// Class returns a registered class's namespace and constructor.
func (r *Registry) Class(name string) (ns *durable.Namespace, newObject func() durable.Object, ok bool) {
	c, ok := r.classes[name]
	return c.ns, c.new, ok
}

// Routes are every app's HTTP routes.
func (r *Registry) Routes() []Route { return r.routes }

// Code classifies a Stub's error.
type Code int

const (
	// BadRequest: the node refused the call's input (class, id, method or
	// argument); HTTP 400.
	BadRequest Code = iota + 1
	// Refused: the object's method returned an error; its writes were
	// dropped. HTTP 422: the request was understood and refused.
	Refused
	// Unavailable: no node answered in time (the object's shard has no
	// leader reachable, or it kept moving). Whether the call ran is
	// unknown unless it carried a request id the object dedupes. HTTP 503.
	Unavailable
	// Internal: the object's method panicked, or the class cannot take
	// calls. HTTP 500.
	Internal
)

// Error is a Stub's error.
type Error struct {
	Code    Code
	Message string
	// Err, when set, is the durable error the node refused the call with
	// (durable.ErrCallCycle, durable.ErrCallDepth), so errors.Is finds it.
	Err error
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status an HTTP route answers a Stub's error with.
func HTTPStatus(err error) int {
	var e *Error
	if !errors.As(err, &e) {
		return http.StatusInternalServerError
	}
	switch e.Code {
	case BadRequest:
		return http.StatusBadRequest
	case Refused:
		return http.StatusUnprocessableEntity
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
