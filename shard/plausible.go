package shard

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
)

// plausible checks a peer's Raft message against what a correct peer
// could send: etcd raft trusts its peers, and panics on some of what none
// would (entries that do not follow on, responses past our log). The
// sender is authenticated, so this guards against a node that is broken,
// not against strangers; it is not a defence against a node that lies
// consistently.
func plausible(g *group, m *raftpb.Message) error {
	last, err := g.ms.LastIndex()
	if err != nil {
		return err
	}
	switch m.GetType() {
	case raftpb.MsgApp:
		if m.GetLogTerm() > m.GetTerm() {
			return fmt.Errorf("append after an entry of term %d from term %d", m.GetLogTerm(), m.GetTerm())
		}
		prev := m.GetLogTerm()
		for i, e := range m.Entries {
			if e.GetIndex() != m.GetIndex()+1+uint64(i) {
				return fmt.Errorf("append entries do not follow on at %d", m.GetIndex()+1+uint64(i))
			}
			if e.GetTerm() < prev || e.GetTerm() > m.GetTerm() {
				return fmt.Errorf("append entry %d has term %d", e.GetIndex(), e.GetTerm())
			}
			prev = e.GetTerm()
		}
	case raftpb.MsgAppResp:
		// A follower acknowledges, or asks to go back to, what we sent.
		if m.GetIndex() > last || m.GetRejectHint() > last {
			return fmt.Errorf("append response at %d (hint %d) past our last index %d", m.GetIndex(), m.GetRejectHint(), last)
		}
	case raftpb.MsgHeartbeat:
		// stepOne caps its commit at our last index, so the leader is
		// answered instead of Raft panicking.
	case raftpb.MsgHeartbeatResp, raftpb.MsgVote, raftpb.MsgVoteResp, raftpb.MsgPreVote, raftpb.MsgPreVoteResp,
		raftpb.MsgTimeoutNow:
	default:
		// Local messages (campaign, beat, reports) and ones this
		// cluster never sends between nodes.
		return fmt.Errorf("%v is not sent between nodes", m.GetType())
	}
	return nil
}
