package router

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"hellochat/apps"
	"hellochat/durable"
	pb "hellochat/proto/roompb"
)

var testObject = durable.MustNamespace("t").IDFromName("o")

func sendOp(data string, number uint64) *pb.GatewayOp {
	return &pb.GatewayOp{Socket: "s", Op: &pb.GatewayOp_Send{Send: &pb.SocketSend{Data: []byte(data), Text: true, Number: number}}}
}

// A numbered frame reaches the browser once: one at or below the last
// number queued is a repeat (an object sending again what a dead leader
// may not have handed over) and is dropped; unnumbered frames always go
// and leave the number where it was.
func TestNumberedFramesDropRepeats(t *testing.T) {
	s := newGatewaySocket(&gateway{rt: &Router{}}, "r~1.1", testObject, "", queueShares{}, apps.SocketPolicy{})
	for _, op := range []*pb.GatewayOp{
		sendOp("m1", 1), sendOp("m2", 2), sendOp("hi", 0),
		sendOp("m1", 1), sendOp("m2", 2), // a new leader sends the recent ones again
		sendOp("m3", 3), sendOp("hi", 0), sendOp("m3", 3), sendOp("m5", 5), sendOp("m4", 4),
	} {
		s.apply(op)
	}
	var got []string
	for _, f := range s.queue {
		got = append(got, string(f.data))
	}
	want := []string{"m1", "m2", "hi", "m3", "hi", "m5"}
	if len(got) != len(want) {
		t.Fatalf("queued %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("queued %q, want %q", got, want)
		}
	}
}

// A node sends a broadcast's frame once per batch; each send that names
// it gets its bytes, and one that names a frame the batch lacks closes
// each socket it was for rather than leave a gap.
func TestResolveSharedFrames(t *testing.T) {
	frames := [][]byte{[]byte("one"), []byte("two")}
	named := func(k uint32, data string, also ...string) *pb.GatewayOp {
		return &pb.GatewayOp{Socket: "s", Op: &pb.GatewayOp_Send{Send: &pb.SocketSend{Data: []byte(data), Frame: k, Text: true, Also: also}}}
	}
	for _, tc := range []struct {
		op      *pb.GatewayOp
		want    string
		wantErr bool
	}{
		{named(0, "own"), "s send own", false},
		{named(1, ""), "s send one", false},
		{named(2, ""), "s send two", false},
		{named(3, ""), "s close 1011", true},
		{named(1, "both"), "s close 1011", true},
		{named(3, "", "t", "u"), "s close 1011, t close 1011, u close 1011", true},
		{named(2, "", "t"), "s send two", false},
		{&pb.GatewayOp{Socket: "s", Op: &pb.GatewayOp_Drain{Drain: &pb.SocketDrain{}}}, "s drain", false},
	} {
		ops, err := resolveFrame(tc.op, frames)
		var outs []string
		for _, op := range ops {
			switch o := op.GetOp().(type) {
			case *pb.GatewayOp_Send:
				outs = append(outs, op.GetSocket()+" send "+string(o.Send.GetData()))
			case *pb.GatewayOp_Close:
				outs = append(outs, fmt.Sprint(op.GetSocket(), " close ", o.Close.GetCode()))
			case *pb.GatewayOp_Drain:
				outs = append(outs, op.GetSocket()+" drain")
			}
		}
		if got := strings.Join(outs, ", "); got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%v: %s (err %v), want %s (err %v)", tc.op, got, err, tc.want, tc.wantErr)
		}
	}
}

// A send with more sockets (a broadcast) queues its frame, with its
// number, for each of them that is here, and for no other.
func TestBroadcastSendReachesEachSocket(t *testing.T) {
	g := testGateway()
	for _, id := range []string{"r~1.1", "r~1.2", "r~1.3", "r~1.4"} {
		g.sockets[id] = newGatewaySocket(g, id, testObject, "", queueShares{}, apps.SocketPolicy{})
	}
	op := &pb.GatewayOp{Socket: "r~1.1", Op: &pb.GatewayOp_Send{Send: &pb.SocketSend{
		Data: []byte("hello"), Text: true, Number: 9, Also: []string{"r~1.3", "r~1.gone", "r~1.2"}}}}
	g.take("node", op)
	for id, want := range map[string]string{"r~1.1": "hello#9", "r~1.2": "hello#9", "r~1.3": "hello#9", "r~1.4": ""} {
		s := g.sockets[id]
		var got []string
		for _, f := range s.queue {
			got = append(got, fmt.Sprintf("%s#%d", f.data, f.number))
		}
		if strings.Join(got, ",") != want {
			t.Errorf("%s queued %q, want %q", id, got, want)
		}
	}
}

// A socket's writer runs only while frames wait for its browser: it
// exits once the queue is empty, so an idle browser holds no goroutine,
// and the next frame starts another. Frames queued before the handshake
// wait for it; after the socket stops writing, none starts.
func TestWriterRunsOnlyWhileFramesWait(t *testing.T) {
	s, client := socketPair(t, queueShares{})
	msgs := messages(client)
	writerOn := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.writerOn
	}
	idle := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for writerOn() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the writer still runs", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	s.push(outFrame{data: []byte("early"), text: true})
	if writerOn() {
		t.Fatal("a writer started before the handshake")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.startWriting(ctx)
	if got := string(readN(t, msgs, 1)[0]); got != "early" {
		t.Fatalf("read %q, want the frame queued before the handshake", got)
	}
	idle("after the first frame")
	for i := range 3 {
		s.push(outFrame{data: fmt.Appendf(nil, "frame %d", i), text: true})
		if got, want := string(readN(t, msgs, 1)[0]), fmt.Sprintf("frame %d", i); got != want {
			t.Fatalf("read %q, want %q", got, want)
		}
		idle(fmt.Sprintf("after frame %d", i))
	}
	s.stopWriting()
	s.push(outFrame{data: []byte("late"), text: true})
	if writerOn() {
		t.Fatal("a writer started after the socket stopped writing")
	}
}
