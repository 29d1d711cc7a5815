package wire

import "testing"

// BenchmarkEncodeMessage is a room's per-message fan-out cost: one
// encoding per protocol, shared by every browser of the room.
func BenchmarkEncodeMessage(b *testing.B) {
	m := Message{Seq: 12345, Name: "alice", Text: "hello, this is a fairly ordinary chat message", TS: 1764100000000, ID: "k3f9-17"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		SeedMessage(m)
		V2Message(m)
	}
}

// BenchmarkParse is the per-frame cost of reading a browser's send.
func BenchmarkParse(b *testing.B) {
	frame := []byte(`{"type":"send","id":"k3f9-17","text":"hello, this is a fairly ordinary chat message"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(V2, frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendRecord is the stored form of each message.
func BenchmarkAppendRecord(b *testing.B) {
	m := Message{Seq: 12345, Name: "alice", Text: "hello, this is a fairly ordinary chat message", TS: 1764100000000, ID: "k3f9-17"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		AppendRecord(nil, m, "0123456789abcdef0123456789abcdef")
	}
}
