// Package router is the stateless edge: it serves the apps' Workers, holds
// the browser WebSockets their objects accept, streams the browsers'
// messages to the node that leads each object's shard over one gRPC stream
// per node, and keeps browsers connected while objects move or nodes
// restart.
package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"hellochat/apps"
	"hellochat/cluster"
	"hellochat/durable"
	"hellochat/objectclient"
	"hellochat/security"
	"hellochat/web"
)

// Config configures a router. Every address is host:port.
type Config struct {
	ID              string
	HTTPListen      string
	HTTPAdvertise   string
	GossipListen    string
	GossipAdvertise string
	Seeds           []string
	Timings         cluster.Timings
	// Security is the router's certificate, the CA it trusts and the
	// gossip key (security.Dev, security.Load), or security.Insecure().
	Security *security.Settings
	// FrameRate and FrameBurst bound each browser's frames of any type per
	// second (DefaultFrameRate, DefaultFrameBurst; rate 0: unbounded).
	FrameRate  float64
	FrameBurst int
	// MaxConns and MaxConnsPerAddr bound the browsers connected at once, in
	// all and from one client address (DefaultMaxConns,
	// DefaultMaxConnsPerAddr; 0: unbounded).
	MaxConns, MaxConnsPerAddr int
	// QueuedBytesBudget bounds the bytes waiting to be written to all
	// browsers together, and QueuedBytesPerAddr those waiting for the
	// browsers of one client address (DefaultQueuedBytesBudget,
	// DefaultQueuedBytesPerAddr; 0: unbounded). A browser whose frame does
	// not fit is closed as a slow consumer (see queuebudget.go).
	QueuedBytesBudget, QueuedBytesPerAddr int64
	// FrameReadTimeout bounds reading one frame once its first bytes came
	// (DefaultFrameReadTimeout).
	FrameReadTimeout time.Duration
	// DeadBrowserAfter bounds how long a browser gone without closing
	// stays connected (DefaultDeadBrowserAfter).
	DeadBrowserAfter time.Duration
	// AllowAnyOrigin accepts WebSockets from pages of other origins.
	AllowAnyOrigin bool
	// Apps are the apps whose HTTP routes the router serves, calling their
	// durable objects on the object nodes (nil: none; the binary passes
	// apps/builtin, whose chat serves /ws, so this package depends on no
	// app).
	Apps *apps.Registry
	// RoomClass is the class whose objects /api/cluster?rooms= names by
	// name (the binary's: the chat's rooms); empty: rooms are not looked up.
	RoomClass string
	// AdminListen is where the operator's endpoints are served:
	// /api/cluster, a detailed /healthz and, with Pprof, Go's profiles under
	// /debug/pprof/. Keep it on loopback or a private network; empty serves
	// none of them. The public address serves only the page, /ws, /qr.png,
	// a /healthz that says ok or not, and the apps' routes (Apps).
	AdminListen string
	Pprof       bool
	Logger      *slog.Logger
	LogOutput   io.Writer
}

// DefaultConfig is one router on loopback.
func DefaultConfig() Config {
	return Config{
		ID:                 "router1",
		HTTPListen:         "127.0.0.1:8080",
		AdminListen:        "127.0.0.1:8081",
		GossipListen:       "127.0.0.1:7100",
		Timings:            cluster.DefaultTimings(),
		FrameRate:          DefaultFrameRate,
		FrameBurst:         DefaultFrameBurst,
		MaxConns:           DefaultMaxConns,
		MaxConnsPerAddr:    DefaultMaxConnsPerAddr,
		QueuedBytesBudget:  DefaultQueuedBytesBudget,
		QueuedBytesPerAddr: DefaultQueuedBytesPerAddr,
		FrameReadTimeout:   DefaultFrameReadTimeout,
		DeadBrowserAfter:   DefaultDeadBrowserAfter,
	}
}

// Router is one router process.
type Router struct {
	cfg      Config
	log      *slog.Logger
	members  *cluster.Membership
	instance string // unique per process start; names this router to nodes
	http     *http.Server
	admin    *http.Server // nil without AdminListen
	lis      net.Listener
	adminLis net.Listener // nil without AdminListen
	metrics  *metrics
	viewers  atomic.Int32 // cluster view event streams open
	// viewersStop is closed when the admin server shuts down.
	viewersStop chan struct{}

	ctx    context.Context // canceled at shutdown
	cancel context.CancelFunc

	refused      atomic.Uint64 // browsers' messages refused as overloaded (apps.SocketPolicy.Overloaded)
	held         atomic.Uint64 // browsers' messages held while all their object's browsers were behind (objectFlow)
	refusedConns atomic.Uint64 // upgrades refused by MaxConns or MaxConnsPerAddr

	mu          sync.Mutex
	browsers    int                   // browsers admitted and not yet released; guarded by mu
	connsByAddr map[string]*addrState // the same by client address; guarded by mu
	queued      queueBudget           // bytes queued for all browsers (QueuedBytesBudget)
	closing     bool                  // guarded by mu

	connsMu   sync.Mutex
	nodeConns map[string]*grpc.ClientConn // by node gRPC address

	gateway *gateway           // apps' objects' WebSockets (gateway.go)
	rooms   *durable.Namespace // RoomClass's; nil without one
}

