package router

import (
	"testing"

	pb "hellochat/proto/roompb"
)

// BenchmarkEncodeMessage is the router's per-message fan-out cost: one
// encoding per protocol, shared by every browser of the room.
func BenchmarkEncodeMessage(b *testing.B) {
	m := &pb.ChatMessage{Seq: 12345, Name: "alice", Text: "hello, this is a fairly ordinary chat message", TsMs: 1764100000000, ClientId: "k3f9-17"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		seedMessageFrame(m)
		v2MessageFrame(m)
	}
}

// BenchmarkParseFrame is the per-frame cost of reading a browser's send.
func BenchmarkParseFrame(b *testing.B) {
	frame := []byte(`{"type":"send","id":"k3f9-17","text":"hello, this is a fairly ordinary chat message"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := parseFrame(protoV2, frame); err != nil {
			b.Fatal(err)
		}
	}
}
