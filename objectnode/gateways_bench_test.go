package objectnode

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
)

// BenchmarkGatewayBroadcast is one chat message's way to a router on the
// leader: a frame sent to ten sockets of the router, queued, batched and
// marshalled for the Gateway stream, as 64 messages at a time.
func BenchmarkGatewayBroadcast(b *testing.B) {
	r := newHubRig(b)
	sockets := objectSockets{h: r.h, from: hubObject}
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = fmt.Sprintf("rt~a.%d", i+1)
	}
	frame := []byte(`{"type":"message","id":"c1-123","name":"someone","text":"hello, everyone in the room","ts":1765000000000,"seq":123}`)
	const perRound = 64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += perRound {
		for range perRound {
			sockets.Send(ids, frame, true, 123)
		}
		r.h.mu.Lock()
		q := r.h.queue("rt~a")
		ops := q.ops
		q.ops, q.spare, q.bytes = q.spare, nil, 0
		r.h.mu.Unlock()
		for j := 0; j < len(ops); {
			msg, n := r.h.batch("rt~a", ops[j:], true)
			if _, err := proto.Marshal(msg); err != nil {
				b.Fatal(err)
			}
			j += n
		}
		clear(ops)
		r.h.mu.Lock()
		q.spare = ops[:0]
		r.h.mu.Unlock()
	}
}
