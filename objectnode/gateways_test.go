package objectnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/durable"
	pb "hellochat/proto/roompb"
)

// hubRig is a gateway hub on a fake clock, with the reports it makes.
type hubRig struct {
	t        testing.TB
	h        *gatewayHub
	clock    time.Time
	mu       sync.Mutex
	reported []string
	stopping chan struct{}
	shares   bool // the routers attached read shared frames
}

func newHubRig(t testing.TB) *hubRig {
	r := &hubRig{t: t, clock: time.Unix(1000, 0), stopping: make(chan struct{}), shares: true}
	r.h = newGatewayHub(func(from objectRef, socket string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.reported = append(r.reported, socket)
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), r.stopping, time.Second)
	r.h.now = func() time.Time { return r.clock }
	t.Cleanup(func() { close(r.stopping) })
	return r
}

func (r *hubRig) reports() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.reported, ",")
}

var hubObject = func() objectRef {
	ns, _ := durable.NewNamespace("t")
	return objectRef{id: ns.IDFromName("o")}
}()

func (r *hubRig) send(socket, msg string) {
	objectSockets{h: r.h, from: hubObject}.Send([]string{socket}, []byte(msg), true, 0)
}

// fakeStream is the node's end of a Gateway stream, recording what it
// sends; failAfter fails the send after that many.
type fakeStream struct {
	grpc.ServerStream
	ctx       context.Context
	mu        sync.Mutex
	got       []string
	msgs      int // stream messages sent
	frames    int // shared frames (GatewayBatch.frames) sent
	sends     int // SocketSend ops sent (one may be for many sockets)
	bytes     int // bytes of frames sent in SocketSend.data
	failAfter int
	// gate, when not nil, holds each Send until it takes a value (or
	// gate is closed): a router that reads the stream slowly.
	gate chan struct{}
}

func (f *fakeStream) Context() context.Context { return f.ctx }

func (f *fakeStream) Send(op *pb.GatewayOp) error {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAfter > 0 && len(f.got) >= f.failAfter {
		return errors.New("broken")
	}
	f.msgs++
	ops := []*pb.GatewayOp{op}
	var frames [][]byte
	if b := op.GetBatch(); b != nil {
		ops, frames = b.GetOps(), b.GetFrames()
		f.frames += len(frames)
	}
	for _, op := range ops {
		switch o := op.GetOp().(type) {
		case *pb.GatewayOp_Send:
			data := o.Send.GetData()
			if k := o.Send.GetFrame(); k > 0 {
				if len(data) > 0 || int(k) > len(frames) {
					f.got = append(f.got, fmt.Sprintf("%s<-bad frame %d of %d with %d bytes", op.GetSocket(), k, len(frames), len(data)))
					continue
				}
				data = frames[k-1]
			}
			f.bytes += len(o.Send.GetData())
			f.sends++
			for _, socket := range append([]string{op.GetSocket()}, o.Send.GetAlso()...) {
				f.got = append(f.got, socket+"<-"+string(data))
			}
		case *pb.GatewayOp_Close:
			f.got = append(f.got, fmt.Sprintf("%s closed %d", op.GetSocket(), o.Close.GetCode()))
		}
	}
	return nil
}

func (f *fakeStream) sent() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.got, ",")
}

// attach serves a stream of gateway, once it is attached, until it ends
// on its own or the returned stop cancels it; stop returns serve's error.
func (r *hubRig) attach(gateway string, failAfter int) (*fakeStream, func(cancelIt bool) error) {
	return r.attachStream(gateway, &fakeStream{failAfter: failAfter})
}

