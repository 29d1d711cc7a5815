package objectnode

import (
	"math/bits"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"hellochat/durable"
	"hellochat/shard"
)

// metrics are the node's Prometheus metrics, on the node's own registry
// (several nodes may share a test process).
type metrics struct {
	raft *shard.Metrics
	// objectEvents and objectFailures count the durable objects' events
	// by kind (indexed by durable.EventKind), resolved once: an event
	// costs no label lookup.
	objectEvents, objectFailures [durable.EventAlarm + 1]prometheus.Counter
}

// observeEvent is the actors' durable.Config.Observe.
func (m *metrics) observeEvent(kind durable.EventKind, err error) {
	if m == nil || int(kind) >= len(m.objectEvents) || m.objectEvents[kind] == nil {
		return
	}
	m.objectEvents[kind].Inc()
	if err != nil {
		m.objectFailures[kind].Inc()
	}
}

// registerMetrics makes the node's metrics and registers them, with the
// store's, the Raft host's, Go's and the process's, on n.reg.
func (n *Node) registerMetrics() {
	m := &metrics{raft: shard.NewMetrics()}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hellochat_node_object_events_total",
		Help: "Durable objects' events run on this node, by kind, counted once their outcome is out."}, []string{"kind"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hellochat_node_object_event_failures_total",
		Help: "Durable objects' events whose outcome was an error (the handler's, or a commit that failed), by kind."}, []string{"kind"})
	for _, k := range durable.EventKinds {
		m.objectEvents[k], m.objectFailures[k] = events.WithLabelValues(k.String()), failures.WithLabelValues(k.String())
	}
	n.metrics = m
	host := func(f func(h *shard.Host) float64) func() float64 {
		return func() float64 {
			if h := n.host.Load(); h != nil {
				return f(h)
			}
			return 0
		}
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	n.reg.MustRegister(events, failures,
		gauge("hellochat_node_active_objects", "Durable objects with an actor on this node (started or starting).",
			func() float64 { return float64(n.objects.count()) }),
		counter("hellochat_node_object_commits_total", "Durable objects' batches committed (fsync'd on a majority) by this node.",
			func() float64 { return float64(n.objectCommits.Load()) }),
		counter("hellochat_node_gateway_holds_total", "Times a router's streamed socket messages were held because the node's queue for it was crowded.",
			func() float64 { return float64(n.gateways.holds()) }),
		counter("hellochat_node_refused_peers_total", "Replication streams refused: the certificate named another node than the messages.",
			func() float64 { return float64(n.raftSrv.Refused()) }),
		counter("hellochat_raft_refused_messages_total", "Peers' Raft messages dropped: misattributed or implausible.",
			host(func(h *shard.Host) float64 { return float64(h.RefusedMessages()) })),
		gauge("hellochat_raft_replicas", "Shard replicas this node holds.",
			host(func(h *shard.Host) float64 { return float64(h.Replicas()) })),
		gauge("hellochat_raft_shards_led", "Shards this node leads and serves.",
			host(func(h *shard.Host) float64 { return float64(bits.OnesCount64(h.Leads())) })),
		gauge("hellochat_raft_proposal_queue", "Proposals waiting for the Raft loop.",
			host(func(h *shard.Host) float64 { p, _ := h.Queued(); return float64(p) })),
		gauge("hellochat_raft_inbox_queue", "Peers' Raft batches waiting for the Raft loop.",
			host(func(h *shard.Host) float64 { _, b := h.Queued(); return float64(b) })),
		n.store.Collector(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	n.reg.MustRegister(m.raft.Collectors()...)
}
