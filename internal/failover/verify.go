package failover

import (
	"context"
	"fmt"
	"sort"
	"time"

	"hellochat/internal/chatclient"
	"hellochat/internal/countercheck"
	"hellochat/internal/launch"
)

// result holds the correctness checks.
type result struct {
	sent, acked, unacked int
	refused              int // of the unacked: answered by an error frame naming them
	lost, dup, reordered int
	silent               int // never acknowledged and never refused
	missingTail          int // clients not shown their room's last messages
	stray                int // error frames about nothing the client had outstanding
	backwards            int // history timestamps lower than the one before
	disconnects          int
	verifyErr            error
	historyMessages      int
	lostExamples, dupIDs []string
	reorderExamples      []string
	silentEx, tailEx     []string
	strayEx, backwardsEx []string
	replicas             replicaCheck
	raftLogs             raftLogCheck
	counter              countercheck.Result
}

func (r result) failed() bool {
	return r.lost > 0 || r.dup > 0 || r.reordered > 0 || r.silent > 0 || r.missingTail > 0 || r.stray > 0 ||
		r.backwards > 0 || r.disconnects > 0 || r.verifyErr != nil || r.replicas.failed() || r.raftLogs.failed() ||
		r.counter.Failed()
}

// tailWait bounds how long the check waits for every client to be shown
// its room's last message: the load has stopped and every message has its
// ack by then, so only the broadcast to the other clients is still on its
// way.
const tailWait = 10 * time.Second

// histMsg is one message of a room's history.
type histMsg struct {
	id string
	ts int64
}

// waitTails waits (up to tailWait) until every client was shown seq n.
func waitTails(cls []*client, n uint64) {
	deadline := time.Now().Add(tailWait)
	for _, cl := range cls {
		for cl.lastSeen() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// verify reads every room's whole history through the router and checks
// each client's acks and view against it.
func verify(ctx context.Context, c *launch.Cluster, byRoom map[string][]*client) result {
	var res result
	rooms := make([]string, 0, len(byRoom))
	for room := range byRoom {
		rooms = append(rooms, room)
	}
	sort.Strings(rooms)
	for _, room := range rooms {
		hist, err := history(ctx, c, room)
		if err != nil {
			res.verifyErr = err
			return res
		}
		waitTails(byRoom[room], uint64(len(hist)))
		checkRoom(room, hist, byRoom[room], &res)
	}
	return res
}

// checkRoom checks each client's acks, refusals, error frames and view of
// room against its history (in seq order): every message a client sent is
// acknowledged at the seq and timestamp history has it at, or refused by
// an error frame naming it; history holds each id once with timestamps
// that never decrease; every client was shown the messages from its first
// one to the room's last, each at its seq, none twice, none skipped.
func checkRoom(room string, hist []histMsg, cls []*client, res *result) {
	res.historyMessages += len(hist)
	seqOf := map[string]uint64{}
	for i, m := range hist {
		if _, dup := seqOf[m.id]; dup {
			res.dup++
			res.dupIDs = append(res.dupIDs, room+"/"+m.id)
		}
		seqOf[m.id] = uint64(i + 1)
		if i > 0 && m.ts < hist[i-1].ts {
			res.backwards++
			res.backwardsEx = append(res.backwardsEx, fmt.Sprintf("%s: seq %d has ts %d, seq %d had %d", room, i+1, m.ts, i, hist[i-1].ts))
		}
	}
	for _, cl := range cls {
		cl.mu.Lock()
		for _, id := range cl.order {
			s := cl.sends[id]
			res.sent++
			if s.acked.IsZero() {
				res.unacked++
				if s.refused != "" {
					res.refused++
				} else {
					res.silent++
					res.silentEx = append(res.silentEx, fmt.Sprintf("%s/%s neither acknowledged nor refused (history has it at seq %d)", room, id, seqOf[id]))
				}
				continue
			}
			res.acked++
			if seq := seqOf[id]; seq == 0 || seq != s.seq || hist[seq-1].ts != s.ts {
				res.lost++
				at := "nowhere"
				if seq > 0 {
					at = fmt.Sprintf("seq %d ts %d", seq, hist[seq-1].ts)
				}
				res.lostExamples = append(res.lostExamples, fmt.Sprintf("%s/%s acked as seq %d ts %d, history has it at %s", room, id, s.seq, s.ts, at))
			}
		}
		for i, m := range cl.seen {
			if m.seq == 0 || m.seq > uint64(len(hist)) || hist[m.seq-1].id != m.id || hist[m.seq-1].ts != m.ts ||
				(i > 0 && m.seq != cl.seen[i-1].seq+1) {
				res.reordered++
				res.reorderExamples = append(res.reorderExamples, fmt.Sprintf("%s: %s saw seq %d = %s ts %d", room, cl.name, m.seq, m.id, m.ts))
			}
		}
		if last := lastOf(cl.seen); len(hist) > 0 && last < uint64(len(hist)) {
			res.missingTail++
			res.tailEx = append(res.tailEx, fmt.Sprintf("%s: %s was shown up to seq %d of %d", room, cl.name, last, len(hist)))
		}
		res.stray += len(cl.stray)
		res.strayEx = append(res.strayEx, cl.stray...)
		if !cl.closedAt.IsZero() {
			res.disconnects++
		}
		cl.mu.Unlock()
	}
}

func lastOf(seen []seenMsg) uint64 {
	if len(seen) == 0 {
		return 0
	}
	return seen[len(seen)-1].seq
}

// history pages back through a room's whole history, in seq order.
func history(ctx context.Context, c *launch.Cluster, room string) ([]histMsg, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cc, err := chatclient.DialVia(dctx, c.HTTPClient(0), c.Base, room, "verifier", true)
	if err != nil {
		return nil, err
	}
	defer cc.Conn.Close(1000, "")
	next := func(match func(chatclient.Frame) bool) (chatclient.Frame, error) {
		for {
			select {
			case f := <-cc.Frames:
				if match(f) {
					return f, nil
				}
			case <-dctx.Done():
				return chatclient.Frame{}, fmt.Errorf("history of %s: %w", room, dctx.Err())
			}
		}
	}
	h, err := next(func(f chatclient.Frame) bool { return f.Type == "history" })
	if err != nil {
		return nil, err
	}
	msgs := h.Messages
	for h.More && len(msgs) > 0 {
		before := msgs[0].Seq
		if err := cc.WriteJSON(dctx, map[string]any{"type": "history", "before": before, "limit": 100}); err != nil {
			return nil, err
		}
		h, err = next(func(f chatclient.Frame) bool { return f.Type == "history" && f.Before == before })
		if err != nil {
			return nil, err
		}
		msgs = append(h.Messages, msgs...)
	}
	hist := make([]histMsg, len(msgs))
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			return nil, fmt.Errorf("history of %s: seq %d at position %d (gap)", room, m.Seq, i+1)
		}
		hist[i] = histMsg{id: m.ID, ts: m.TS}
	}
	return hist, nil
}
