package router

import (
	"slices"

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
	reg     *prometheus.Registry
	refused *prometheus.CounterVec
}

func newMetrics(rt *Router) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hellochat_router_refused_total",
			Help: "Frames, messages and connections refused, by reason (error code sent, or the limit hit)."}, []string{"reason"}),
	}
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r) // every reason shows, at 0
	}
	m.reg.MustRegister(m.refused, statsCollector{rt},
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

// statsCollector reports the router's gauges from one Stats call per
// scrape, so they are read together.
type statsCollector struct{ rt *Router }

var (
	descSessions = prometheus.NewDesc("hellochat_router_sessions", "Browsers connected.", nil, nil)
	descQueued   = prometheus.NewDesc("hellochat_router_queued_bytes", "Bytes waiting to be written to browsers, counted against --queued-bytes-budget.", nil, nil)
	descHeld     = prometheus.NewDesc("hellochat_router_held_messages_total", "Browsers' messages held because every browser of their object had HeldQueueBytes waiting.", nil, nil)
)

func (statsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSessions
	ch <- descQueued
	ch <- descHeld
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.rt.Stats()
	for d, v := range map[*prometheus.Desc]int{descSessions: st.Sessions, descQueued: st.QueuedBytes} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	ch <- prometheus.MustNewConstMetric(descHeld, prometheus.CounterValue, float64(st.Held))
}
