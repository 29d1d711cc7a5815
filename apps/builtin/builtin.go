// Package builtin is the registry of the apps both binaries run: object
// nodes host their classes, routers serve their routes.
package builtin

import (
	"hellochat/apps"
	"hellochat/apps/chat"
	"hellochat/apps/counter"
	"hellochat/apps/hello"
	"hellochat/apps/reminder"
)

// Registry returns the registry of every built-in app.
func Registry() *apps.Registry {
	r, err := apps.NewRegistry(counter.App(), reminder.App(), hello.App(), chat.App())
	if err != nil {
		panic(err) // the built-in apps are fixed: a bad one fails every test
	}
	return r
}
