package objectnode

import (
	"context"
	"errors"
	"sort"

	pb "hellochat/proto/roompb"
)

// attach binds a stream to the room's actor, starting the actor if the room
// is not active. It retries when it races with an actor that is exiting.
func (n *Node) attach(ctx context.Context, name string, st *stream) (*room, error) {
	for {
		r := n.room(name)
		if r == nil {
			return nil, ErrRoomStopped
		}
		q := roomReq{attach: &attachReq{st: st, result: make(chan error, 1)}}
		err := r.enqueue(ctx, q)
		if errors.Is(err, ErrRoomStopped) {
			if r.loadErr != nil {
				return nil, r.loadErr
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		select {
		case err := <-q.attach.result:
			if errors.Is(err, ErrRoomStopped) {
				continue
			}
			return r, err
		case <-r.done:
			if r.loadErr != nil {
				return nil, r.loadErr
			}
			continue
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// room returns the active actor for name, starting one if needed; nil once
// the node is shutting down.
func (n *Node) room(name string) *room {
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	select {
	case <-n.stopping:
		return nil
	default:
	}
	if r, ok := n.rooms[name]; ok {
		return r
	}
	// Checked under roomsMu, which leadershipChanged also takes: a room is
	// either refused here or stopped there, never live on a non-leader.
	if n.redirectFor(name) != nil {
		return nil
	}
	r := newRoom(n, name)
	n.rooms[name] = r
	n.roomsWG.Add(1)
	go func() {
		defer n.roomsWG.Done()
		r.run()
	}()
	return r
}

// dropSlow ends a stream whose router fell too far behind. The redirect
// names this node: the router comes straight back, sending less at once.
func (n *Node) dropSlow(room string, st *stream) {
	if st.endSlow(&pb.Redirect{OwnerId: n.cfg.ID, OwnerAddr: n.advertiseGRPC(), Reason: "stream too slow", TooSlow: true}) {
		n.slowStreams.Add(1)
		n.log.Warn("dropping slow stream", "room", room, "router", st.router, "queued", st.queued())
	}
}

// evict forgets r if it is still the active actor for its room; it reports
// whether it did. Once forgotten, the next attach starts a fresh actor that
// reloads the room from the store.
func (n *Node) evict(r *room) bool {
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	if n.rooms[r.name] != r {
		return false
	}
	delete(n.rooms, r.name)
	return true
}

func (n *Node) activeRooms() []*room {
	n.roomsMu.Lock()
	defer n.roomsMu.Unlock()
	out := make([]*room, 0, len(n.rooms))
	for _, r := range n.rooms {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
