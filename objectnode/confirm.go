package objectnode

import (
	"context"
	"fmt"
	"sync"
	"time"

	"hellochat/shard"
)

// ConfirmTimeout bounds how long an object's start waits for its shard's
// group to confirm that this node still leads it. A leader cut off from
// its peers gets no answer until Raft deposes it; callers are redirected
// meanwhile.
const ConfirmTimeout = 2 * time.Second

// confirmLeader returns nil once a quorum of the shard's group has
// confirmed that this node leads it, and this node has applied everything
// committed at that moment: what an object then reads is current, not the
// view of a leader that was deposed without knowing it yet (G1).
func (n *Node) confirmLeader(ctx context.Context, s int) error {
	result := make(chan error, 1)
	n.confirmAsync(s, func(err error) { result <- err })
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// confirmAsync is confirmLeader that answers through done (once, from
// any goroutine), within ConfirmTimeout: what objects' actors ask before
// they release what an event that wrote nothing showed
// (durable.Config.Confirm).
func (n *Node) confirmAsync(s int, done func(error)) {
	h := n.host.Load()
	if h == nil {
		done(shard.ErrNotLeader)
		return
	}
	var once sync.Once
	finish := func(err error) { once.Do(func() { done(err) }) }
	t := time.AfterFunc(ConfirmTimeout, func() {
		finish(fmt.Errorf("no quorum confirmed this node's leadership within %v", ConfirmTimeout))
	})
	h.ConfirmLeader(s, func(err error) {
		t.Stop()
		finish(err)
	})
}