func (r *hubRig) attachStream(gateway string, f *fakeStream) (*fakeStream, func(cancelIt bool) error) {
	ctx, cancel := context.WithCancel(context.Background())
	f.ctx = ctx
	done := make(chan error, 1)
	r.h.mu.Lock()
	before := r.h.nextStream
	r.h.mu.Unlock()
	go func() { done <- r.h.serve(ctx, gateway, r.shares, f) }()
	waitFor(r.t, "the stream attached", func() string {
		r.h.mu.Lock()
		defer r.h.mu.Unlock()
		return fmt.Sprint(r.h.nextStream > before)
	}, "true")
	return f, func(cancelIt bool) error {
		if cancelIt {
			cancel()
		}
		select {
		case err := <-done:
			cancel()
			return err
		case <-time.After(10 * time.Second):
			cancel()
			return errors.New("serve did not end")
		}
	}
}

func waitFor(t testing.TB, what string, get func() string, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for got := get(); got != want; got = get() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q, want %q", what, got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// What objects send before their router's stream arrives waits for it,
// in order; a stream that breaks puts back what it did not send, for the
// next; a newer stream of the same router supersedes the older.
func TestGatewayHubQueuesUntilTheStream(t *testing.T) {
	r := newHubRig(t)
	r.send("rt~a.1", "one")
	r.send("rt~b.1", "elsewhere")
	f, stop := r.attach("rt~a", 1)
	waitFor(t, "the first stream", f.sent, "rt~a.1<-one")
	r.send("rt~a.2", "two") // its send fails
	if err := stop(false); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("serve after a failed send: %v", err)
	}
	f2, stop2 := r.attach("rt~a", 0)
	r.send("rt~a.1", "three")
	waitFor(t, "the second stream", f2.sent, "rt~a.2<-two,rt~a.1<-three")
	f3, stop3 := r.attach("rt~a", 0)
	if err := stop2(false); status.Code(err) != codes.Aborted {
		t.Fatalf("the superseded stream ended with %v, want Aborted", err)
	}
	r.send("rt~a.2", "four")
	waitFor(t, "the third stream", f3.sent, "rt~a.2<-four")
	stop3(true)
}

// A router whose queue is full has the socket that overflowed it closed
// (1013) rather than sent to with a gap; its other sockets go on.
func TestGatewayHubClosesTheSocketThatOverflows(t *testing.T) {
	r := newHubRig(t)
	big := strings.Repeat("x", MaxGatewayQueueBytes/2)
	r.send("rt~a.1", big)
	r.send("rt~a.1", big)
	r.send("rt~a.1", "over")
	r.send("rt~a.1", "after")
	f, stop := r.attach("rt~a", 0)
	defer stop(true)
	waitFor(t, "the stream", func() string {
		return fmt.Sprint(strings.Count(f.sent(), "<-x"), "/", strings.Contains(f.sent(), "closed"))
	}, "2/true")
	if got := f.sent(); !strings.HasSuffix(got, "rt~a.1 closed 1013") || strings.Contains(got, "over") || strings.Contains(got, "after") {
		t.Fatalf("after the overflow: ...%s", got[len(got)-40:])
	}
	r.send("rt~a.2", "fine")
	waitFor(t, "another socket", func() string {
		got := f.sent() // once: the stream may grow between two reads
		return got[strings.LastIndexByte(got, ',')+1:]
	}, "rt~a.2<-fine")
}

// A router without a stream for the grace period is taken for gone: what
// waited for it is dropped and each socket it was for reported once, and
// so is a socket sent to later. A stream from it clears that.
func TestGatewayHubReportsAGoneRoutersSockets(t *testing.T) {
	r := newHubRig(t)
	r.send("rt~a.1", "one")
	r.send("rt~a.1", "two")
	r.send("rt~a.2", "three")
	r.clock = r.clock.Add(time.Second - time.Millisecond)
	if !r.h.expire() {
		t.Fatal("expire does not say a router has no stream")
	}
	if got := r.reports(); got != "" {
		t.Fatalf("reported within the grace: %s", got)
	}
	r.clock = r.clock.Add(time.Millisecond)
	r.h.expire()
	if got := r.reports(); got != "rt~a.1,rt~a.2" {
		t.Fatalf("reported after the grace: %s", got)
	}
	r.send("rt~a.1", "late")
	r.send("rt~a.3", "new")
	r.send("rt~a.3", "newer")
	if got := r.reports(); got != "rt~a.1,rt~a.2,rt~a.3" {
		t.Fatalf("reported for later sends: %s", got)
	}
	f, stop := r.attach("rt~a", 0)
	defer stop(true)
	r.send("rt~a.4", "back")
	waitFor(t, "the returned router's stream", f.sent, "rt~a.4<-back")

	r.clock = r.clock.Add(goneGatewayKept * time.Second)
	if r.h.expire() {
		t.Fatal("expire says a router has no stream, with every router's stream attached")
	}
	r.h.mu.Lock()
	kept := len(r.h.gws)
	r.h.mu.Unlock()
	if kept != 1 {
		t.Fatalf("%d gateways kept, want the attached one", kept)
	}
}

