package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/apps"
	"hellochat/durable"
	tc "hellochat/internal/testcluster"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// lobbyNS is the class of the socket test app: a room on hibernating
// WebSockets. A socket's attachment is its name; a message goes to every
// socket as "name: text"; joins and closes are announced the same way.
// GET lists its sockets, POST ?auto=REQ,RESP sets its auto-response, and
// every message event is counted in storage.
var lobbyNS = durable.MustNamespace("lobby")

type lobby struct{}

func (lobby) broadcast(s *durable.State, line string) error {
	all, err := s.GetWebSockets("all")
	if err != nil {
		return err
	}
	for _, ws := range all {
		if err := ws.Send([]byte(line), true); err != nil {
			return err
		}
	}
	return nil
}

type lobbySocket struct {
	ID   string   `json:"id"`
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func (l lobby) Fetch(ctx context.Context, s *durable.State, w http.ResponseWriter, r *http.Request) {
	fail := func(err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	switch {
	case apps.IsWebSocketUpgrade(r):
		name := r.URL.Query().Get("name")
		if name == "" {
			http.Error(w, "no name", http.StatusBadRequest)
			return
		}
		ws, err := s.AcceptWebSocket(r, "all", "name:"+name)
		if err == nil {
			err = ws.SetAttachment([]byte(name))
		}
		if err == nil {
			err = l.broadcast(s, name+" joined")
		}
		if err != nil {
			fail(err)
			return
		}
		w.WriteHeader(http.StatusSwitchingProtocols)
	case r.Method == http.MethodPost:
		req, resp, _ := strings.Cut(r.URL.Query().Get("auto"), ",")
		if err := s.SetWebSocketAutoResponse(req, resp); err != nil {
			fail(err)
		}
	default:
		all, err := s.GetWebSockets("")
		if err != nil {
			fail(err)
			return
		}
		out := []lobbySocket{}
		for _, ws := range all {
			out = append(out, lobbySocket{ws.ID(), string(ws.Attachment()), ws.Tags()})
		}
		events, _, _ := durable.GetJSON[int](s.Storage(), "events")
		w.Header().Set("X-Events", fmt.Sprint(events))
		json.NewEncoder(w).Encode(out)
	}
}

func (l lobby) WebSocketMessage(ctx context.Context, s *durable.State, ws durable.WebSocket, msg []byte, text bool) error {
	events, _, err := durable.GetJSON[int](s.Storage(), "events")
	if err != nil {
		return err
	}
	if err := durable.PutJSON(s.Storage(), "events", events+1); err != nil {
		return err
	}
	if string(msg) == "bye" {
		return ws.Close(4000, "asked to")
	}
	return l.broadcast(s, fmt.Sprintf("%s: %s", ws.Attachment(), msg))
}

func (l lobby) WebSocketClose(ctx context.Context, s *durable.State, ws durable.WebSocket, code int, reason string, clean bool) error {
	return l.broadcast(s, fmt.Sprintf("%s left %d", ws.Attachment(), code))
}

func (l lobby) WebSocketError(ctx context.Context, s *durable.State, ws durable.WebSocket, err error) error {
	return l.broadcast(s, fmt.Sprintf("%s broke", ws.Attachment()))
}

func lobbyApps(t *testing.T) *apps.Registry {
	reg, err := apps.NewRegistry(apps.App{
		Name:    "lobby",
		Classes: []apps.Class{{Name: lobbyNS.Name(), New: func() durable.Object { return lobby{} }}},
		Routes: []apps.Route{{Pattern: "/lobby/{name}", Handler: func(stub apps.Stub) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				apps.Forward(w, r, stub, lobbyNS.IDFromName(r.PathValue("name")), "lobby")
			})
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// lobbyConn is a browser in a lobby.
type lobbyConn struct {
	t    *testing.T
	name string
	conn *websocket.Conn
	in   chan string
	done chan struct{}
	code websocket.StatusCode
}

func joinLobby(t *testing.T, base, lobbyName, name string) *lobbyConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/lobby/"+lobbyName+"?name="+name, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("%s joins %s: %v (status %d)", name, lobbyName, err, status)
	}
	c := &lobbyConn{t: t, name: name, conn: conn, in: make(chan string, 100), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.code = websocket.CloseStatus(err)
				return
			}
			c.in <- string(b)
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

func (c *lobbyConn) say(text string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		c.t.Fatalf("%s says %q: %v", c.name, text, err)
	}
}

// expect waits for the next line, which must be want.
func (c *lobbyConn) expect(want string) {
	c.t.Helper()
	select {
	case got := <-c.in:
		if got != want {
			c.t.Fatalf("%s got %q, want %q", c.name, got, want)
		}
	case <-c.done:
		c.t.Fatalf("%s was closed (%d) waiting for %q", c.name, c.code, want)
	case <-time.After(20 * time.Second):
		c.t.Fatalf("%s: no %q within 20s", c.name, want)
	}
}

// closed waits for the router to close the socket, and returns its code.
func (c *lobbyConn) closed() websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
		return c.code
	case <-time.After(20 * time.Second):
		c.t.Fatalf("%s not closed within 20s", c.name)
		return 0
	}
}

// lobbySockets lists a lobby's sockets through base, and its message events.
func lobbySockets(t *testing.T, base, name string) (sockets []lobbySocket, events string) {
	t.Helper()
	resp, err := http.Get(base + "/lobby/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /lobby/%s: %d %s", name, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &sockets); err != nil {
		t.Fatalf("GET /lobby/%s: %v in %s", name, err, b)
	}
	return sockets, resp.Header.Get("X-Events")
}

func socketNames(ss []lobbySocket) string {
	var names []string
	for _, s := range ss {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

// Browsers on two routers share one object's sockets: each joins through
// its own router, both are listed (getWebSockets), a message from one
// reaches both, and a browser's close reaches the object, which stops
// listing it.
func TestObjectSocketsAcrossTwoRouters(t *testing.T) {
	c := tc.New(t, 3, tc.Options{Apps: lobbyApps(t)})
	r2 := c.StartRouter("router2")
	t.Cleanup(func() { r2.Shutdown(context.Background()) })
	base2 := "http://" + r2.Addr()

	ann := joinLobby(t, c.URL(), "hall", "ann")
	ann.expect("ann joined")
	bob := joinLobby(t, base2, "hall", "bob")
	ann.expect("bob joined")
	bob.expect("bob joined")

	ss, _ := lobbySockets(t, base2, "hall")
	if got := socketNames(ss); len(ss) != 2 || !strings.Contains(got, "ann") || !strings.Contains(got, "bob") {
		t.Fatalf("sockets listed: %+v", ss)
	}
	for _, s := range ss {
		want := "router1~"
		if s.Name == "bob" {
			want = "router2~"
		}
		if !strings.HasPrefix(s.ID, want) {
			t.Errorf("%s's socket id %q does not name its router %s", s.Name, s.ID, want)
		}
	}
	ann.say("hi")
	ann.expect("ann: hi")
	bob.expect("ann: hi")
	bob.say("hello")
	ann.expect("bob: hello")
	bob.expect("bob: hello")

	ann.conn.Close(websocket.StatusNormalClosure, "done")
	bob.expect("ann left 1000")
	ss, _ = lobbySockets(t, c.URL(), "hall")
	if got := socketNames(ss); got != "bob" {
		t.Fatalf("after ann closed, sockets: %s", got)
	}
	bob.say("bye")
	if code := bob.closed(); code != 4000 {
		t.Fatalf("the object's close reached bob as %d, want 4000", code)
	}
	tc.Eventually(t, 10*time.Second, func() error {
		if ss, _ := lobbySockets(t, c.URL(), "hall"); len(ss) != 0 {
			return fmt.Errorf("sockets after both closed: %+v", ss)
		}
		return nil
	})
}

// An object with sockets open is evicted from memory, and the sockets stay
// open: an auto-response is answered by the router without waking it
// (no event, no actor), and the next message wakes it with its sockets'
// attachments. Then its shard's leader is killed: the sockets stay open
// and their attachments survive, and the new leader reaches both
// routers' browsers.
func TestObjectSocketsThroughEvictionAndFailover(t *testing.T) {
	c := tc.New(t, 3, tc.Options{Apps: lobbyApps(t), ObjectIdle: 300 * time.Millisecond})
	r2 := c.StartRouter("router2")
	t.Cleanup(func() { r2.Shutdown(context.Background()) })
	base2 := "http://" + r2.Addr()
	object := lobbyNS.IDFromName("hall").StorageObject()

	ann := joinLobby(t, c.URL(), "hall", "ann")
	ann.expect("ann joined")
	bob := joinLobby(t, base2, "hall", "bob")
	ann.expect("bob joined")
	bob.expect("bob joined")
	resp, err := http.Post(c.URL()+"/lobby/hall?auto=ping,pong", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("set the auto-response: %v %v", resp, err)
	}
	resp.Body.Close()

	leader := c.ObjectLeader(object)
	tc.Eventually(t, 20*time.Second, func() error {
		if n := c.Nodes[leader].ActiveObjects(); n != 0 {
			return fmt.Errorf("%d objects still active on the leader", n)
		}
		return nil
	})
	for range 3 {
		bob.say("ping")
		bob.expect("pong")
	}
	if n := c.Nodes[leader].ActiveObjects(); n != 0 {
		t.Fatalf("an auto-response woke the object: %d active", n)
	}
	ann.say("awake?")
	ann.expect("ann: awake?")
	bob.expect("ann: awake?")
	if _, events := lobbySockets(t, c.URL(), "hall"); events != "1" {
		t.Fatalf("message events counted: %s, want 1 (pings are not events)", events)
	}

	c.Kill(leader)
	bob.say("still here")
	ann.expect("bob: still here")
	bob.expect("bob: still here")
	if next := c.ObjectLeader(object); next == leader || next < 0 {
		t.Fatalf("the object's shard is led by %d after killing %d", next, leader)
	}
	ss, events := lobbySockets(t, base2, "hall")
	if got := socketNames(ss); len(ss) != 2 || !strings.Contains(got, "ann") || !strings.Contains(got, "bob") || events != "2" {
		t.Fatalf("after failover: sockets %+v, events %s", ss, events)
	}
	bob.say("ping")
	bob.expect("pong")
}

// A router that holds a socket and goes away without a word (its Gateway
// stream ends and never comes back) is taken for gone after the grace
// period: the object hears that the socket closed (1006) and stops
// listing it. A router cannot use another router's gateway.
func TestObjectSocketsOfAGoneRouterAreClosed(t *testing.T) {
	c := tc.New(t, 3, tc.Options{Apps: lobbyApps(t), GatewayGrace: time.Second})
	hall := lobbyNS.IDFromName("hall")
	leader := c.ObjectLeader(hall.StorageObject())
	node := pb.NewObjectsClient(grpcConn(t, c, security.RoleRouter, c.Config(leader).GRPCListen))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	upgrade := func(socket string) (*pb.FetchResponse, error) {
		return node.Fetch(ctx, &pb.FetchRequest{Class: lobbyNS.Name(), Id: hall.String(), Method: "GET",
			Url: "http://test/lobby/hall?name=ghost", Socket: socket})
	}

	// Another router's ids are refused.
	if _, err := upgrade("router1~0123.1"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("an upgrade on router1's gateway by test-router: %v, want PermissionDenied", err)
	}
	other, err := openGateway(ctx, node, "router1~0123")
	if err == nil {
		_, err = other.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("router1's gateway stream opened by test-router: %v, want PermissionDenied", err)
	}

	sctx, stop := context.WithCancel(ctx)
	stream, err := openGateway(sctx, node, "test-router~ghost")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := upgrade("test-router~ghost.1")
	if err != nil || resp.GetResponse().GetStatus() != http.StatusSwitchingProtocols {
		t.Fatalf("the ghost's upgrade: %v %v", resp, err)
	}
	op, err := stream.Recv()
	if err != nil || op.GetSocket() != "test-router~ghost.1" || string(op.GetSend().GetData()) != "ghost joined" {
		t.Fatalf("the ghost's stream: %v %v", op, err)
	}
	stop() // the ghost router is gone

	ann := joinLobby(t, c.URL(), "hall", "ann")
	ann.expect("ann joined")
	ann.expect("ghost left 1006")
	if ss, _ := lobbySockets(t, c.URL(), "hall"); socketNames(ss) != "ann" {
		t.Fatalf("sockets after the ghost's router was taken for gone: %+v", ss)
	}
}

// openGateway opens a Gateway stream as a router would, with its hello.
func openGateway(ctx context.Context, node pb.ObjectsClient, gateway string) (grpc.BidiStreamingClient[pb.GatewayUp, pb.GatewayOp], error) {
	st, err := node.Gateway(ctx)
	if err != nil {
		return nil, err
	}
	return st, st.Send(&pb.GatewayUp{Up: &pb.GatewayUp_Hello{Hello: &pb.GatewayHello{Gateway: gateway}}})
}

// A browser that sends faster than the router's frame rate is read more
// slowly, not refused: every message reaches the object, in order, and
// the burst past the allowance takes at least the time the rate allows.
func TestObjectSocketsArePacedNotDropped(t *testing.T) {
	const rate, burst, n = 20, 5, 30
	c := tc.New(t, 3, tc.Options{Apps: lobbyApps(t), FrameRate: rate, FrameBurst: burst})
	ann := joinLobby(t, c.URL(), "hall", "ann")
	ann.expect("ann joined")
	start := time.Now()
	for i := 1; i <= n; i++ {
		ann.say(fmt.Sprintf("m%d", i))
	}
	for i := 1; i <= n; i++ {
		ann.expect(fmt.Sprintf("ann: m%d", i))
	}
	if took, least := time.Since(start), time.Duration(n-burst)*time.Second/rate; took < least {
		t.Fatalf("%d messages at %d/s (burst %d) went through in %v, under %v", n, rate, burst, took, least)
	}
	if _, events := lobbySockets(t, c.URL(), "hall"); events != fmt.Sprint(n) {
		t.Fatalf("the object took %s messages, want %d", events, n)
	}
}
