package shard

import (
	"fmt"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"hellochat/cluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// applySize estimates the bytes of the batch that applies rds' committed
// entries: each command's ops, and again the object's name in each key.
func applySize(rds []ready) int {
	n := 64 // the applied indexes
	for _, r := range rds {
		for _, e := range r.rd.CommittedEntries {
			n += 2 * len(e.GetData())
		}
	}
	return n
}

// apply applies the round's committed entries of every group in one batch,
// then tells proposers and publishes groups that started serving.
func (h *Host) apply(rds []ready) error {
	start := time.Now()
	ab := h.cfg.Store.NewApplyBatch(applySize(rds))
	type doneCall struct {
		f   func(error)
		err error
	}
	var dones []doneCall
	var started []*group
	for _, r := range rds {
		g := r.g
		confChanged := false
		for _, e := range r.rd.CommittedEntries {
			if e.GetIndex() <= g.applied {
				continue
			}
			switch e.GetType() {
			case raftpb.EntryNormal:
				if len(e.GetData()) > 0 {
					cmd, ops, err := DecodeCommand(g.shard, e.GetData())
					if err != nil {
						return fmt.Errorf("shard %d: entry %d: %w", g.shard, e.GetIndex(), err)
					}
					ok, err := g.applyCommand(ab, cmd, ops)
					if err != nil {
						return fmt.Errorf("shard %d: entry %d: %w", g.shard, e.GetIndex(), err)
					}
					result := error(nil)
					if !ok {
						result = ErrConflict
						h.log.Warn("refused a stale write", "shard", g.shard, "object", cmd.Object, "index", e.GetIndex())
					}
					// Proposal ids are this node's own counter; an entry
					// of another node's term cannot be ours.
					if p, ok := g.pending[cmd.Proposal]; ok && g.leader && e.GetTerm() == g.term {
						delete(g.pending, cmd.Proposal)
						h.cfg.Metrics.CommitSeconds.Observe(start.Sub(p.at).Seconds())
						dones = append(dones, doneCall{p.done, result})
					}
				}
			case raftpb.EntryConfChange:
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					return fmt.Errorf("shard %d: conf change %d: %w", g.shard, e.GetIndex(), err)
				}
				g.confState = g.rn.ApplyConfChange(&cc)
				g.confBusy = 0
				confChanged = true
				if g.noteConfChange(cc.GetType(), cc.GetNodeId()) {
					if err := ab.SetRemoved(g.shard, g.removedIDs); err != nil {
						return err
					}
				}
				if h.noteReplicas(g, &cc) {
					if err := ab.SetReplicaSet(g.shard, g.encodeReplicaSet()); err != nil {
						return err
					}
				}
				h.log.Info("configuration changed", "shard", g.shard, "change", cc.GetType().String(),
					"replica", h.name(g, cc.GetNodeId()), "voters", h.nameAll(g, g.confState.GetVoters()),
					"learners", h.nameAll(g, g.confState.GetLearners()))
				if cc.GetNodeId() == g.id && !g.member(g.id) {
					g.removed = true
				}
			}
			g.applied = e.GetIndex()
			// The first entry of a leader's own term is applied: everything
			// committed before it is in the store, so its objects may load.
			if g.leader && !g.serving && e.GetTerm() == g.term {
				g.serving = true
				started = append(started, g)
			}
		}
		if len(r.rd.CommittedEntries) > 0 {
			if err := ab.SetApplied(g.shard, g.applied); err != nil {
				return err
			}
		}
		if confChanged {
			h.markConf(g)
			if err := ab.SetConfState(g.shard, g.confState); err != nil {
				return err
			}
			h.publish(g)
		}
	}
	if !ab.Empty() {
		// No sync: the log is synced, and a crash re-applies from the
		// persisted applied index (writes are idempotent puts, and the
		// configuration is written with the applied index it goes with).
		if err := ab.Commit(false); err != nil {
			return err
		}
		h.cfg.Metrics.ApplySeconds.Observe(time.Since(start).Seconds())
	}
	for _, r := range rds {
		h.applied[r.g.shard].Store(r.g.applied)
	}
	for _, d := range dones {
		d.f(d.err)
	}
	for _, g := range started {
		h.publish(g)
	}
	return nil
}

