package objectnode

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// service implements the Rooms gRPC service.
type service struct {
	pb.UnimplementedRoomsServer
	node *Node
}

// Attach relays one room for one router. The handler goroutine writes the
// stream's queued events; a second goroutine reads the router's requests,
// answers page reads from the store itself and feeds everything else to the
// room actor, waiting while the actor's mailbox is full (backpressure).
func (s *service) Attach(srv pb.Rooms_AttachServer) error {
	n := s.node
	ctx := srv.Context()
	if _, err := n.cfg.Security.Authorize(ctx, security.RoleRouter); err != nil {
		return err
	}
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "first request must be Open")
	}
	name, err := limits.Room(open.Room)
	if err != nil || name != open.Room {
		return status.Errorf(codes.InvalidArgument, "bad room name %q", open.Room)
	}
	if err := limits.RouterID(open.RouterId); err != nil {
		return status.Errorf(codes.InvalidArgument, "open %q: %v", name, err)
	}
	if redirect := n.redirectFor(name); redirect != nil {
		return srv.Send(&pb.AttachEvent{Kind: &pb.AttachEvent_Redirect{Redirect: redirect}})
	}
	if err := n.confirmLeader(ctx, shardOf(name)); err != nil {
		leader := ""
		if h := n.host.Load(); h != nil {
			_, leader = h.Serving(shardOf(name))
		}
		n.log.Info("attach refused: leadership not confirmed", "room", name, "err", err)
		return srv.Send(&pb.AttachEvent{Kind: &pb.AttachEvent_Redirect{Redirect: n.redirectTo(leader, "leadership not confirmed")}})
	}

	st := newStream(open.RouterId, n.cfg.StreamQueue, n.cfg.StreamQueueBytes)
	r, err := n.attach(ctx, name, st)
	if errors.Is(err, ErrRoomStopped) {
		return srv.Send(&pb.AttachEvent{Kind: &pb.AttachEvent_Redirect{Redirect: &pb.Redirect{Reason: "node shutting down"}}})
	}
	if err != nil {
		return status.Errorf(codes.Unavailable, "attach %q: %v", name, err)
	}
	defer func() {
		// Best effort: the room may already have dropped the stream or exited.
		dctx, cancel := context.WithTimeout(context.Background(), n.cfg.RoomIdle)
		defer cancel()
		_ = r.enqueue(dctx, roomReq{detach: st})
	}()

	recvErr := make(chan error, 1)
	go func() { recvErr <- s.readRequests(ctx, srv, r, st) }()

	send := func() error {
		for _, ev := range st.take() {
			if err := srv.Send(ev); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		select {
		case <-st.wake:
			if err := send(); err != nil {
				return err
			}
		case <-st.closed:
			// Send what was queued before the stream ended, then redirect.
			if err := send(); err != nil {
				return err
			}
			return srv.Send(st.final)
		case err := <-recvErr:
			select {
			case <-st.closed: // dropped as too slow while answering a page
				if err := send(); err != nil {
					return err
				}
				return srv.Send(st.final)
			default:
			}
			switch {
			case errors.Is(err, ErrRoomStopped):
				return status.Error(codes.Unavailable, "room stopped")
			case err != nil && status.Code(err) != codes.Canceled:
				return err
			}
			return nil // the router closed its side, or went away
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readRequests feeds a stream's requests to its room until the router
// closes the stream. Page reads are answered here, from the store: they read
// only committed messages, so the room actor need not see them.
func (s *service) readRequests(ctx context.Context, srv pb.Rooms_AttachServer, r *room, st *stream) error {
	n := s.node
	for {
		req, err := srv.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch k := req.Kind.(type) {
		case *pb.AttachRequest_Open:
			return status.Error(codes.InvalidArgument, "Open sent twice")
		case *pb.AttachRequest_Page:
			page, err := readPage(n.store, r.name, k.Page)
			if err != nil {
				n.log.Error("read page", "room", r.name, "err", err)
				return status.Errorf(codes.Unavailable, "read history of %q: %v", r.name, err)
			}
			if !st.push(&pb.AttachEvent{Kind: &pb.AttachEvent_Page{Page: page}}) {
				n.dropSlow(r.name, st)
				return nil
			}
		default:
			if err := r.enqueue(ctx, roomReq{from: st, req: req}); err != nil {
				return err
			}
		}
	}
}

// Decommission starts moving every replica off this node.
func (s *service) Decommission(ctx context.Context, req *pb.DecommissionRequest) (*pb.StatusResponse, error) {
	if _, err := s.node.cfg.Security.Authorize(ctx, security.RoleAdmin); err != nil {
		return nil, err
	}
	if s.node.host.Load() == nil {
		return nil, status.Error(codes.Unavailable, "replication has not started yet; try again once the node has joined its cluster")
	}
	if err := s.node.decommissionAllowed(req.GetForce()); err != nil {
		return nil, err
	}
	s.node.Decommission()
	return s.Status(ctx, &pb.StatusRequest{})
}

// Forget records an admin's tombstone of another node's incarnation in
// cluster state (see cluster.Tombstone). The checks here are for the
// operator's sake, so a typo or a race with a reinstall gets a clear
// answer; what makes the tombstone hold is its signature, which every
// member checks again.
func (s *service) Forget(ctx context.Context, req *pb.ForgetRequest) (*pb.ForgetResponse, error) {
	n := s.node
	if _, err := n.cfg.Security.Authorize(ctx, security.RoleAdmin); err != nil {
		return nil, err
	}
	id := req.GetNodeId()
	if id == n.cfg.ID {
		return nil, status.Errorf(codes.FailedPrecondition,
			"refused: %s cannot forget itself; ask another node, or decommission this one", id)
	}
	t := cluster.Tombstone{Node: id, Replica: req.GetReplica(), At: req.GetAtUnixNano()}
	if len(req.GetSignature()) > 0 || len(req.GetCertificate()) > 0 || len(req.GetSigned()) > 0 {
		t.Proof = &cluster.Proof{Meta: req.GetSigned(), Sig: req.GetSignature(), Cert: req.GetCertificate()}
	}
	opened, err := n.members.CheckTombstone(t)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "refused: tombstone of %s: %v", id, err)
	}
	if opened.Node != id || opened.Replica != t.Replica {
		return nil, status.Errorf(codes.InvalidArgument, "refused: the request names %s (incarnation %q), its signed tombstone %s",
			id, t.Replica, opened)
	}
	p := n.members.Placement()
	resp := &pb.ForgetResponse{NodeId: id, Replica: opened.Replica}
	if n.members.Forgotten(id, opened.Replica) {
		resp.Already, resp.RingNodes = true, uint32(p.RingSize())
		return resp, nil
	}
	known, ok := p.Node(id)
	switch {
	case !ok:
		return nil, status.Errorf(codes.NotFound, "refused: %s is not a known object node", id)
	case known.Replica != opened.Replica:
		return nil, status.Errorf(codes.FailedPrecondition,
			"refused: %s now runs incarnation %q, not %q (it was reinstalled since); nothing was forgotten", id, known.Replica, opened.Replica)
	case p.Alive(id) && !req.GetForce():
		return nil, status.Errorf(codes.FailedPrecondition,
			"refused: %s is alive by gossip; stop it for good first (or decommission it), or force it (objectnode forget --force), which makes every member refuse it and it stop", id)
	}
	if p.Alive(id) {
		n.log.Warn("FORCED forget of a live node: every member will refuse it", "member", id, "replica", opened.Replica)
	}
	if err := n.members.Forget(opened); err != nil {
		return nil, status.Errorf(codes.Unavailable, "forget %s: %v", id, err)
	}
	n.log.Info("forgetting node on an admin's request", "member", id, "replica", opened.Replica)
	ring := p.RingSize()
	if !known.Leaving {
		ring--
	}
	resp.RingNodes = uint32(ring)
	return resp, nil
}

// Status reports the node's rooms and its view of the cluster.
func (s *service) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	n := s.node
	if _, err := n.cfg.Security.Authorize(ctx, security.RoleRouter, security.RoleAdmin, security.RoleNode); err != nil {
		return nil, err
	}
	p := n.members.Placement()
	resp := &pb.StatusResponse{NodeId: n.cfg.ID, Ready: n.ready()}
	if h := n.host.Load(); h != nil {
		for s := 0; s < cluster.Partitions; s++ {
			if serving, _ := h.Serving(s); serving {
				resp.Leading = append(resp.Leading, uint32(s))
			}
		}
	}
	if h := n.host.Load(); h != nil {
		resp.Replicas = uint32(h.Replicas())
		for s := 0; s < cluster.Partitions; s++ {
			if i := h.Applied(s); i > 0 {
				resp.Applied = append(resp.Applied, &pb.ReplicaApplied{Shard: uint32(s), Index: i})
			}
		}
		for s := 0; s < cluster.Partitions; s++ {
			st := h.Status(s)
			if !st.Serving {
				continue
			}
			ss := &pb.ShardStatus{Shard: uint32(s), Voters: st.Voters, Learners: st.Learners, Applied: st.Applied}
			if reps, err := p.Replicas(s, n.cfg.Replicas); err == nil {
				for _, r := range reps {
					ss.Want = append(ss.Want, r.ID)
				}
			}
			resp.Shards = append(resp.Shards, ss)
		}
	}
	resp.Leaving = n.leaving()
	for _, m := range p.Nodes() {
		resp.Members = append(resp.Members, &pb.MemberStatus{Id: m.ID, Role: m.Role, GrpcAddr: m.GRPC, Alive: p.Alive(m.ID),
			Replica: m.Replica, Leaving: m.Leaving})
	}
	resp.Objects, resp.ObjectCommits = n.objects.status(), n.objectCommits.Load()
	for _, r := range n.activeRooms() {
		reply := make(chan *pb.RoomStatus, 1)
		if err := r.enqueue(ctx, roomReq{status: reply}); err != nil {
			continue
		}
		select {
		case rs, ok := <-reply:
			if ok {
				resp.Rooms = append(resp.Rooms, rs)
			}
		case <-r.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return resp, nil
}
