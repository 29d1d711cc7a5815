package objectclient

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Pool keeps one client connection per node address, for a Client that
// has no connections of its own to share (an object node's).
type Pool struct {
	creds  credentials.TransportCredentials
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// NewPool returns a Pool dialling with creds (mutual TLS).
func NewPool(creds credentials.TransportCredentials) *Pool {
	return &Pool{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

// Conn is the connection to addr, made on first use.
func (p *Pool) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("objectclient: connect to %s: pool closed", addr)
	}
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds),
		// Keepalive notices a node that stopped answering (paused or cut
		// off), so a call moves on to another replica.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 2 * time.Second, Timeout: time.Second, PermitWithoutStream: true}))
	if err != nil {
		return nil, fmt.Errorf("objectclient: connect to %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// Close closes every connection; later Conns fail.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for addr, c := range p.conns {
		c.Close()
		delete(p.conns, addr)
	}
}
