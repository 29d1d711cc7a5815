package chat

import (
	"context"
	"fmt"
	"testing"

	"hellochat/apps/apptest"
	"hellochat/durable"
)

// BenchmarkRoomSend is the class's and the runtime's CPU for one message
// of a v2 browser in a room of 10 (store it, dedupe it, show it to 10
// sockets, ack it), on a node's Pebble store without Raft: what the app
// costs per message before replication and the network. The messages
// are numbered, as a router numbers them, and posted without waiting, as
// a node posts them; the last one's outcome ends each round. stored-B/msg
// is the keys and values each message's batch holds: what goes into the
// Raft log of every replica.
func BenchmarkRoomSend(b *testing.B) {
	r := apptest.NewPebbleRig(b, Namespace.IDFromName("lobby"), func() durable.Object { return &Room{} })
	for i := range 10 {
		r.Upgrade(fmt.Sprint("g.", i), "http://router"+Path+"?room=lobby&name=u"+fmt.Sprint(i)+"&key=secret-key-0123456789",
			"Sec-WebSocket-Protocol", "hellochat.v2")
	}
	for j := range 10 {
		r.Socks.Take(fmt.Sprint("g.", j)) // their joins
	}
	const round = 1000
	b.ReportAllocs()
	b.ResetTimer()
	before := r.CommittedBytes()
	for i := 0; i < b.N; i += round {
		n := min(round, b.N-i)
		done := make(chan error, 1)
		for j := range n {
			msg := fmt.Appendf(nil, `{"type":"send","id":"m%d","text":"hello, this is a fairly ordinary chat message"}`, i+j)
			last := j == n-1
			err := r.Actor.PostWebSocketMessage(context.Background(), "g.0", uint64(i+j+1), msg, true, func(err error) {
				if err != nil || last {
					select {
					case done <- err:
					default:
					}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if acks := len(r.Socks.Take("g.0")); acks != 2*n { // its message and its ack
			b.Fatalf("the sender was sent %d frames for %d messages", acks, n)
		}
		for j := 1; j < 10; j++ {
			r.Socks.Take(fmt.Sprint("g.", j)) // keep the recorder's memory bounded
		}
	}
	b.ReportMetric(float64(r.CommittedBytes()-before)/float64(b.N), "stored-B/msg")
}
