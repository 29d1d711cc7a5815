package router

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// parker keeps idle browser sockets in an epoll set of its own, so that a
// session with nothing to read has no goroutine: a goroutine blocked in a
// read keeps a 4 KiB stack that the runtime never shrinks (see
// docs/profiles.md), which is most of what an idle connection costs. When a
// parked socket becomes readable, or is hung up, the parker starts the
// session's reader again.
//
// The runtime's own poller still owns the sockets; this set only watches
// them, one shot at a time (EPOLLONESHOT), keyed by session id so that an
// event for a socket closed meanwhile finds nobody.
type parker struct {
	set *os.File // the epoll set, itself watched by the runtime's poller
	raw syscall.RawConn

	mu    sync.Mutex
	ready map[uint64]func() // parked sessions by id

	done chan struct{}
}

func newParker() (*parker, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("router: creating the idle sockets' epoll set: %w", err)
	}
	// Non-blocking, the set is itself pollable: the runtime's poller wakes
	// run when it has events, so no thread sits blocked in epoll_wait and a
	// wake-up costs what any socket's does.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("router: idle sockets' epoll set: %w", err)
	}
	p := &parker{set: os.NewFile(uintptr(epfd), "idle-sockets"), ready: map[uint64]func(){}, done: make(chan struct{})}
	if p.raw, err = p.set.SyscallConn(); err != nil {
		p.set.Close()
		return nil, fmt.Errorf("router: idle sockets' epoll set: %w", err)
	}
	go p.run()
	return p, nil
}

// park watches c until it has something to read, then calls ready in a
// goroutine of its own, once. The caller holds c.parkMu.
func (p *parker) park(c *browserConn, key uint64, ready func()) error {
	if c.raw == nil {
		return errors.New("router: socket cannot be watched")
	}
	p.mu.Lock()
	p.ready[key] = ready
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
	var err error
	cerr := c.raw.Control(func(fd uintptr) {
		// A socket watched before stays in the set, disarmed by its
		// last event, and is re-armed; a new one is added.
		op := syscall.EPOLL_CTL_ADD
		if c.watched {
			op = syscall.EPOLL_CTL_MOD
		}
		cerr := p.raw.Control(func(set uintptr) {
			err = syscall.EpollCtl(int(set), op, int(fd), &ev)
		})
		if err == nil {
			err = cerr
		}
	})
	if err == nil {
		err = cerr // the socket is closed
	}
	if err != nil {
		p.unpark(key)
		return fmt.Errorf("router: parking an idle socket: %w", err)
	}
	c.watched = true
	return nil
}

// unpark forgets a parked session; its ready will not be called unless
// the parker already took its event.
func (p *parker) unpark(key uint64) {
	p.mu.Lock()
	delete(p.ready, key)
	p.mu.Unlock()
}

// parked is how many sessions wait in the set.
func (p *parker) parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready)
}

func (p *parker) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	// The callback takes what the set holds and asks to wait for more;
	// Read returns only when the set is closed.
	p.raw.Read(func(set uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(set), events, 0)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil || n <= 0 {
				return false
			}
			for _, ev := range events[:n] {
				key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				p.mu.Lock()
				ready := p.ready[key]
				delete(p.ready, key)
				p.mu.Unlock()
				if ready != nil {
					go ready()
				}
			}
			if n < len(events) {
				return false
			}
		}
	})
}

// close stops the parker. Sessions still parked are not called again.
func (p *parker) close() {
	p.set.Close()
	<-p.done
}
