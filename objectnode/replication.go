package objectnode

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	"hellochat/security"
	"hellochat/shard"
)

// verifyPeer checks that a replication stream comes from the node its
// messages name: a node's identity is its certificate.
func (n *Node) verifyPeer(ctx context.Context, fromNode string) error {
	id, err := n.cfg.Security.Authorize(ctx, security.RoleNode)
	if err != nil {
		n.log.Warn("refused a replication stream", "claims", fromNode, "err", err)
		return err
	}
	if !n.cfg.Security.Insecure && id.ID != fromNode {
		n.log.Warn("refused a replication stream", "claims", fromNode, "certificate", id.String())
		return status.Errorf(codes.PermissionDenied, "certificate names %s, messages claim %s", id, fromNode)
	}
	return nil
}

// startReplication starts the Raft groups once this node knows which
// cluster it is in. A node with a cluster id on disk loads its replicas. A
// fresh node joins a cluster that already exists (it holds no replica until
// leaders add it) or, when Expect nodes are known and none belongs to a
// cluster yet, forms one with them: each founding node bootstraps the
// groups the ring places on it.
func (n *Node) startReplication() {
	defer close(n.loopDone)
	bootstrap := false
	deciding := time.Now()
	// The grace a founder waits for its view can end without a change.
	grace := time.NewTimer(FounderGrace)
	defer grace.Stop()
	graceEnds := grace.C
	for n.identity().Cluster == "" {
		p := n.members.Placement()
		action, id := formStep(p.Nodes(), n.cfg.Expect, time.Since(deciding))
		switch action {
		case formFound:
			n.setIdentity(func(ident *identity) { ident.Cluster = id })
			bootstrap = true
			n.log.Info("forming a new cluster", "cluster", id, "nodes", len(p.Nodes()))
		case formJoin:
			n.setIdentity(func(ident *identity) { ident.Cluster = id })
			before := n.ringWithout(p)
			n.log.Info("joining cluster", "cluster", id,
				"moves", fmt.Sprintf("%d of %d shard replicas move to reach this node", before.Moved(p, n.cfg.Replicas), cluster.Partitions*n.cfg.Replicas))
		default:
			select {
			case <-n.members.Changed():
			case <-graceEnds:
				graceEnds = nil // a founder's grace ends once
			case <-n.stopping:
				return
			}
		}
	}
	ident := n.identity()
	n.members.SetCluster(ident.Cluster)
	h, err := shard.Start(shard.Config{
		Metrics:       n.metrics.raft,
		NodeID:        n.cfg.ID,
		Replica:       ident.Replica,
		Bootstrap:     bootstrap,
		Store:         n.store,
		Members:       n.members,
		Replicas:      n.cfg.Replicas,
		Tick:          n.cfg.RaftTick,
		ElectionTicks: n.cfg.ElectionTicks,
		SnapshotEvery: n.cfg.SnapshotEvery,
		TrailEntries:  n.cfg.TrailEntries,
		KeepEntries:   n.cfg.KeepEntries,
		MaxMoves:      n.cfg.MaxMoves,
		SnapshotRate:  n.cfg.SnapshotRate,
		Faults:        n.cfg.RaftFaults,
		Creds:         n.cfg.Security.ClientCreds(),
		OnFatal: func(err error) {
			n.fail(fmt.Errorf("this node's storage failed, so it stops and another replica takes over its shards: %w", err))
		},
		Logger:       n.log,
		OnLeadership: n.leadershipChanged,
		OnReplicas:   n.replicasChanged,
	})
	if err != nil {
		n.log.Error("cannot start replication", "err", err)
		return
	}
	n.host.Store(h)
	n.health.set(!n.leaving()) // as /readyz: a node being decommissioned is not ready
	n.raftSrv.SetHost(h)
	n.replicasChanged(h.Replicas())
	go n.watchRing(h)
}

// ringWithout is p's ring without this node, to count what joining moves.
func (n *Node) ringWithout(p *cluster.Placement) *cluster.Placement {
	var others []cluster.Meta
	for _, m := range p.Nodes() {
		if m.ID != n.cfg.ID {
			others = append(others, m)
		}
	}
	return cluster.NewPlacement(others)
}

// watchRing logs how many shard replicas each change of the ring moves,
// and ends a decommissioned node once it holds no replica.
func (n *Node) watchRing(h *shard.Host) {
	p := n.members.Placement()
	for {
		select {
		case <-n.members.Changed():
		case <-h.Done():
			return
		case <-n.stopping:
			return
		}
		next := n.members.Placement()
		if !sameRing(p, next) {
			n.log.Info("ring changed", "nodes", next.RingSize(),
				"moves", fmt.Sprintf("%d of %d shard replicas move", p.Moved(next, n.cfg.Replicas), cluster.Partitions*n.cfg.Replicas))
		}
		p = next
	}
}

func sameRing(a, b *cluster.Placement) bool {
	if a.RingSize() != b.RingSize() {
		return false
	}
	for s := 0; s < cluster.Partitions; s++ {
		x, _ := a.ShardOwner(s)
		y, _ := b.ShardOwner(s)
		if x.ID != y.ID {
			return false
		}
	}
	return true
}

// leadershipChanged runs on the Raft loop. A shard this node stopped
// serving has its objects retired at once (callers are redirected to the
// new leader); a shard it began serving is scanned for objects' alarms at
// once (alarms.go); either way, gossip learns which shards this node
// leads.
func (n *Node) leadershipChanged(s int, serving bool, _ string) {
	if h := n.host.Load(); h != nil {
		n.members.SetLeads(h.Leads())
	}
	if serving {
		n.objects.alarms.shardServed(s)
		return
	}
	n.objects.shardLost(s)
}
