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

// Options are the built-in apps' settings.
type Options struct {
	Chat chat.Options
}

// DefaultOptions are the apps' defaults.
func DefaultOptions() Options { return Options{Chat: chat.DefaultOptions()} }

// Registry returns the registry of every built-in app. Only routers use
// the options: nodes run the classes, which have none.
func Registry(o Options) *apps.Registry {
	r, err := apps.NewRegistry(counter.App(), reminder.App(), hello.App(), chat.App(o.Chat))
	if err != nil {
		panic(err) // the built-in apps are fixed: a bad one fails every test
	}
	return r
}
