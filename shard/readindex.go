package shard

import (
	"encoding/binary"
)

// Confirmed reads. A leader that is cut off, or paused, keeps believing it
// leads until CheckQuorum deposes it, an election timeout later; its peers
// may elect another leader sooner (they forget a leader that gossip or a
// broken stream says is dead), and that one may commit. Whatever the old
// leader reads from its own store in that window can miss those commits.
// So a read that must be current (a room's last seq when a router
// attaches, a page of history) first asks the group, through Raft's
// ReadIndex, to confirm that this replica still leads: a quorum answers a
// heartbeat, and the read waits until this replica has applied at least the
// commit index of that moment. A deposed leader gets no quorum and its read
// fails, so no two nodes answer reads of a shard as current at once.

// readRequest is a read waiting for its group's confirmation.
type readRequest struct {
	shard int
	done  func(error)
}

// pendingRead is a confirmation asked of Raft, or one Raft gave (index
// set) that waits until the replica has applied that far.
type pendingRead struct {
	done  func(error)
	index uint64
	known bool
}

// ConfirmLeader calls done(nil) once this node's replica of shard is
// confirmed, by a quorum of its group, to lead it, and has applied
// everything committed when the confirmation was asked; done(ErrNotLeader)
// when it does not lead or stops leading first. done is called once, from
// the Raft loop: it must not block.
func (h *Host) ConfirmLeader(shard int, done func(error)) {
	select {
	case h.readsIn <- &readRequest{shard: shard, done: done}:
	case <-h.done:
		done(ErrStopped)
	}
}

// readIndex asks Raft to confirm a read; it runs on the loop.
func (h *Host) readIndex(r *readRequest) {
	g := h.groups[r.shard]
	if g == nil || !g.serving || !g.leader {
		r.done(ErrNotLeader)
		return
	}
	h.nextRead++
	ctx := binary.BigEndian.AppendUint64(nil, h.nextRead)
	if g.reads == nil {
		g.reads = map[uint64]*pendingRead{}
	}
	g.reads[h.nextRead] = &pendingRead{done: r.done}
	g.rn.ReadIndex(ctx)
}

// takeReadStates records the indexes Raft confirmed this round, and
// answers every read whose index this replica has applied.
func (h *Host) takeReadStates(r ready) {
	g := r.g
	for _, rs := range r.rd.ReadStates {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		if p := g.reads[binary.BigEndian.Uint64(rs.RequestCtx)]; p != nil {
			p.index, p.known = rs.Index, true
		}
	}
	h.answerReads(g)
}

// answerReads answers the confirmed reads g has applied far enough for.
func (h *Host) answerReads(g *group) {
	for id, p := range g.reads {
		if p.known && p.index <= g.applied {
			delete(g.reads, id)
			p.done(nil)
		}
	}
}

// failReads fails every read of g waiting for confirmation.
func (h *Host) failReads(g *group, err error) {
	for id, p := range g.reads {
		delete(g.reads, id)
		p.done(err)
	}
}