// Start listens, joins the cluster and serves.
func Start(cfg Config) (*Router, error) {
	if cfg.ID == "" {
		return nil, errors.New("router: id is empty")
	}
	if cfg.Security == nil {
		return nil, errors.New("router: no security settings (certificates, or security.Insecure())")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Apps == nil {
		cfg.Apps, _ = apps.NewRegistry() // none: cannot fail
	}
	if cfg.FrameBurst < 1 {
		cfg.FrameBurst = 1
	}
	if cfg.FrameReadTimeout <= 0 {
		cfg.FrameReadTimeout = DefaultFrameReadTimeout
	}
	if cfg.DeadBrowserAfter <= 0 {
		cfg.DeadBrowserAfter = DefaultDeadBrowserAfter
	}
	if cfg.DeadBrowserAfter < MinDeadBrowserAfter || cfg.DeadBrowserAfter > MaxDeadBrowserAfter {
		return nil, fmt.Errorf("router: dead browser timeout %v: must be between %v and %v",
			cfg.DeadBrowserAfter, MinDeadBrowserAfter, MaxDeadBrowserAfter)
	}
	if cfg.QueuedBytesBudget < 0 || cfg.QueuedBytesPerAddr < 0 {
		return nil, fmt.Errorf("router: queued bytes budget %d, per address %d: must not be negative (0: unbounded)",
			cfg.QueuedBytesBudget, cfg.QueuedBytesPerAddr)
	}
	if cfg.QueuedBytesBudget > 0 && cfg.QueuedBytesPerAddr > cfg.QueuedBytesBudget {
		return nil, fmt.Errorf("router: queued bytes per address %d is more than the router's budget %d: it is a share of it",
			cfg.QueuedBytesPerAddr, cfg.QueuedBytesBudget)
	}
	var rooms *durable.Namespace
	if cfg.RoomClass != "" {
		var err error
		if rooms, err = durable.NewNamespace(cfg.RoomClass); err != nil {
			return nil, fmt.Errorf("router: room class: %w", err)
		}
	}
	nonce := make([]byte, 6)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("router: make instance id: %w", err)
	}
	// The kernel finds browsers that vanished without closing (see
	// DefaultDeadBrowserAfter); accepted sockets inherit the user timeout.
	lc := net.ListenConfig{KeepAliveConfig: browserKeepAlive(cfg.DeadBrowserAfter),
		Control: func(_, _ string, c syscall.RawConn) error { return setUserTimeout(c, cfg.DeadBrowserAfter) }}
	lis, err := lc.Listen(context.Background(), "tcp", cfg.HTTPListen)
	if err != nil {
		return nil, fmt.Errorf("router: listen for HTTP on %s: %w", cfg.HTTPListen, err)
	}
	var adminLis net.Listener
	if cfg.AdminListen != "" {
		if adminLis, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			lis.Close()
			return nil, fmt.Errorf("router: listen for the admin endpoints on %s: %w", cfg.AdminListen, err)
		}
	}
	closeEarly := func() {
		lis.Close()
		if adminLis != nil {
			adminLis.Close()
		}
	}
	rt := &Router{
		cfg:         cfg,
		log:         cfg.Logger,
		instance:    cfg.ID + "." + hex.EncodeToString(nonce),
		lis:         lis,
		adminLis:    adminLis,
		rooms:       rooms,
		connsByAddr: map[string]*addrState{},
		queued:      queueBudget{limit: cfg.QueuedBytesBudget},
		nodeConns:   map[string]*grpc.ClientConn{},
	}
	rt.ctx, rt.cancel = context.WithCancel(context.Background())
	rt.metrics = newMetrics(rt)
	httpAddr := cfg.HTTPAdvertise
	if httpAddr == "" {
		httpAddr = lis.Addr().String()
	}
	members, err := cluster.Start(cluster.Config{
		Meta:      cluster.Meta{ID: cfg.ID, Role: cluster.RoleRouter, HTTP: httpAddr, Gossip: cfg.GossipAdvertise},
		Bind:      cfg.GossipListen,
		Advertise: cfg.GossipAdvertise,
		Seeds:     cfg.Seeds,
		Timings:   cfg.Timings,
		GossipKey: cfg.Security.GossipKey,
		Security:  cfg.Security,
		Logger:    cfg.Logger,
		LogOutput: cfg.LogOutput,
	})
	if err != nil {
		closeEarly()
		return nil, err
	}
	rt.members = members
	if rt.gateway, err = newGateway(rt, objectclient.New(members.Placement, rt.conn), hex.EncodeToString(nonce)); err != nil {
		members.Shutdown()
		closeEarly()
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", rt.handlePublicHealth)
	mux.HandleFunc("/qr.png", handleQR)
	mux.Handle("/", web.Handler())
	if err := rt.registerRoutes(mux, cfg.Apps); err != nil {
		rt.gateway.close(context.Background())
		members.Shutdown()
		closeEarly()
		return nil, err
	}
	rt.http = rt.serveHTTP(lis, mux, "HTTP")
	if adminLis != nil {
		admin := http.NewServeMux()
		admin.HandleFunc("/healthz", rt.handleHealth)
		admin.HandleFunc("/readyz", rt.handleHealth)
		admin.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		admin.Handle("/metrics", promhttp.HandlerFor(rt.metrics.reg, promhttp.HandlerOpts{}))
		admin.HandleFunc("/api/cluster", rt.handleCluster)
		admin.HandleFunc("/cluster", handleClusterPage)
		admin.HandleFunc("/cluster/events", rt.handleClusterEvents)
		if cfg.Pprof {
			admin.HandleFunc("/debug/pprof/", pprof.Index)
			admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
			admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		// Shutdown waits for handlers: the cluster view's streams end then.
		rt.viewersStop = make(chan struct{})
		rt.admin = rt.serveHTTP(adminLis, admin, "admin")
		rt.admin.RegisterOnShutdown(func() { close(rt.viewersStop) })
	}
	rt.log.Info("router started", "id", cfg.ID, "http", httpAddr, "admin", rt.AdminAddr(), "gossip", members.GossipAddr())
	return rt, nil
}

// serveHTTP runs an HTTP server on lis until Shutdown.
func (rt *Router) serveHTTP(lis net.Listener, h http.Handler, what string) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: ReadTimeout,
		IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rt.log.Error(what+" server stopped", "err", err)
		}
	}()
	return srv
}

