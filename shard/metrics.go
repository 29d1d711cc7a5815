package shard

import (
	"github.com/prometheus/client_golang/prometheus"

	"hellochat/metric"
)

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

// NewMetrics makes the host's metrics, unregistered.
func NewMetrics() *Metrics {
	return &Metrics{
		LeaderChanges:   metric.Counter("hellochat_raft_leader_changes_total", "Times a shard got a new leader, as this node saw it (the first leader a replica learns of does not count)."),
		Proposals:       metric.Counter("hellochat_raft_proposals_total", "Batches rooms on this node proposed (those refused as not leader count as failed too)."),
		ProposalsFailed: metric.Counter("hellochat_raft_proposals_failed_total", "Proposals that did not commit here (leadership lost, or refused as not leader); their senders resend."),
		CommitSeconds:   metric.Latency("hellochat_raft_commit_seconds", "From proposing a batch to applying it committed, on the leader."),
		ApplySeconds:    metric.Latency("hellochat_raft_apply_seconds", "Applying one round's committed entries of every shard (one storage batch)."),
		SyncSeconds:     metric.Latency("hellochat_raft_log_sync_seconds", "Writing one round's Raft log entries and state with fsync."),
		SnapshotsSent:   metric.Counter("hellochat_raft_snapshots_sent_total", "Shard snapshots streamed to other replicas."),
		SnapshotSent:    metric.Counter("hellochat_raft_snapshot_sent_bytes_total", "Bytes of shard snapshots streamed to other replicas."),
		SnapshotRecv:    metric.Counter("hellochat_raft_snapshot_received_bytes_total", "Bytes of shard snapshots received from other replicas."),
	}
}

// Collectors lists the metrics, to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.LeaderChanges, m.Proposals, m.ProposalsFailed, m.CommitSeconds,
		m.ApplySeconds, m.SyncSeconds, m.SnapshotsSent, m.SnapshotSent, m.SnapshotRecv}
}
