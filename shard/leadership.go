package shard

import (
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/tracker"

	"hellochat/cluster"
)

// ShardStatus is what other goroutines may read about a shard's group on
// this node. Replicas are named by node id; a replica of an earlier
// incarnation of a node (its disk was wiped since) has the suffix "(old)".
type ShardStatus struct {
	Shard    int
	Serving  bool   // this node leads and has applied everything before its term
	Leader   string // node id of the leader, "" when unknown
	Voters   []string
	Learners []string
	Applied  uint64
}

// confMark is a point in a replica's run: its last log index and the
// host's tick count.
type confMark struct {
	last uint64
	tick int
}

// publish makes a group's leadership and configuration visible to other
// goroutines and tells the node when it starts or stops serving.
func (h *Host) publish(g *group) {
	leader := ""
	if g.lead != 0 && h.current(g, g.lead) {
		leader = h.nodeOf(g, g.lead)
	} else if g.lead == 0 && g.transferee != 0 {
		// Between stepping down and hearing from the new leader, the
		// replica this node handed the group to is the best guess: routers
		// sent there do not wait for gossip to name it.
		leader = h.nodeOf(g, g.transferee)
	}
	next := &ShardStatus{Shard: g.shard, Serving: g.serving, Leader: leader, Applied: g.applied,
		Voters: h.nameAll(g, g.confState.GetVoters()), Learners: h.nameAll(g, g.confState.GetLearners())}
	prev := h.status[g.shard].Swap(next)
	if prev.Serving != next.Serving || prev.Leader != next.Leader {
		h.cfg.OnLeadership(g.shard, next.Serving, next.Leader)
	}
}

// name is the node holding replica id of g, marked when it is not the
// node's current incarnation.
func (h *Host) name(g *group, id uint64) string {
	n := h.nodeOf(g, id)
	switch {
	case n == "":
		return fmt.Sprintf("%x(old)", id)
	case !h.current(g, id):
		return n + "(old)"
	}
	return n
}

func (h *Host) nameAll(g *group, ids []uint64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = h.name(g, id)
	}
	return out
}

