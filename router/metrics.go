package router

import (
	"slices"

	"hellochat/metric"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"hellochat/limits"
)

// Refusal reasons beyond the error codes browsers are sent (limits.Code*).
const (
	reasonMaxConns        = "max_conns"
	reasonMaxConnsPerAddr = "max_conns_per_addr"
	reasonFlood           = "flood"
	reasonSlowConsumer    = "slow_consumer"
	reasonQueuedPerAddr   = "queued_bytes_per_addr"
	reasonQueuedBudget    = "queued_bytes_budget"
	reasonOther           = "other"
)

// refusalReasons is every value of the refused counter's reason label:
// a fixed set, so a node's odd code cannot grow it.
var refusalReasons = append(slices.Clone(limits.Codes),
	reasonMaxConns, reasonMaxConnsPerAddr, reasonFlood, reasonSlowConsumer,
	reasonQueuedPerAddr, reasonQueuedBudget, reasonOther)

// metrics are the router's Prometheus metrics, on a registry of its own
// (several routers may share a test process).
type metrics struct {
	reg        *prometheus.Registry
	received   prometheus.Counter
	acked      prometheus.Counter
	delivered  prometheus.Counter
	refused    *prometheus.CounterVec
	resent     prometheus.Counter
	reconnects prometheus.Counter
}

func newMetrics(rt *Router) *metrics {
	m := &metrics{
		reg:       prometheus.NewRegistry(),
		received:  metric.Counter("hellochat_router_messages_received_total", "Chat messages browsers sent that passed the router's checks and went to their room."),
		acked:     metric.Counter("hellochat_router_messages_committed_total", "Chat messages their room acknowledged as committed (fsync'd on a majority)."),
		delivered: metric.Counter("hellochat_router_messages_delivered_total", "Chat messages queued to browsers, one per browser shown it (live or catching up)."),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hellochat_router_refused_total",
			Help: "Frames, messages and connections refused, by reason (error code sent, or the limit hit)."}, []string{"reason"}),
		resent:     metric.Counter("hellochat_router_relay_resends_total", "Unacknowledged messages written again to a room's new stream after a failover or redirect."),
		reconnects: metric.Counter("hellochat_router_relay_reconnects_total", "Room streams opened again after one failed or was redirected."),
	}
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r) // every reason shows, at 0
	}
	m.reg.MustRegister(m.received, m.acked, m.delivered, m.refused, m.resent, m.reconnects, statsCollector{rt},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// refuse counts a refusal; reasons outside the known set count as other.
func (m *metrics) refuse(reason string) {
	if !slices.Contains(refusalReasons, reason) {
		reason = reasonOther
	}
	m.refused.WithLabelValues(reason).Inc()
}

// refuse tells a browser why something it sent was refused, and counts
// it.
func (rl *relay) refuse(s *session, code string, frame []byte) {
	rl.rt.metrics.refuse(code)
	s.enqueue(frame)
}

// statsCollector reports the router's gauges from one Stats call per
// scrape, so they are read together.
type statsCollector struct{ rt *Router }

var (
	descSessions = prometheus.NewDesc("hellochat_router_sessions", "Browsers connected.", nil, nil)
	descParked   = prometheus.NewDesc("hellochat_router_parked_sessions", "Connected browsers idle with no goroutine (parked in epoll).", nil, nil)
	descRooms    = prometheus.NewDesc("hellochat_router_active_rooms", "Rooms with a relay on this router (some browser here, or lingering).", nil, nil)
	descQueued   = prometheus.NewDesc("hellochat_router_queued_bytes", "Bytes waiting to be written to browsers, counted against --queued-bytes-budget.", nil, nil)
)

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessions
	ch <- descParked
	ch <- descRooms
	ch <- descQueued
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.rt.Stats()
	for d, v := range map[*prometheus.Desc]int{descSessions: st.Sessions, descParked: st.Parked, descRooms: st.Relays, descQueued: st.QueuedBytes} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
}
