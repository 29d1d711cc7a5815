package shard

import "github.com/prometheus/client_golang/prometheus"

// Metrics are what the host counts and times, for Prometheus. The caller
// registers them (Collectors) on its registry; a host without Metrics
// makes its own, registered nowhere.
type Metrics struct {
	LeaderChanges   prometheus.Counter
	Proposals       prometheus.Counter
	ProposalsFailed prometheus.Counter
	CommitSeconds   prometheus.Histogram
	ApplySeconds    prometheus.Histogram
	SyncSeconds     prometheus.Histogram
	SnapshotsSent   prometheus.Counter
	SnapshotSent    prometheus.Counter // bytes
	SnapshotRecv    prometheus.Counter // bytes
}

// latencyBuckets span 100 µs to about 1.6 s: an fsync on a fast disk to
// a commit across an election.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 15)

// NewMetrics makes the host's metrics, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "hellochat_raft_leader_changes_total",
			Help: "Times a shard's leader changed as this node saw it (it took or lost the lead, or learned of another)."}),
		Proposals: prometheus.NewCounter(prometheus.CounterOpts{Name: "hellochat_raft_proposals_total",
			Help: "Batches this node proposed as a shard's leader."}),
		ProposalsFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "hellochat_raft_proposals_failed_total",
			Help: "Proposals that did not commit here (leadership lost, or refused as not leader); their senders resend."}),
		CommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hellochat_raft_commit_seconds",
			Help: "From proposing a batch to applying it committed, on the leader.", Buckets: latencyBuckets}),
		ApplySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hellochat_raft_apply_seconds",
			Help: "Applying one round's committed entries of every shard (one storage batch).", Buckets: latencyBuckets}),
		SyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hellochat_raft_log_sync_seconds",
			Help: "Writing one round's Raft log entries and state with fsync.", Buckets: latencyBuckets}),
		SnapshotsSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "hellochat_raft_snapshots_sent_total",
			Help: "Shard snapshots streamed to other replicas."}),
		SnapshotSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "hellochat_raft_snapshot_sent_bytes_total",
			Help: "Bytes of shard snapshots streamed to other replicas."}),
		SnapshotRecv: prometheus.NewCounter(prometheus.CounterOpts{Name: "hellochat_raft_snapshot_received_bytes_total",
			Help: "Bytes of shard snapshots received from other replicas."}),
	}
}

// Collectors lists the metrics, to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.LeaderChanges, m.Proposals, m.ProposalsFailed, m.CommitSeconds,
		m.ApplySeconds, m.SyncSeconds, m.SnapshotsSent, m.SnapshotSent, m.SnapshotRecv}
}
