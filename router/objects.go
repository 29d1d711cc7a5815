package router

import (
	"fmt"
	"net/http"

	"hellochat/apps"
)

// registerRoutes serves the apps' routes on mux, reaching objects through
// the gateway (an objectclient over the router's node connections, which
// also hands WebSocket upgrades to objects); a pattern that conflicts
// with another is an error, not a panic.
func (rt *Router) registerRoutes(mux *http.ServeMux, reg *apps.Registry) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("router: app routes: %v", r)
		}
	}()
	for _, route := range reg.Routes() {
		mux.Handle(route.Pattern, route.Handler(rt.gateway))
	}
	return nil
}
