package router

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"hellochat/apps"
)

// testGateway is a gateway with a router's metrics and nothing else: what a
// socket's queue and writes need.
func testGateway() *gateway {
	rt := &Router{}
	rt.metrics = newMetrics(rt)
	g := &gateway{rt: rt, sockets: map[string]*gatewaySocket{}}
	rt.gateway = g
	return g
}

// socketPair returns a gateway socket on the server end of a real
// WebSocket on loopback, upgraded as the router upgrades browsers, and
// the client end. Neither of the socket's loops runs: what it is sent
// stays queued until the test writes it.
func socketPair(t testing.TB, shares queueShares) (*gatewaySocket, *websocket.Conn) {
	t.Helper()
	g := testGateway()
	sockets := make(chan *gatewaySocket, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &leanHijack{ResponseWriter: w}
		c, err := websocket.Accept(hj, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		s := newGatewaySocket(g, "r~1.1", testObject, "", shares, apps.SocketPolicy{})
		s.conn, s.raw = c, hj.conn
		sockets <- s
	}))
	t.Cleanup(srv.Close)
	client, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	client.SetReadLimit(-1)
	t.Cleanup(func() { client.CloseNow() })
	s := <-sockets
	t.Cleanup(func() { s.conn.CloseNow() })
	return s, client
}

// messages reads the client end into a channel, closed when it ends.
func messages(client *websocket.Conn) <-chan []byte {
	msgs := make(chan []byte, 100)
	go func() {
		defer close(msgs)
		for {
			_, data, err := client.Read(context.Background())
			if err != nil {
				return
			}
			msgs <- data
		}
	}()
	return msgs
}

func readN(t *testing.T, msgs <-chan []byte, n int) [][]byte {
	t.Helper()
	var got [][]byte
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for len(got) < n {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the connection ended after %d messages, want %d", len(got), n)
			}
			got = append(got, m)
		case <-timeout.C:
			t.Fatalf("read %d messages, want %d", len(got), n)
		}
	}
	return got
}

// textFrames are frames for the browser, as a socket queues them.
func textFrames(data ...[]byte) []outFrame {
	out := make([]outFrame, len(data))
	for i, d := range data {
		out[i] = outFrame{data: d, text: true}
	}
	return out
}
