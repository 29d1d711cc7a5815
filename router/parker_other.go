//go:build !linux

package router

import "errors"

// parker is Linux only (epoll); elsewhere an idle session's reader blocks
// in its read, as it does when the parker cannot watch a socket.
type parker struct{}

func newParker() (*parker, error) { return nil, nil }

func (p *parker) park(c *browserConn, key uint64, ready func()) error {
	return errors.New("router: parking needs epoll")
}
func (p *parker) unpark(key uint64) {}
func (p *parker) parked() int       { return 0 }
func (p *parker) close()            {}
