package objectnode

import (
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The admin listener's HTTP bounds: it serves probes, scrapes and
// profiles, never browsers.
const (
	adminReadHeaderTimeout = 10 * time.Second
	adminIdleTimeout       = 60 * time.Second
)

// readiness says why the node cannot take traffic yet, or nil: it has joined
// a formed cluster (its shards run) and is neither stopping nor failed.
func (n *Node) readiness() error {
	select {
	case <-n.fatal:
		return errors.New("stopping: the node cannot go on")
	case <-n.stopping:
		return errors.New("shutting down")
	default:
	}
	if n.host.Load() == nil {
		return errors.New("waiting for the cluster to form or admit this node")
	}
	if n.leaving() {
		return errors.New("decommissioning: moving its replicas away")
	}
	return nil
}

// serveAdmin serves the operator's endpoints on lis: /livez (the process
// answers), /readyz and /healthz (it is part of a running cluster),
// /metrics (Prometheus), and with Pprof Go's profiles.
func (n *Node) serveAdmin(lis net.Listener) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	readyz := func(w http.ResponseWriter, _ *http.Request) {
		if err := n.readiness(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		led := 0
		if h := n.host.Load(); h != nil {
			led = bits.OnesCount64(h.Leads())
		}
		fmt.Fprintf(w, "ok: %d shard replicas, leading %d\n", n.Replicas(), led)
	}
	mux.HandleFunc("/readyz", readyz)
	mux.HandleFunc("/healthz", readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	if n.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: adminReadHeaderTimeout, IdleTimeout: adminIdleTimeout}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "err", err)
		}
	}()
	return srv
}

// healthService is gRPC's standard health service, for members (its
// callers need a cluster certificate like every other caller): the
// empty service name and "hellochat.Rooms" report SERVING while the node
// is ready.
type healthService struct {
	*health.Server
}

// roomsService is the health service's name for the Rooms service.
const roomsService = "hellochat.Rooms"

func newHealthService() healthService {
	h := healthService{health.NewServer()}
	h.set(false)
	return h
}

func (h healthService) set(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.SetServingStatus("", st)
	h.SetServingStatus(roomsService, st)
}
