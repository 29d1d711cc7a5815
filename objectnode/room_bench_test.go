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

// syncedCommitter commits each batch to Pebble with fsync on this node, as
// stage 1 did: the actor's cost without the network.
type syncedCommitter struct{ store *storage.Store }

func (c syncedCommitter) Commit(object string, ops []storage.Op, _ storage.Guards, done func(error)) {
	go func() { done(c.store.Apply(object, ops)) }()
}

// BenchmarkRoomAppend measures the room actor's path for one message:
// validate, dedupe, group into a batch, commit (fsync'd Pebble), broadcast
// and ack, with many messages in flight as in a busy room.
func BenchmarkRoomAppend(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := storage.OpenStore(b.TempDir(), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	n := &Node{cfg: Config{ID: "bench", RoomIdle: time.Hour}, log: quiet, store: store,
		committer: syncedCommitter{store}, stopping: make(chan struct{}), rooms: map[string]*room{},
		reg: prometheus.NewRegistry()}
	n.registerMetrics() // the room counts what it receives and commits
	r := newRoom(n, "bench-room")
	go r.run()
	defer close(n.stopping)

	// Unbounded: a reader starved of CPU must not get the stream dropped,
	// which this node without a gRPC server cannot do.
	st := newStream("router", math.MaxInt, math.MaxInt)
	attach := &attachReq{st: st, result: make(chan error, 1)}
	ctx := context.Background()
	r.enqueue(ctx, roomReq{attach: attach})
	if err := <-attach.result; err != nil {
		b.Fatal(err)
	}
	r.enqueue(ctx, roomReq{from: st, req: &pb.AttachRequest{Kind: &pb.AttachRequest_Join{Join: &pb.Join{Session: 1, Name: "b", Quiet: true}}}})

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
				Session: 1, ClientId: fmt.Sprintf("id-%d", i), Text: "hello, this is a benchmark message", Name: "b"}}}})
		}
	}()
	for i := 0; i < b.N; i++ {
		<-acks
	}
}