// AdminAddr is where the admin endpoints are served ("" when nowhere).
func (rt *Router) AdminAddr() string {
	if rt.adminLis == nil {
		return ""
	}
	return rt.adminLis.Addr().String()
}

// isClosing reports whether Shutdown has begun.
func (rt *Router) isClosing() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.closing
}

// Addr is the HTTP address browsers use.
func (rt *Router) Addr() string { return rt.lis.Addr().String() }

// Members is the router's membership view.
func (rt *Router) Members() *cluster.Membership { return rt.members }

// Stats are the router's counters and gauges.
type Stats struct {
	Sessions     int    // browsers connected to objects' sockets
	Refused      uint64 // browsers' messages refused as overloaded
	Held         uint64 // browsers' messages held because every browser of their object was behind (HeldQueueBytes)
	RefusedConns uint64 // upgrades refused by MaxConns or MaxConnsPerAddr
	QueuedBytes  int    // bytes waiting to be written to browsers, all told (what QueuedBytesBudget counts)
}

// Stats reads the router's counters and gauges.
func (rt *Router) Stats() Stats {
	return Stats{Sessions: rt.gateway.count(), Refused: rt.refused.Load(), Held: rt.held.Load(), RefusedConns: rt.refusedConns.Load(), QueuedBytes: int(rt.queued.used.Load())}
}

// conn returns the shared client connection to a node.
func (rt *Router) conn(addr string) (*grpc.ClientConn, error) {
	rt.connsMu.Lock()
	defer rt.connsMu.Unlock()
	if c, ok := rt.nodeConns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(rt.cfg.Security.ClientCreds()),
		// Keepalive notices a node that stopped answering (paused or cut
		// off) even while its streams are idle.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 2 * time.Second, Timeout: time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpcConnectParams),
	)
	if err != nil {
		return nil, fmt.Errorf("router: connect to node %s: %w", addr, err)
	}
	rt.nodeConns[addr] = c
	return c, nil
}

// Shutdown closes every browser with 1001 (going away) so they reconnect to
// another router, lets their objects hear of it, and leaves the cluster. It
// is idempotent; ctx bounds the wait.
func (rt *Router) Shutdown(ctx context.Context) error {
	rt.mu.Lock()
	if rt.closing {
		rt.mu.Unlock()
		return nil
	}
	rt.closing = true
	rt.mu.Unlock()

	err := rt.http.Shutdown(ctx)
	if rt.admin != nil {
		rt.admin.Shutdown(ctx)
	}
	rt.gateway.close(ctx)
	rt.cancel()
	if lerr := rt.members.Leave(500 * time.Millisecond); lerr != nil {
		rt.log.Warn("leave cluster", "err", lerr)
	}
	rt.members.Shutdown()
	rt.connsMu.Lock()
	for _, c := range rt.nodeConns {
		c.Close()
	}
	rt.connsMu.Unlock()
	rt.log.Info("router stopped", "id", rt.cfg.ID)
	return err
}
