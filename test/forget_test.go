package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/cluster"
	tc "hellochat/internal/testcluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// forgetThrough signs a tombstone of node's current incarnation with
// creds and sends it to the node at addr, as `objectnode forget` does.
func forgetThrough(t *testing.T, addr string, creds *security.Settings, node string, force bool) (*pb.ForgetResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds.ClientCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	rooms := pb.NewRoomsClient(conn)
	replica := ""
	if st, err := rooms.Status(ctx, &pb.StatusRequest{}); err == nil {
		for _, m := range st.Members {
			if m.Id == node {
				replica = m.Replica
			}
		}
	}
	ts, err := cluster.SignTombstone(creds, cluster.Tombstone{Node: node, Replica: replica, At: time.Now().UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.ForgetRequest{NodeId: node, Replica: replica, AtUnixNano: ts.At, Force: force,
		Signed: ts.Proof.Meta, Signature: ts.Proof.Sig, Certificate: ts.Proof.Cert}
	return rooms.Forget(ctx, req)
}

func healthz(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestForgetDeadNodeUnderLoad kills one of four nodes for good while
// clients write, and forgets it through the gRPC API with the admin
// certificate: every shard ends with the ring's three live nodes as its
// voters (the shards it was a voter of lose it, though it never answers),
// nothing acknowledged is lost or duplicated, those replicas agree, and
// /healthz on the router and the nodes no longer counts it. Forgetting a
// live node, or with a router's certificate, is refused.
func TestForgetDeadNodeUnderLoad(t *testing.T) {
	c := tc.New(t, 4, tc.Options{SendRate: 10000, SendBurst: 10000, MaxMoves: 8})
	rooms := []string{"forget-a", "forget-b", "forget-c", "forget-d"}
	gone := c.Leader(rooms[0])
	goneID := c.Config(gone).ID
	via := (gone + 1) % 4
	admin := c.Security(security.RoleAdmin, "admin")

	_, err := forgetThrough(t, c.Nodes[via].GRPCAddr(), admin, goneID, false)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "alive") {
		t.Fatalf("forgetting live %s: %v, want FailedPrecondition (alive)", goneID, err)
	}
	_, err = forgetThrough(t, c.Nodes[via].GRPCAddr(), c.Security(security.RoleRouter, "router1"), goneID, false)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("forgetting with a router's certificate: %v, want PermissionDenied", err)
	}
	_, err = forgetThrough(t, c.Nodes[via].GRPCAddr(), admin, c.Config(via).ID, true)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a node forgetting itself: %v, want FailedPrecondition", err)
	}

	l := startLoad(t, c, rooms, 2)
	l.run()
	c.Kill(gone)
	c.Wipe(gone) // the machine is gone, disk and all
	tc.Eventually(t, wait, func() error {
		// The node asked to forget refuses a member its own gossip still
		// sees alive: wait for its view, not only the router's.
		if c.Router.Members().Placement().Alive(goneID) || c.Nodes[via].Members().Placement().Alive(goneID) {
			return fmt.Errorf("the router or %s still sees %s alive", c.Config(via).ID, goneID)
		}
		return nil
	})
	start := time.Now()
	resp, err := forgetThrough(t, c.Nodes[via].GRPCAddr(), admin, goneID, false)
	if err != nil {
		t.Fatalf("forget %s: %v", goneID, err)
	}
	if resp.RingNodes != 3 {
		t.Fatalf("forget answered a ring of %d nodes, want 3", resp.RingNodes)
	}
	// WaitPlaced compares with the router's ring: first it must have
	// dropped the node.
	tc.Eventually(t, wait, func() error {
		if _, ok := c.Router.Members().Placement().Node(goneID); ok {
			return fmt.Errorf("the router still knows %s", goneID)
		}
		return nil
	})
	c.WaitPlaced(90 * time.Second)
	t.Logf("re-placed %s's replicas in %v, %d rounds", goneID, time.Since(start).Round(time.Millisecond), l.rounds.Load())
	for i, n := range c.Nodes {
		if n == nil {
			continue
		}
		p := n.Members().Placement()
		if _, ok := p.Node(goneID); ok || p.RingSize() != 3 {
			t.Fatalf("node%d still knows %s (ring of %d)", i+1, goneID, p.RingSize())
		}
		if h := healthz(t, n.AdminAddr()); !strings.Contains(h, "3 of 3 object nodes alive") {
			t.Fatalf("node%d /healthz: %q", i+1, h)
		}
	}
	// Leaders may still hand shards over to the ring's choice after the
	// moves (gossip shows a shard leaderless between two such words), so
	// the router's health is waited for, not sampled.
	tc.Eventually(t, wait, func() error {
		if h := healthz(t, c.Router.AdminAddr()); !strings.HasPrefix(h, "ok: 3 of 3 object nodes alive") {
			return fmt.Errorf("router /healthz: %q", h)
		}
		return nil
	})
	// Asking again is harmless.
	if resp, err := forgetThrough(t, c.Nodes[via].GRPCAddr(), admin, goneID, false); err == nil || status.Code(err) != codes.NotFound {
		t.Fatalf("forgetting %s again: %v %v", goneID, resp, err)
	}
	l.halt(t)
	l.check(t, c)
	checkHolders(t, c, rooms)
}
