package objectnode

import (
	"context"
	"fmt"
	"time"

	"hellochat/shard"
)

// ConfirmTimeout bounds how long an attach waits for the room's shard group
// to confirm that this node still leads it. A leader cut off from its peers
// gets no answer until Raft deposes it; the router is redirected meanwhile.
const ConfirmTimeout = 2 * time.Second

// confirmLeader returns nil once a quorum of the shard's group has
// confirmed that this node leads it, and this node has applied everything
// committed at that moment: what the room tells an attaching router (its
// last seq, then pages below it) is then current, not the view of a leader
// that was deposed without knowing it yet (G1).
func (n *Node) confirmLeader(ctx context.Context, s int) error {
	h := n.host.Load()
	if h == nil {
		return shard.ErrNotLeader
	}
	ctx, cancel := context.WithTimeout(ctx, ConfirmTimeout)
	defer cancel()
	result := make(chan error, 1)
	h.ConfirmLeader(s, func(err error) { result <- err })
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no quorum confirmed this node's leadership within %v: %w", ConfirmTimeout, ctx.Err())
	}
}
