package objectnode_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tc "hellochat/internal/testcluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

const wait = 10 * time.Second

// attachAsRouter opens a room on its leader the way a router does, with a
// router's certificate, and returns the stream after its Opened event.
func attachAsRouter(t *testing.T, c *tc.Cluster, room, routerID string) pb.Rooms_AttachClient {
	t.Helper()
	addr := c.Config(c.Leader(room)).GRPCListen
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c.Security(security.RoleRouter, "router9").ClientCreds()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	t.Cleanup(cancel)
	stream, err := pb.NewRoomsClient(conn).Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.AttachRequest{Kind: &pb.AttachRequest_Open{Open: &pb.Open{Room: room, RouterId: routerID}}}); err != nil {
		t.Fatal(err)
	}
	return stream
}

// answerTo reads events until the ack or refusal of clientID.
func answerTo(t *testing.T, stream pb.Rooms_AttachClient, clientID string) *pb.AttachEvent {
	t.Helper()
	for i := 0; i < 1000; i++ {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for the answer to %q: %v", clientID, err)
		}
		if a := ev.GetAck(); a != nil && a.ClientId == clientID {
			return ev
		}
		if r := ev.GetReject(); r != nil && r.ClientId == clientID {
			return ev
		}
	}
	t.Fatalf("no answer to %q in 1000 events", clientID)
	return nil
}

func send(t *testing.T, stream pb.Rooms_AttachClient, s *pb.Send) {
	t.Helper()
	if err := stream.Send(&pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: s}}); err != nil {
		t.Fatal(err)
	}
}

// TestNodeChecksWhatRoutersSend: a router's requests reach the room actor
// unchecked by anyone else, so the node holds every field to the limits
// the router holds browsers to. Bad fields are refused one by one, with the
// code a browser would get, and the room carries on with nothing lost.
func TestNodeChecksWhatRoutersSend(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	room := "node-input"
	stream := attachAsRouter(t, c, room, "router9.0123456789ab")
	if ev, err := stream.Recv(); err != nil || ev.GetOpened() == nil {
		t.Fatalf("first event %v, %v; want opened", ev, err)
	}
	if err := stream.Send(&pb.AttachRequest{Kind: &pb.AttachRequest_Join{Join: &pb.Join{Session: 1, Name: "alice"}}}); err != nil {
		t.Fatal(err)
	}

	bad := []struct {
		what string
		send *pb.Send
		code string
	}{
		{"the reserved name", &pb.Send{Session: 1, Name: "System", ClientId: "a1", Text: "hi"}, "bad_name"},
		{"a name with a NUL", &pb.Send{Session: 1, Name: "al\x00ice", ClientId: "a2", Text: "hi"}, "bad_name"},
		{"a name with an escape", &pb.Send{Session: 1, Name: "al\x1b[31mice", ClientId: "a3", Text: "hi"}, "bad_name"},
		{"a name with a bidi override", &pb.Send{Session: 1, Name: "al\u202eice", ClientId: "a4", Text: "hi"}, "bad_name"},
		{"a 33-character name", &pb.Send{Session: 1, Name: strings.Repeat("n", 33), ClientId: "a5", Text: "hi"}, "bad_name"},
		{"a 1 MiB name", &pb.Send{Session: 1, Name: strings.Repeat("n", 1<<20), ClientId: "a6", Text: "hi"}, "bad_name"},
		{"an id with a NUL", &pb.Send{Session: 1, Name: "alice", ClientId: "a8\x00k", Text: "hi"}, "bad_id"},
		{"an id with a newline", &pb.Send{Session: 1, Name: "alice", ClientId: "a9\n", Text: "hi"}, "bad_id"},
		{"a 65-byte id", &pb.Send{Session: 1, Name: "alice", ClientId: strings.Repeat("i", 65), Text: "hi"}, "bad_id"},
		{"a short key", &pb.Send{Session: 1, Name: "alice", ClientId: "a10", Text: "hi", Key: "short"}, "bad_id"},
		{"text with a control character", &pb.Send{Session: 1, Name: "alice", ClientId: "a11", Text: "h\x07i"}, "bad_json"},
		{"text too large", &pb.Send{Session: 1, Name: "alice", ClientId: "a12", Text: strings.Repeat("x", 4097)}, "too_large"},
		{"empty text", &pb.Send{Session: 1, Name: "alice", ClientId: "a13", Text: " "}, "empty"},
	}
	for _, b := range bad {
		send(t, stream, b.send)
		ev := answerTo(t, stream, b.send.ClientId)
		if r := ev.GetReject(); r == nil || r.Code != b.code {
			t.Errorf("%s: got %v, want a refusal %s", b.what, ev, b.code)
		}
	}

	// The room carries on: the next good message takes seq 1, so nothing
	// bad was stored, and it reaches the stream.
	send(t, stream, &pb.Send{Session: 1, Name: "alice", ClientId: "good", Text: "still here"})
	ev := answerTo(t, stream, "good")
	if a := ev.GetAck(); a == nil || a.Seq != 1 {
		t.Fatalf("good message after the bad ones: %v, want ack of seq 1", ev)
	}
	if p := page(t, stream, &pb.PageRequest{Id: 7, Limit: 100}); len(p.Messages) != 1 ||
		p.Messages[0].Text != "still here" || p.Messages[0].Name != "alice" {
		t.Fatalf("history %v, want only alice's good message", p.Messages)
	}
	// Nothing comes after the last possible seq (the seq after it wraps).
	if p := page(t, stream, &pb.PageRequest{Id: 8, Forward: true, After: math.MaxUint64}); len(p.Messages) != 0 {
		t.Fatalf("page after seq 2^64-1: %v, want none", p.Messages)
	}
}

// page reads one page of history on the stream.
func page(t *testing.T, stream pb.Rooms_AttachClient, req *pb.PageRequest) *pb.Page {
	t.Helper()
	if err := stream.Send(&pb.AttachRequest{Kind: &pb.AttachRequest_Page{Page: req}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for page %d: %v", req.Id, err)
		}
		if p := ev.GetPage(); p != nil && p.Id == req.Id {
			return p
		}
	}
	t.Fatalf("no page %d in 1000 events", req.Id)
	return nil
}

// TestNodeRefusesBadRouterID: a router id is echoed to every other router
// in presence and typing events, so it is held to a bound and to printable
// text; a bad one is refused before the room is touched.
func TestNodeRefusesBadRouterID(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	for _, id := range []string{strings.Repeat("r", 1<<16), "router\x00x", "router\nx"} {
		stream := attachAsRouter(t, c, "router-id-room", id)
		ev, err := stream.Recv()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("router id %.20q: got %v, %v; want InvalidArgument", id, ev, err)
		}
	}
}
