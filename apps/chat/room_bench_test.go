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
// sockets, ack it), over an in-memory store that commits at once: what
// the app costs per message before Raft, Pebble and the network.
func BenchmarkRoomSend(b *testing.B) {
	r := apptest.NewRig(b, Namespace.IDFromName("lobby"), func() durable.Object { return &Room{} })
	for i := range 10 {
		r.Upgrade(fmt.Sprint("g.", i), "http://router"+Path+"?room=lobby&name=u"+fmt.Sprint(i)+"&key=secret-key-0123456789",
			"Sec-WebSocket-Protocol", "hellochat.v2")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg := fmt.Appendf(nil, `{"type":"send","id":"m%d","text":"hello, this is a fairly ordinary chat message"}`, i)
		if err := r.Actor.WebSocketMessageAt(context.Background(), "g.0", 0, msg, true); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			r.Socks.Take("g.0") // keep the recorder's memory bounded
			for j := 1; j < 10; j++ {
				r.Socks.Take(fmt.Sprint("g.", j))
			}
		}
	}
}
