package objectnode

import (
	pb "hellochat/proto/roompb"
)

// redirectFor is nil when this node should host the object whose storage
// is under object now: it leads the object's shard and has applied
// everything committed before its term. Otherwise it says where to go
// instead ("not leader, try X").
func (n *Node) redirectFor(object string) *pb.Redirect {
	select {
	case <-n.stopping:
		return &pb.Redirect{Reason: "node shutting down"}
	default:
	}
	h := n.host.Load()
	if h == nil {
		return &pb.Redirect{Reason: "this node has not joined its cluster yet"}
	}
	serving, leader := h.Serving(shardOf(object))
	if serving {
		return nil
	}
	return n.redirectTo(leader, "not leader")
}

func (n *Node) redirectTo(leader, reason string) *pb.Redirect {
	if leader == "" || leader == n.cfg.ID {
		return &pb.Redirect{Reason: reason + "; no leader elected yet"}
	}
	meta, _ := n.members.Placement().Node(leader)
	return &pb.Redirect{OwnerId: leader, OwnerAddr: meta.GRPC, Reason: reason}
}
