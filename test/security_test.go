package test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/hashicorp/memberlist"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tc "hellochat/internal/testcluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// statusWith calls a node's Status with the given credentials.
func statusWith(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err = pb.NewRoomsClient(conn).Status(ctx, &pb.StatusRequest{})
	return err
}

// chatWorks sends one message through the router and waits for it.
func chatWorks(t *testing.T, c *tc.Cluster, room string) {
	t.Helper()
	a := tc.Dial(t, c.URL(), room, "ann", true)
	b := tc.Dial(t, c.URL(), room, "bob", true)
	a.Post("after-attack", "still here")
	b.Expect(wait, "the message after the attack", func(f tc.Frame) bool { return f.Text == "still here" })
}

// A node serves only callers with a certificate from its cluster, and each
// role only what it may call.
func TestNodeRefusesUnauthenticatedCallers(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	addr := c.Config(0).GRPCListen

	if err := statusWith(t, addr, insecure.NewCredentials()); err == nil {
		t.Fatal("a plaintext client got the node's status")
	}
	other, err := security.Dev(filepath.Join(t.TempDir(), "other"), security.Identity{Role: security.RoleAdmin, ID: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := statusWith(t, addr, other.ClientCreds()); err == nil {
		t.Fatal("a client certified by another CA got the node's status")
	}
	// TLS that checks nothing, with no client certificate.
	if err := statusWith(t, addr, credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})); err == nil {
		t.Fatal("a TLS client without a certificate got the node's status")
	}
	if err := statusWith(t, addr, c.Security(security.RoleAdmin, "admin").ClientCreds()); err != nil {
		t.Fatalf("the cluster's admin: %v", err)
	}

	// A router may attach rooms but not decommission a node.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c.Security(security.RoleRouter, "router9").ClientCreds()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := pb.NewRoomsClient(conn).Decommission(ctx, &pb.DecommissionRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a router's decommission: %v, want PermissionDenied", err)
	}
	chatWorks(t, c, "refusals")
}