// What waits for a router leaves in batches of maxGatewayBatchOps, in
// order, not one stream message per frame.
func TestGatewayHubSendsInBatches(t *testing.T) {
	r := newHubRig(t)
	const n = 2*maxGatewayBatchOps + 1
	var want []string
	for i := range n {
		r.send("rt~a.1", fmt.Sprint(i))
		want = append(want, fmt.Sprint("rt~a.1<-", i))
	}
	f, stop := r.attach("rt~a", 0)
	defer stop(true)
	waitFor(t, "the stream", f.sent, strings.Join(want, ","))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.msgs != 3 {
		t.Fatalf("%d operations went in %d stream messages, want 3", n, f.msgs)
	}
}

// A frame an object sends to many sockets of one router (one copy, as
// durable makes for a broadcast) crosses the stream once: sends of it in
// a row, with one number, as one send with more sockets; others naming
// it in the batch's frames. A router that does not read shared frames is
// sent each whole.
func TestGatewayHubSendsABroadcastFrameOnce(t *testing.T) {
	for _, shares := range []bool{true, false} {
		r := newHubRig(t)
		r.shares = shares
		sockets := objectSockets{h: r.h, from: hubObject}
		hello := []byte("hello everyone")
		sockets.Send([]string{"rt~a.1", "rt~a.2", "rt~a.3"}, hello, true, 7)
		sockets.Send([]string{"rt~a.1"}, []byte("ack"), true, 0)
		sockets.Send([]string{"rt~a.4"}, hello, true, 7)                    // the same again, after another
		sockets.Send([]string{"rt~a.5"}, []byte("hello everyone"), true, 0) // equal, not the same copy
		f, stop := r.attach("rt~a", 0)
		waitFor(t, "the stream", f.sent, "rt~a.1<-hello everyone,rt~a.2<-hello everyone,rt~a.3<-hello everyone,rt~a.1<-ack,rt~a.4<-hello everyone,rt~a.5<-hello everyone")
		f.mu.Lock()
		got := fmt.Sprintf("%d messages, %d sends, %d shared frames, %d bytes inline", f.msgs, f.sends, f.frames, f.bytes)
		f.mu.Unlock()
		want := fmt.Sprintf("1 messages, 4 sends, 1 shared frames, %d bytes inline", len("ack")+len(hello))
		if !shares {
			want = fmt.Sprintf("1 messages, 6 sends, 0 shared frames, %d bytes inline", len("ack")+5*len(hello))
		}
		if got != want {
			t.Errorf("shares %v: %s; want %s", shares, got, want)
		}
		stop(true)
	}

	// The queued operations stay as the objects sent them: a stream that
	// breaks puts them back, to be batched again.
	r := newHubRig(t)
	hello := []byte("hello")
	queued := []queuedOp{
		{op: newSendOp("rt~a.1", hello, true, 0, 0)},
		{op: newSendOp("rt~a.2", hello, true, 0, 0)},
		{op: newSendOp("rt~a.1", []byte("ack"), true, 0, 0)},
		{op: newSendOp("rt~a.3", hello, true, 0, 0)},
	}
	msg, n := r.h.batch("rt~a", queued, true)
	if b := msg.GetBatch(); n != 4 || len(b.GetOps()) != 3 || len(b.GetFrames()) != 1 || len(b.GetOps()[0].GetSend().GetAlso()) != 1 {
		t.Fatalf("batch of 4 sends: took %d, %v", n, msg)
	}
	for _, q := range queued {
		if s := q.op.GetSend(); len(s.GetData()) == 0 || s.GetFrame() != 0 || len(s.GetAlso()) != 0 {
			t.Fatalf("batching changed a queued send: %v", q.op)
		}
	}
}

