package wire

import (
	"math/rand/v2"
	"testing"
)

// The hand-written frames are byte for byte what encoding/json makes of
// the same values: tricky strings by hand, then random ones (control
// characters, quotes, HTML, invalid UTF-8, U+2028) from a fixed seed.
func TestFastFramesMatchEncodingJSON(t *testing.T) {
	strs := []string{"", "hello", `"quoted" and \back\slash`, "<b>&amp;</b>", "tab\tnew\nline\r\b\f\x00\x1f\x7f",
		"ünïcødé 🚀", "\u2028line\u2029para", "bad \xff\xfe utf8 \xc3", "\xe2\x80", "emoji at end 🚀\xf0\x9f"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		strs = append(strs, randomText(rng))
	}
	for i, s := range strs {
		other := strs[(i+1)%len(strs)]
		for _, m := range []Message{
			{Seq: uint64(i) + 1, ID: s, Name: other, Text: s, TS: 1764100000123},
			{Seq: 0, ID: "", Name: s, Text: other, TS: 0},
			{Seq: 1 << 63, Name: "", Text: "", TS: -5},
		} {
			if got, want := string(V2Message(m)), string(encode(struct {
				Type string `json:"type"`
				Message
			}{"message", m})); got != want {
				t.Fatalf("V2Message(%#v):\n got %s\nwant %s", m, got, want)
			}
			if got, want := string(SeedMessage(m)), string(encode(seedFrame{Name: m.Name, Message: m.Text, Timestamp: m.TS})); got != want {
				t.Fatalf("SeedMessage(%#v):\n got %s\nwant %s", m, got, want)
			}
			if got, want := string(Ack(m.ID, m.Seq, m.TS)), string(encode(v2Out{Type: "ack", ID: m.ID, Seq: m.Seq, TS: m.TS})); got != want {
				t.Fatalf("Ack(%#v):\n got %s\nwant %s", m, got, want)
			}
		}
	}
}

// randomText strings together up to 11 pieces that encoders treat apart:
// quotes, backslashes, HTML, control characters, multi-byte runes,
// U+2028 and invalid UTF-8.
func randomText(rng *rand.Rand) string {
	alphabet := []string{"a", "Z", "0", " ", `"`, `\`, "<", ">", "&", "\n", "\x01", "\x7f", "é", "€", "🚀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82"}
	var s string
	for range rng.IntN(12) {
		s += alphabet[rng.IntN(len(alphabet))]
	}
	return s
}

func BenchmarkV2Message(b *testing.B) {
	m := Message{Seq: 123456, ID: "k3f9-1", Name: "ann", Text: "hello, this is a fairly ordinary chat message", TS: 1764100000123}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			V2Message(m)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encode(struct {
				Type string `json:"type"`
				Message
			}{"message", m})
		}
	})
}
