package cluster

import (
	"sync"
	"sync/atomic"
)

// maxRefusalLogs bounds the distinct refusals (member, source, reason) a
// member logs; past it refusals are only counted, so a member flooding
// forgeries cannot flood the log.
const maxRefusalLogs = 1024

// refusals counts the metas a member refused and remembers which it has
// logged.
type refusals struct {
	count  atomic.Uint64
	mu     sync.Mutex
	logged map[string]bool
}

// refuse counts a meta of member that came from source ("gossip",
// "push/pull") and was refused for err, and logs it unless that refusal
// was logged before.
func (m *Membership) refuse(member, source string, err error) {
	m.refusals.count.Add(1)
	key := member + "\x00" + source + "\x00" + err.Error()
	r := &m.refusals
	r.mu.Lock()
	if r.logged == nil {
		r.logged = map[string]bool{}
	}
	first := !r.logged[key] && len(r.logged) < maxRefusalLogs
	if first {
		r.logged[key] = true
	}
	r.mu.Unlock()
	if first {
		m.log.Warn("refusing member metadata", "member", member, "from", source, "err", err)
	}
}

// Refused is how many metas (gossiped, pushed, or read back from disk)
// this member refused: unsigned, signed by a certificate that does not
// name the member, or whose certificate it never received.
func (m *Membership) Refused() uint64 { return m.refusals.count.Load() }