// Sends queued for many sockets each are batched the same way: two in a
// row become one with all their sockets, and a router that does not read
// shared frames is sent one send per socket. The queued sends keep their
// own sockets.
func TestGatewayHubBatchesSendsForManySockets(t *testing.T) {
	r := newHubRig(t)
	hello := []byte("hello")
	first := newSendOp("rt~a.1", hello, true, 3, 0)
	first.GetSend().Also = []string{"rt~a.2"}
	second := newSendOp("rt~a.3", hello, true, 3, 0)
	second.GetSend().Also = []string{"rt~a.4", "rt~a.5"}
	queued := []queuedOp{{op: first}, {op: second}}
	msg, n := r.h.batch("rt~a", queued, true)
	if s := msg.GetSend(); n != 2 || msg.GetSocket() != "rt~a.1" || strings.Join(s.GetAlso(), ",") != "rt~a.2,rt~a.3,rt~a.4,rt~a.5" {
		t.Fatalf("shared: took %d into %v", n, msg)
	}
	if got := strings.Join(first.GetSend().GetAlso(), ",") + "|" + strings.Join(second.GetSend().GetAlso(), ","); got != "rt~a.2|rt~a.4,rt~a.5" {
		t.Fatalf("batching changed the queued sends' sockets: %s", got)
	}
	msg, n = r.h.batch("rt~a", queued, false)
	var each []string
	for _, op := range msg.GetBatch().GetOps() {
		if s := op.GetSend(); string(s.GetData()) != "hello" || len(s.GetAlso()) != 0 || s.GetNumber() != 3 {
			t.Fatalf("unshared: a send of %v", op)
		}
		each = append(each, op.GetSocket())
	}
	if got := strings.Join(each, ","); n != 2 || got != "rt~a.1,rt~a.2,rt~a.3,rt~a.4,rt~a.5" {
		t.Fatalf("unshared: took %d into sends to %s", n, got)
	}
}

// A frame sent to many sockets in one call is queued once per router,
// each socket admitted on its own: one already closed is left out, and a
// gone router's sockets are each reported closed, however they were
// queued. Each router's stream sends the frame once, and the bytes the
// queue counted for it (once per socket) are all counted off again.
func TestGatewayHubQueuesABroadcastOncePerRouter(t *testing.T) {
	r := newHubRig(t)
	sockets := objectSockets{h: r.h, from: hubObject}
	sockets.Close("rt~a.2", 1000, "bye")
	hi := []byte("hi")
	sockets.Send([]string{"rt~a.1", "rt~b.1", "rt~a.2", "rt~a.3", "rt~b.2", "rt~c.1"}, hi, true, 9)
	r.h.mu.Lock()
	var queued []string
	for _, gw := range []string{"rt~a", "rt~b", "rt~c"} {
		q := r.h.gws[gw]
		queued = append(queued, fmt.Sprintf("%s: %d ops, %d bytes", gw, len(q.ops), q.bytes))
	}
	r.h.mu.Unlock()
	if got, want := strings.Join(queued, "; "), "rt~a: 2 ops, 4 bytes; rt~b: 1 ops, 4 bytes; rt~c: 1 ops, 2 bytes"; got != want {
		t.Fatalf("queued %s, want %s", got, want)
	}
	fa, stopA := r.attach("rt~a", 0)
	defer stopA(true)
	fb, stopB := r.attach("rt~b", 0)
	defer stopB(true)
	waitFor(t, "router a", fa.sent, "rt~a.2 closed 1000,rt~a.1<-hi,rt~a.3<-hi")
	waitFor(t, "router b", fb.sent, "rt~b.1<-hi,rt~b.2<-hi")
	for _, f := range []*fakeStream{fa, fb} {
		f.mu.Lock()
		sends := f.sends
		f.mu.Unlock()
		if sends != 1 {
			t.Errorf("a router was sent the frame in %d sends, want 1", sends)
		}
	}
	waitFor(t, "router a's backlog", func() string {
		r.h.mu.Lock()
		defer r.h.mu.Unlock()
		ops, bytes := r.h.gws["rt~a"].backlog()
		return fmt.Sprint(ops, " ops, ", bytes, " bytes")
	}, "0 ops, 0 bytes")

	sockets.Send([]string{"rt~c.2"}, hi, true, 10)
	r.clock = r.clock.Add(time.Second)
	r.h.expire()
	if got := r.reports(); got != "rt~c.1,rt~c.2" {
		t.Fatalf("a gone router's sockets reported: %q, want rt~c.1,rt~c.2", got)
	}
}

