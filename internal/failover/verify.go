package failover

import (
	"context"
	"fmt"
	"sort"
	"time"

	"hellochat/internal/chatclient"
	"hellochat/internal/launch"
)

// result holds the correctness checks.
type result struct {
	sent, acked, unacked int
	lost, dup, reordered int
	disconnects          int
	verifyErr            error
	historyMessages      int
	lostExamples, dupIDs []string
	reorderExamples      []string
	replicas             replicaCheck
}

func (r result) failed() bool {
	return r.lost > 0 || r.dup > 0 || r.reordered > 0 || r.disconnects > 0 || r.verifyErr != nil || r.replicas.failed()
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
		res.historyMessages += len(hist)
		seqOf := map[string]uint64{}
		for i, id := range hist {
			if _, dup := seqOf[id]; dup {
				res.dup++
				res.dupIDs = append(res.dupIDs, room+"/"+id)
			}
			seqOf[id] = uint64(i + 1)
		}
		for _, cl := range byRoom[room] {
			cl.mu.Lock()
			for id, s := range cl.sends {
				res.sent++
				if s.acked.IsZero() {
					res.unacked++
					continue
				}
				res.acked++
				if seqOf[id] != s.seq {
					res.lost++
					res.lostExamples = append(res.lostExamples, fmt.Sprintf("%s/%s acked as seq %d, history has it at %d", room, id, s.seq, seqOf[id]))
				}
			}
			for i, m := range cl.seen {
				if m.seq == 0 || m.seq > uint64(len(hist)) || hist[m.seq-1] != m.id || (i > 0 && m.seq != cl.seen[i-1].seq+1) {
					res.reordered++
					if len(res.reorderExamples) < 5 {
						res.reorderExamples = append(res.reorderExamples, fmt.Sprintf("%s: %s saw seq %d = %s", room, cl.name, m.seq, m.id))
					}
				}
			}
			if !cl.closedAt.IsZero() {
				res.disconnects++
			}
			cl.mu.Unlock()
		}
	}
	return res
}

// history pages back through a room's whole history; it returns the
// client ids in seq order.
func history(ctx context.Context, c *launch.Cluster, room string) ([]string, error) {
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
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			return nil, fmt.Errorf("history of %s: seq %d at position %d (gap)", room, m.Seq, i+1)
		}
		ids[i] = m.ID
	}
	return ids, nil
}
