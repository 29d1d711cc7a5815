package router

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// Limits on what one browser, or one address, may take of a router. Each
// is a default of a Config field and a flag; docs/protocol.md lists them.
const (
	// DefaultMaxConns bounds the browsers one router serves at once; an
	// upgrade past it is answered 503 before any WebSocket is made.
	DefaultMaxConns = 50000
	// DefaultMaxConnsPerAddr bounds the browsers from one client address
	// (behind a proxy that hides addresses, raise it or set 0: no bound);
	// an upgrade past it is answered 429.
	DefaultMaxConnsPerAddr = 512
	// DefaultFrameRate and DefaultFrameBurst bound every frame a browser
	// sends, of any type (an app may bound its messages further): past them
	// a frame is dropped, and the browser told at most once a second.
	DefaultFrameRate  = 50
	DefaultFrameBurst = 100
	// FloodRefusals frames refused within FloodWindow mark a flood: the
	// browser is disconnected (1008), not just throttled.
	FloodRefusals = 500
	FloodWindow   = 10 * time.Second
	// DefaultFrameReadTimeout bounds reading one frame once its first
	// bytes have arrived: a client trickling a frame byte by byte is
	// disconnected.
	DefaultFrameReadTimeout = 30 * time.Second
	// DefaultDeadBrowserAfter bounds how long a browser that vanished
	// without closing (its machine off, its network gone) stays in its
	// room. The kernel finds it, with no goroutine or timer of ours per
	// connection: on a quiet connection by TCP keepalive (a probe after
	// half of it, then keepAliveProbes probes), and on one the router is
	// writing to by TCP_USER_TIMEOUT (data unacknowledged that long), since
	// keepalive stays silent while data waits. Its socket then ends, and
	// its object is told.
	DefaultDeadBrowserAfter = 30 * time.Second
	keepAliveProbes         = 3
	// MinDeadBrowserAfter and MaxDeadBrowserAfter bound the setting: the
	// kernel takes keepalive probes at most once a second, and an idle time
	// of at most 32767 s.
	MinDeadBrowserAfter = 3 * time.Second
	MaxDeadBrowserAfter = 12 * time.Hour
	// HTTP server bounds for requests that are not WebSockets.
	IdleTimeout    = 60 * time.Second
	ReadTimeout    = 10 * time.Second
	MaxHeaderBytes = 16 << 10
)

// browserKeepAlive is the TCP keepalive that finds a quiet browser dead
// within after.
func browserKeepAlive(after time.Duration) net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: after / 2,
		Interval: after / 2 / keepAliveProbes, Count: keepAliveProbes}
}

// bucket is a token bucket: rate per second, up to burst at once.
type bucket struct {
	tokens float64
	last   time.Time
}

func newBucket(burst int) bucket { return bucket{tokens: float64(burst)} }

func (b *bucket) take(rate float64, burst int) bool {
	if rate <= 0 {
		return true
	}
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*rate, float64(burst))
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// flood counts a browser's refused frames over a window.
type flood struct {
	since   time.Time
	refused int
	told    time.Time // when the browser was last told it is throttled
}

// refuse records a refused frame. It reports whether to tell the browser
// (at most once a second) and whether the refusals make a flood.
func (f *flood) refuse() (tell, isFlood bool) {
	now := time.Now()
	if now.Sub(f.since) > FloodWindow {
		f.since, f.refused = now, 0
	}
	f.refused++
	tell = now.Sub(f.told) >= time.Second
	if tell {
		f.told = now
	}
	return tell, f.refused >= FloodRefusals
}

// clientAddr is the address a browser's connection limits count against.
func clientAddr(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	return host
}

// admit counts a new browser connection from addr and returns its
// address's state, or answers the request with the reason it is refused
// and reports false.
func (rt *Router) admit(w http.ResponseWriter, addr string) (*addrState, bool) {
	rt.mu.Lock()
	total, fromAddr := rt.browsers, 0
	if a := rt.connsByAddr[addr]; a != nil {
		fromAddr = a.conns
	}
	refuse := func(reason string, code int, msg string) (*addrState, bool) {
		rt.mu.Unlock()
		rt.refusedConns.Add(1)
		rt.metrics.refuse(reason)
		http.Error(w, msg, code)
		return nil, false
	}
	switch {
	case rt.cfg.MaxConns > 0 && total >= rt.cfg.MaxConns:
		return refuse(reasonMaxConns, http.StatusServiceUnavailable,
			fmt.Sprintf("router full: %d browsers connected (max %d); try another router or later", total, rt.cfg.MaxConns))
	case rt.cfg.MaxConnsPerAddr > 0 && fromAddr >= rt.cfg.MaxConnsPerAddr:
		return refuse(reasonMaxConnsPerAddr, http.StatusTooManyRequests,
			fmt.Sprintf("too many connections from %s (max %d)", addr, rt.cfg.MaxConnsPerAddr))
	}
	rt.browsers++
	a := rt.connsByAddr[addr]
	if a == nil {
		a = &addrState{queued: queueBudget{limit: rt.cfg.QueuedBytesPerAddr}}
		rt.connsByAddr[addr] = a
	}
	a.conns++
	rt.mu.Unlock()
	return a, true
}

// release uncounts a browser connection admit counted.
func (rt *Router) release(addr string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.browsers--
	// Its sockets gave their queued bytes back when they ended, so an
	// address forgotten here holds none.
	if a := rt.connsByAddr[addr]; a != nil {
		if a.conns--; a.conns <= 0 {
			delete(rt.connsByAddr, addr)
		}
	}
}