// A router's streamed messages are held while the node's queue for it is
// crowded, counting what its stream took and has not sent, until the
// queue is below half the mark: overload slows the router's browsers
// instead of overflowing the queue and closing their sockets.
func TestGatewayHubHoldsARoutersMessagesWhileItsQueueIsCrowded(t *testing.T) {
	r := newHubRig(t)
	ctx := context.Background()
	for i := range gatewayCrowdedOps - 1 {
		r.send("rt~a.1", fmt.Sprint(i))
	}
	if err := r.h.awaitRoom(ctx, "rt~a"); err != nil || r.h.holds() != 0 {
		t.Fatalf("below the mark: %v, %d holds", err, r.h.holds())
	}
	r.send("rt~a.1", "crowds")
	done := make(chan error, 1)
	go func() { done <- r.h.awaitRoom(ctx, "rt~a") }()
	waitFor(t, "the hold", func() string { return fmt.Sprint(r.h.holds()) }, "1")
	if err := r.h.awaitRoom(ctx, "rt~b"); err != nil {
		t.Fatalf("another router's queue is not crowded: %v", err)
	}

	f, stop := r.attachStream("rt~a", &fakeStream{gate: make(chan struct{})})
	defer stop(true)
	defer close(f.gate)
	const batches = gatewayCrowdedOps / maxGatewayBatchOps
	const roomyAfter = (gatewayCrowdedOps-gatewayRoomyOps)/maxGatewayBatchOps + 1 // batches sent
	for k := 1; k < roomyAfter; k++ {
		f.gate <- struct{}{}
		// Once the stream has counted batch k sent, the hold must still
		// be waiting for room.
		waitFor(t, fmt.Sprint("batch ", k, " counted"), func() string {
			r.h.mu.Lock()
			defer r.h.mu.Unlock()
			ops, _ := r.h.gws["rt~a"].backlog()
			return fmt.Sprint(ops)
		}, fmt.Sprint(gatewayCrowdedOps-k*maxGatewayBatchOps))
		r.h.mu.Lock()
		waiting := r.h.gws["rt~a"].roomy != nil
		r.h.mu.Unlock()
		if !waiting {
			t.Fatalf("released with %d of %d batches sent, want %d", k, batches, roomyAfter)
		}
	}
	f.gate <- struct{}{}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("released with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still held with %d of %d batches sent", roomyAfter, batches)
	}

	// A hold ends with its stream.
	for i := range gatewayCrowdedOps {
		r.send("rt~c.1", fmt.Sprint(i))
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- r.h.awaitRoom(cctx, "rt~c") }()
	waitFor(t, "the second hold", func() string { return fmt.Sprint(r.h.holds()) }, "2")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("a hold whose stream ended: %v", err)
	}
}
