// Package metric holds what the processes' Prometheus metrics share: how
// a counter or a latency histogram is made, and the latency buckets.
package metric

import "github.com/prometheus/client_golang/prometheus"

// LatencyBuckets span 100 µs to about 1.6 s: an fsync on a fast disk to a
// commit across an election.
var LatencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 15)

// Counter makes an unregistered counter.
func Counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

// Latency makes an unregistered histogram of seconds over LatencyBuckets.
func Latency(name, help string) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: LatencyBuckets})
}