// order lists a group's voters, those on the ring's replicas first in
// ring order: the first live one is where leadership should be.
func (h *Host) order(g *group) []uint64 {
	voters := g.confState.GetVoters()
	out := make([]uint64, 0, len(voters))
	for _, id := range h.wanted(g) {
		if slices.Contains(voters, id) {
			out = append(out, id)
		}
	}
	for _, id := range voters {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// membersChanged takes a new view from gossip: the ids it names, and the
// nodes it says are down. Gossip only suspects: a node it marks down may
// be one whose probes were late, and whose Raft heartbeats still reach us.
// A follower that hears its leader within suspectSilence ticks keeps it;
// forgetting it would cost an election, and, once gossip calls the node
// alive again, a hand-over back, for every shard it leads. Under load on
// a small machine those false suspicions came every few seconds, and
// leadership never settled.
func (h *Host) membersChanged(p *cluster.Placement) {
	h.learnIDs(p)
	for _, n := range p.Nodes() {
		if !p.Alive(n.ID) {
			h.leaderDown(n.ID, h.suspectSilence())
		}
	}
}

// suspectSilence is how many ticks a follower must not have heard its
// leader before it believes gossip that the leader is down: two
// heartbeats and a tick. A leader that really died is silent longer than
// that by the time gossip has probed it and waited out its suspicion.
func (h *Host) suspectSilence() int { return 2*h.cfg.HeartbeatTicks + 1 }

// leaderDown reacts to a peer that is dead: followers of the shards it led
// that have not heard it for silence ticks forget it, so they grant
// pre-votes at once instead of waiting out the election timeout, and the
// first live voter in ring order campaigns.
func (h *Host) leaderDown(nodeID string, silence int) {
	for _, g := range h.groups {
		if g.leader || g.lead == 0 || h.nodeOf(g, g.lead) != nodeID || g.silent < silence {
			continue
		}
		if err := g.rn.ForgetLeader(); err != nil {
			continue
		}
		for _, id := range h.order(g) {
			if id == g.lead || h.nodeOf(g, id) == nodeID || !h.live(g, id) {
				continue
			}
			if id == g.id {
				g.rn.Campaign()
				g.recampaign = 2
			}
			break
		}
	}
}

// settled reports whether g's configuration is exactly the ring's: all
// its replicas vote (want holds one member per ring replica), no learners.
func (h *Host) settled(g *group, want []uint64) bool {
	voters := g.confState.GetVoters()
	if len(g.confState.GetLearners()) > 0 || len(want) != len(h.ringMetas(g.shard)) || len(voters) != len(want) {
		return false
	}
	for _, id := range want {
		if !slices.Contains(voters, id) {
			return false
		}
	}
	return true
}

// transferLag is how far behind the preferred replica may be when the
// leader starts handing leadership to it.
const transferLag = 64

// handOverReady reports whether the leader may hand leadership to a voter
// with progress pr now (its last index is last): the voter must be caught
// up and must have applied the leader's latest configuration change (conf,
// as of now, in ticks). A replica with a committed change it has not
// applied, or that has not applied its own promotion, ignores the
// leader's MsgTimeoutNow, and the leader drops every proposal of the shard
// until it gives the transfer up an election timeout later: that paused a
// planned move's writes for over a second. The voter surely applied the
// change once it acknowledged an entry the leader appended after applying
// it (that append carried the commit; the voter applies in the round that
// acknowledges), or, with no writes to append, once heartbeats (which
// carry the commit) had settleTicks to reach it.
func handOverReady(pr tracker.Progress, last uint64, conf confMark, now, settleTicks int) bool {
	if pr.State != tracker.StateReplicate || pr.Match+transferLag < last {
		return false
	}
	return pr.Match > conf.last || now-conf.tick >= settleTicks
}

// markConf records that g just applied a configuration change.
func (h *Host) markConf(g *group) {
	last, _ := g.ms.LastIndex()
	g.confMark = confMark{last: last, tick: h.ticks}
}

// settleTicks is how long, with no writes, a leader waits after a
// configuration change before handing over: two heartbeats and a tick.
func (h *Host) settleTicks() int { return 2*h.cfg.HeartbeatTicks + 1 }

// preferLeaders hands leadership to each shard's preferred voter (the
// first live one in ring order) when it is caught up, so load follows the
// ring and a replica the ring no longer wants stops leading before it is
// removed.
func (h *Host) preferLeaders() {
	for _, g := range h.groups {
		if !g.leader {
			continue
		}
		if g.rn.BasicStatus().LeadTransferee == 0 && g.transferee != 0 {
			// Still leading: Raft gave the transfer up after an election
			// timeout, and every write of the shard waited that long.
			h.log.Warn("leadership transfer gave up", "shard", g.shard, "to", h.name(g, g.transferee))
			g.transferee = 0
		}
		if g.confBusy > 0 {
			continue
		}
		// While replicas move, a leader the ring still wants keeps the
		// group: the preferred replica may not have applied its own
		// promotion yet, and a transfer it ignores stalls every write of
		// the shard for an election timeout. Only a leader the ring no
		// longer wants hands over mid-move (all the ring's replicas vote
		// by then), since it must leave.
		want := h.wanted(g)
		if slices.Contains(want, g.id) && !h.settled(g, want) {
			continue
		}
		var pref uint64
		for _, id := range h.order(g) {
			if h.live(g, id) {
				pref = id
				break
			}
		}
		if pref == 0 || pref == g.id {
			continue
		}
		st := g.rn.Status()
		if st.LeadTransferee != 0 {
			continue
		}
		// Under steady load the follower is never exactly at the last
		// index; Raft finishes catching it up before handing over.
		last, _ := g.ms.LastIndex()
		if pr, ok := st.Progress[pref]; ok && handOverReady(pr, last, g.confMark, h.ticks, h.settleTicks()) {
			g.rn.TransferLeader(pref)
			g.transferee = pref
			h.log.Info("handing leadership over", "shard", g.shard, "to", h.name(g, pref), "match", pr.Match, "last", last)
		}
	}
}