// The forged heartbeat that used to crash a node (a huge term and a commit
// index past its log, claiming to come from another node) is refused, and
// so is a real node's certificate used to speak for another node; the
// node keeps serving.
func TestForgedRaftSenderRefused(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	p := c.Router.Members().Placement()
	victim, _ := p.Node("node3")
	impersonated, _ := p.Node("node2")
	heartbeat := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: proto.Uint64(victim.RaftID()),
		From: proto.Uint64(impersonated.RaftID()), Term: proto.Uint64(1 << 40), Commit: proto.Uint64(1 << 40)}
	raw, err := proto.Marshal(heartbeat)
	if err != nil {
		t.Fatal(err)
	}
	send := func(as *security.Settings, fromNode string) error {
		conn, err := grpc.NewClient(c.Config(2).GRPCListen, grpc.WithTransportCredentials(as.ClientCreds()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		stream, err := pb.NewReplicationClient(conn).Raft(ctx)
		if err != nil {
			return err
		}
		batch := &pb.RaftBatch{FromNode: fromNode}
		for shard := 0; shard < 64; shard++ {
			batch.Messages = append(batch.Messages, &pb.RaftEnvelope{Shard: uint32(shard), Message: raw})
		}
		if err := stream.Send(batch); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	node1 := c.Security(security.RoleNode, "node1")
	if err := send(node1, "node2"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("node1's certificate speaking as node2: %v, want PermissionDenied", err)
	}
	if got := c.Nodes[2].Stats().RefusedPeers; got != 1 {
		t.Fatalf("node3 counted %d refused streams, want 1", got)
	}
	// node1 speaking as itself, but its messages from node2's replicas:
	// dropped one by one (the stream itself is node1's).
	if err := send(node1, "node1"); err != nil {
		t.Fatalf("node1's own stream: %v", err)
	}
	tc.Eventually(t, wait, func() error {
		if got := c.Nodes[2].Stats().RefusedRaft; got < 64 {
			return fmt.Errorf("node3 dropped %d dropped messages, want the 64 sent", got)
		}
		return nil
	})
	chatWorks(t, c, "forged")
	for i := range c.Nodes {
		select {
		case <-c.Nodes[i].Failed():
			t.Fatalf("node%d failed: %v", i+1, c.Nodes[i].Err())
		default:
		}
	}
}

// A process without the cluster's gossip key cannot join it.
func TestGossipNeedsTheKey(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	for _, key := range [][]byte{nil, make([]byte, security.GossipKeyBytes)} {
		mc := memberlist.DefaultLocalConfig()
		mc.Name = "intruder"
		mc.BindAddr, mc.BindPort = "127.0.0.1", tc.FreePort(t)
		mc.AdvertiseAddr, mc.AdvertisePort = mc.BindAddr, mc.BindPort
		mc.SecretKey = key
		mc.LogOutput = discard{}
		ml, err := memberlist.Create(mc)
		if err != nil {
			t.Fatal(err)
		}
		n, err := ml.Join([]string{c.Config(0).GossipListen})
		ml.Shutdown()
		if err == nil || n != 0 {
			t.Fatalf("key %x: joined %d members (%v)", key, n, err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// The public port serves browsers only: the operator's endpoints are on
// the admin address, and the public /healthz says ok and nothing more.
func TestAdminEndpointsOffThePublicPort(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	admin := "http://" + c.Router.AdminAddr()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get(c.URL() + "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("public /healthz: %d %q, want 200 \"ok\"", code, body)
	}
	if code, body := get(c.URL() + "/api/cluster"); code == http.StatusOK && strings.Contains(body, "node1") {
		t.Fatalf("the public port serves the cluster's members: %d %.80q", code, body)
	}
	if code, body := get(admin + "/api/cluster"); code != http.StatusOK || !strings.Contains(body, `"node1"`) {
		t.Fatalf("admin /api/cluster: %d %.80q", code, body)
	}
	if code, body := get(admin + "/healthz"); code != http.StatusOK || !strings.HasPrefix(body, "ok: 3 of 3 object nodes alive") {
		t.Fatalf("admin /healthz: %d %q", code, body)
	}
	// The page still loads from the public port.
	if code, body := get(c.URL() + "/"); code != http.StatusOK || !strings.Contains(body, "<html") {
		t.Fatalf("page: %d %.80q", code, body)
	}
}

// The id hijack: a second member with the same name sees the first's ids
// and pre-sends its next one. With keys, the owner's message is still
// stored, under its own seq, and both are in the history.
func TestPreSentIDDoesNotSwallowTheOwnersMessage(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	watcher := tc.Dial(t, c.URL(), "hijack", "watcher", true)
	victim := tc.Dial(t, c.URL(), "hijack", "ann", true, "key=victim-secret-0123456789")
	attacker := tc.Dial(t, c.URL(), "hijack", "ann", true, "key=attacker-secret-987654321")

	victim.Post("ann-1", "first")
	watcher.Expect(wait, "the victim's first message", func(f tc.Frame) bool { return f.Text == "first" })
	attacker.Post("ann-2", "not yours")
	stolen := attacker.Expect(wait, "the attacker's ack", func(f tc.Frame) bool { return f.Type == "ack" && f.ID == "ann-2" })
	victim.Post("ann-2", "second")
	ackOf := func(id string) func(tc.Frame) bool {
		return func(f tc.Frame) bool { return f.Type == "ack" && f.ID == id }
	}
	ack := victim.Expect(wait, "the victim's ack", ackOf("ann-2"))
	if ack.Seq == stolen.Seq {
		t.Fatalf("the victim's ann-2 was taken for a resend of the attacker's (seq %d)", ack.Seq)
	}
	watcher.Expect(wait, "the victim's second message", func(f tc.Frame) bool { return f.Text == "second" })

	// A resend from the victim's page (same key) is still a resend.
	victim.Post("ann-2", "second")
	if again := victim.Expect(wait, "the resend's ack", ackOf("ann-2")); again.Seq != ack.Seq {
		t.Fatalf("resend acked %s, want seq %d again", again.Raw, ack.Seq)
	}

	// A key that is not one is refused at connect.
	bad := tc.Dial(t, c.URL(), "hijack", "bob", true, "key=short")
	if e := bad.Expect(wait, "the bad key's error", tc.IsType("error")); e.Code != limits.CodeBadID {
		t.Fatalf("got %s, want %s", e.Raw, limits.CodeBadID)
	}
	if code := bad.WaitClosed(wait); code != websocket.StatusPolicyViolation {
		t.Fatalf("closed with %v, want 1008", code)
	}
}
