package objectnode

import (
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
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

// decommissionAllowed says whether this node may leave the ring now, as
// gRPC FailedPrecondition when it may not: the ring must keep at least the
// replication factor in nodes, or every shard runs on fewer replicas and
// one more failure stops those whose quorum it breaks. Nodes already
// leaving or left count as gone (they are out of the ring, whether or not
// they still run); a node down but not leaving still counts, since it
// keeps its place and its replicas. The check runs on the node itself, so
// no caller (script, CLI, failover tool) can skip it; force overrides it,
// loudly. A node already leaving is asked again harmlessly.
func (n *Node) decommissionAllowed(force bool) error {
	if n.leaving() {
		return nil
	}
	var stay, gone []string
	for _, m := range n.members.Placement().Nodes() {
		switch {
		case m.ID == n.cfg.ID:
		case m.Leaving:
			gone = append(gone, m.ID)
		default:
			stay = append(stay, m.ID)
		}
	}
	if len(stay) >= n.cfg.Replicas {
		return nil
	}
	why := fmt.Sprintf("decommissioning %s would leave %d node(s) in the ring (%s) for a replication factor of %d",
		n.cfg.ID, len(stay), listOrNone(stay), n.cfg.Replicas)
	if len(gone) > 0 {
		why += fmt.Sprintf("; leaving or left, counted as gone: %s", strings.Join(gone, ", "))
	}
	if force {
		n.log.Warn("FORCED decommission below the replication factor: shards will run on fewer replicas, and one more failure can stop them",
			"why", why)
		return nil
	}
	return status.Errorf(codes.FailedPrecondition,
		"refused: %s; one more failure would then stop shards. Add a node first, or force it (objectnode decommission --force)", why)
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

// serveAdmin serves the operator's endpoints on lis: /livez (the process
// answers), /readyz and /healthz (it is part of a running cluster),
// /metrics (Prometheus), and with Pprof Go's profiles and Pebble's own
// report of its LSM (/debug/pebble).
func (n *Node) serveAdmin(lis net.Listener) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	ready := func(w http.ResponseWriter, counts bool) {
		if err := n.readiness(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		led := 0
		if h := n.host.Load(); h != nil {
			led = bits.OnesCount64(h.Leads())
		}
		fmt.Fprintf(w, "ok: %d shard replicas, leading %d", n.Replicas(), led)
		if counts {
			alive, total := n.members.Placement().NodeCounts()
			fmt.Fprintf(w, "; %d of %d object nodes alive", alive, total)
		}
		fmt.Fprintln(w)
	}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { ready(w, false) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { ready(w, true) })
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	if n.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pebble", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, n.store.PebbleReport()) })
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
