package router

import (
	"fmt"
	"net/http"

	"hellochat/apps"
	"hellochat/objectclient"
)

// registerRoutes serves the apps' routes on mux, reaching objects through
// an objectclient over the router's node connections; a pattern that
// conflicts with another is an error, not a panic.
func (rt *Router) registerRoutes(mux *http.ServeMux, reg *apps.Registry) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("router: app routes: %v", r)
		}
	}()
	stub := objectclient.New(rt.members.Placement, rt.conn)
	for _, route := range reg.Routes() {
		mux.Handle(route.Pattern, route.Handler(stub))
	}
	return nil
}
