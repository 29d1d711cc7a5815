package objectnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// BenchmarkDedupeIndex stores b.N messages in one room through the actor
// (fsync'd Pebble commits) and reports how many dedupe records, and bytes
// of them ('d' and 'i' keys and values), the room holds at the end: with a
// window, at most the window whatever b.N; without one, one per message.
func BenchmarkDedupeIndex(b *testing.B) {
	for _, w := range []struct {
		name   string
		window uint64
	}{{"window=off", math.MaxUint64}, {"window=1024", 1024}, {"window=4096", 4096}} {
		b.Run(w.name, func(b *testing.B) {
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			store, err := storage.OpenStore(b.TempDir(), quiet)
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			n := &Node{cfg: Config{ID: "bench", RoomIdle: time.Hour}, log: quiet, store: store,
				committer: syncedCommitter{store}, stopping: make(chan struct{}), rooms: map[string]*room{},
				reg: prometheus.NewRegistry()}
			n.registerMetrics()
			r := newRoom(n, "bench-room")
			r.dedupeWindow = w.window
			go r.run()
			defer close(n.stopping)

			// Unbounded: a reader starved of CPU must not get the stream
			// dropped, which this node without a gRPC server cannot do.
			st := newStream("router", math.MaxInt, math.MaxInt)
			attach := &attachReq{st: st, result: make(chan error, 1)}
			ctx := context.Background()
			if err := r.enqueue(ctx, roomReq{attach: attach}); err != nil {
				b.Fatal(err)
			}
			if err := <-attach.result; err != nil {
				b.Fatal(err)
			}
			acks := make(chan struct{}, 1024)
			go func() {
				for range st.wake {
					for _, ev := range st.take() {
						if ev.GetAck() != nil {
							acks <- struct{}{}
						}
					}
				}
			}()
			b.ResetTimer()
			go func() {
				for i := 0; i < b.N; i++ {
					r.enqueue(ctx, roomReq{from: st, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Send{Send: &pb.Send{
						Session: 1, ClientId: fmt.Sprintf("id-%d", i), Text: "hello, this is a benchmark message",
						Name: "bench user", Key: "0123456789abcdefghijklmn"}}}})
				}
			}()
			for i := 0; i < b.N; i++ {
				<-acks
			}
			b.StopTimer()
			records, bytes := 0, 0
			for _, prefix := range []byte{dedupeKeyPrefix, seqIDKeyPrefix} {
				err := store.Scan(r.name, []byte{prefix}, []byte{prefix + 1}, false, func(k, v []byte) bool {
					records++
					bytes += len(k) + len(v)
					return true
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(records), "index-records")
			b.ReportMetric(float64(bytes), "index-bytes")
		})
	}
}
