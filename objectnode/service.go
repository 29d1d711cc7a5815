package objectnode

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// service implements the Rooms gRPC service: a node's status for routers
// and operators, decommissioning and forgetting nodes (the name is that of
// the chat rooms it once served as well).
type service struct {
	pb.UnimplementedRoomsServer
	node *Node
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

// Status reports the node's shards, objects and view of the cluster.
func (s *service) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	n := s.node
	if _, err := n.cfg.Security.Authorize(ctx, security.RoleRouter, security.RoleAdmin, security.RoleNode); err != nil {
		return nil, err
	}
	p := n.members.Placement()
	resp := &pb.StatusResponse{NodeId: n.cfg.ID, Ready: n.ready()}
	if h := n.host.Load(); h != nil {
		resp.Replicas = uint32(h.Replicas())
		for s := 0; s < cluster.Partitions; s++ {
			if serving, _ := h.Serving(s); serving {
				resp.Leading = append(resp.Leading, uint32(s))
			}
			if i := h.Applied(s); i > 0 {
				resp.Applied = append(resp.Applied, &pb.ReplicaApplied{Shard: uint32(s), Index: i})
			}
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
	return resp, nil
}
