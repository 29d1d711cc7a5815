package objectnode

// Decommission takes this node out of the ring for good: every member
// stops placing replicas here, the shards' leaders move them to other
// nodes, and once this node holds none, Failed is closed (with a nil Err)
// so the process exits. It survives a restart.
func (n *Node) Decommission() {
	n.setIdentity(func(id *identity) { id.Leaving = true })
	n.members.SetLeaving()
	n.health.set(false)
	n.log.Info("decommissioning: moving every replica off this node")
	if h := n.host.Load(); h != nil {
		n.replicasChanged(h.Replicas())
	}
}

// replicasChanged runs on the Raft loop whenever this node gains or loses
// a shard replica.
func (n *Node) replicasChanged(count int) {
	if n.leaving() && count == 0 {
		n.log.Info("decommissioned: this node holds no replica; stopping")
		n.fail(nil)
	}
}
