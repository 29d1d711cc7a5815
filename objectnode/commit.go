package objectnode

import (
	"strings"

	"hellochat/limits"
	"hellochat/shard"
	"hellochat/storage"
)

// Committer makes an object's batch of writes durable and then calls done,
// exactly once. For one object, done calls come in Commit order. This is the
// seam between objects' actors and replication: the batch is proposed to
// the shard's Raft group, and done called when it is applied.
type Committer interface {
	Commit(object string, ops []storage.Op, guards storage.Guards, done func(error))
}

// raftCommitter replicates through the shard's Raft group: done runs once
// the batch is committed on a majority of the shard's replicas (each of
// which fsyncs its log) and applied here.
type raftCommitter struct{ n *Node }

func (c raftCommitter) Commit(object string, ops []storage.Op, guards storage.Guards, done func(error)) {
	// Every replica refuses to apply a command for another kind of name,
	// and a committed entry no replica applies stops the whole shard: it
	// must never reach the log.
	if err := limits.StoredObject(object); err != nil {
		done(err)
		return
	}
	h := c.n.host.Load()
	if h == nil {
		done(shard.ErrNotLeader)
		return
	}
	if strings.HasPrefix(object, limits.DurableObjectPrefix) {
		inner := done
		done = func(err error) {
			if err == nil {
				c.n.objectCommits.Add(1)
			}
			inner(err)
		}
	}
	h.Propose(shardOf(object), object, ops, guards, done)
}