// DecodeCommand decodes and checks a log entry's command for a shard. A
// command that does not decode, names an invalid object, belongs to another
// shard or holds an op without a key is an error: applying it would corrupt
// the shard, so the replica stops instead.
func DecodeCommand(shard int, data []byte) (*pb.Command, []storage.Op, error) {
	cmd := &pb.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, nil, fmt.Errorf("decode command: %w", err)
	}
	// Rooms and durable objects (limits.StoredObject).
	if err := limits.StoredObject(cmd.Object); err != nil {
		return nil, nil, fmt.Errorf("command for invalid object %q", cmd.Object)
	}
	if cluster.Shard(cmd.Object) != shard {
		return nil, nil, fmt.Errorf("object %q does not belong to shard %d", cmd.Object, shard)
	}
	ops := make([]storage.Op, len(cmd.Ops))
	for i, op := range cmd.Ops {
		if len(op.Key) == 0 {
			return nil, nil, fmt.Errorf("command for %q: op %d has no key", cmd.Object, i)
		}
		if storage.ReservedKey(op.Key) {
			return nil, nil, fmt.Errorf("command for %q: op %d writes the store's own key %x", cmd.Object, i, op.Key)
		}
		ops[i] = storage.Op{Key: op.Key, Value: op.Value, Delete: op.Delete}
	}
	return cmd, ops, nil
}

// applyCommand writes a command's ops, and its object's next version, if
// its conditions hold.
func (g *group) applyCommand(ab *storage.Batch, cmd *pb.Command, ops []storage.Op) (bool, error) {
	if ok, err := g.guardsHold(ab, cmd); err != nil || !ok {
		return false, err
	}
	if err := ab.ApplyOps(cmd.Object, ops); err != nil {
		return false, err
	}
	if cmd.GetVersioned() {
		if err := ab.SetVersion(cmd.Object, cmd.GetNextVersion()); err != nil {
			return false, err
		}
		g.versions.set(cmd.Object, cmd.GetNextVersion())
	}
	return true, nil
}

// guardsHold checks a command's conditions against the store as applied
// so far, including earlier entries of this batch. A versioned command is
// checked against the object's version, from memory when this replica has
// applied or read it before; only an object with no version recorded (data
// from before versions) has its keys read.
func (g *group) guardsHold(ab *storage.Batch, cmd *pb.Command) (bool, error) {
	if cmd.GetVersioned() {
		v, ok := g.versions.get(cmd.Object)
		if !ok {
			var err error
			if v, ok, err = ab.Version(cmd.Object); err != nil {
				return false, err
			}
			if ok {
				g.versions.set(cmd.Object, v)
			}
		}
		if ok {
			return v == cmd.GetVersion(), nil
		}
	}
	for _, k := range cmd.Absent {
		has, err := ab.Has(cmd.Object, k)
		if err != nil || has {
			return false, err
		}
	}
	for _, k := range cmd.Present {
		has, err := ab.Has(cmd.Object, k)
		if err != nil || !has {
			return false, err
		}
	}
	return true, nil
}

// maxCachedVersions bounds a replica's cache of object versions. Past it
// the cache starts over; a forgotten version costs one read when its
// object is next written.
const maxCachedVersions = 4096

// versionCache maps objects to their recorded versions. It is owned by
// the Raft loop, like the rest of the group.
type versionCache struct{ m map[string]uint64 }

func (c *versionCache) get(object string) (uint64, bool) {
	v, ok := c.m[object]
	return v, ok
}

func (c *versionCache) set(object string, v uint64) {
	if _, known := c.m[object]; !known && len(c.m) >= maxCachedVersions {
		c.m = nil
	}
	if c.m == nil {
		c.m = make(map[string]uint64)
	}
	c.m[object] = v
}

func (c *versionCache) clear() { c.m = nil }
