package wire

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// decoders are the hand readers beside what encoding/json makes of the
// same bytes.
var decoders = []struct {
	name string
	fast func([]byte) (any, error)
	std  func([]byte) (any, error)
}{
	{"seed", func(b []byte) (any, error) { in, err := decodeSeed(b); return in, err },
		func(b []byte) (any, error) { var in seedIn; err := json.Unmarshal(b, &in); return in, err }},
	{"v2", func(b []byte) (any, error) { in, err := decodeV2(b); return in, err },
		func(b []byte) (any, error) { var in v2In; err := json.Unmarshal(b, &in); return in, err }},
	{"record", func(b []byte) (any, error) { m, k, err := DecodeRecord(b); return record{m, k}, err },
		func(b []byte) (any, error) { var r record; err := json.Unmarshal(b, &r); return r, err }},
}

// sameAsJSON fails t unless every decoder reads data as encoding/json
// does: the same error or none, and then the same value.
func sameAsJSON(t *testing.T, data []byte) {
	t.Helper()
	for _, d := range decoders {
		got, gerr := d.fast(data)
		want, werr := d.std(data)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("%s %q: error %v, encoding/json's %v", d.name, data, gerr, werr)
		}
		if gerr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %q: read %+v, encoding/json %+v", d.name, data, got, want)
		}
	}
}

// randomObject writes a JSON-ish object from pieces that reach every
// branch of the scanner: keys of each decoder and others, plain and
// escaped strings, numbers JSON reads and refuses, other values,
// whitespace, and now and then a cut or trailing bytes.
func randomObject(rng *rand.Rand) []byte {
	keys := []string{`"type"`, `"id"`, `"text"`, `"before"`, `"limit"`, `"message"`, `"seq"`, `"ts"`, `"name"`, `"k"`,
		`"TYPE"`, `"Text"`, `"x"`, `"te\u0078t"`, `type`}
	vals := []string{`"send"`, `"typing"`, `"history"`, `"hi there"`, `""`, `"é ✓ 漢"`, "\"\xff\"", "\"\xed\xa0\x80\"",
		`"a\"b"`, `"\u00e9"`, `"\ud800"`, "\"a\tb\"", `"<&>"`, "\"\u2028\"", `0`, `01`, `-1`, `1.5`, `1e3`, `7`,
		`4294967295`, `4294967296`, `9223372036854775807`, `9223372036854775808`, `18446744073709551615`,
		`18446744073709551616`, `null`, `true`, `[]`, `{}`, `"unterminated`}
	space := []string{"", "", "", " ", "\n\t", "\r"}
	sp := func() string { return space[rng.IntN(len(space))] }
	var b strings.Builder
	b.WriteString(sp() + "{")
	for i := range rng.IntN(5) {
		if i > 0 {
			b.WriteString(sp() + ",")
		}
		b.WriteString(sp() + keys[rng.IntN(len(keys))] + sp() + ":" + sp() + vals[rng.IntN(len(vals))])
	}
	b.WriteString(sp() + "}" + sp())
	out := []byte(b.String())
	switch rng.IntN(20) {
	case 0:
		out = out[:rng.IntN(len(out)+1)]
	case 1:
		out = append(out, "x"...)
	case 2:
		out = append(out, "{}"...)
	}
	return out
}

func TestScanMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		``, `{}`, ` { } `, `{`, `}`, `[]`, `null`, `{"message":"hi"}`, `{"message":null}`, `{"message":1}`,
		`{"message":"a","message":"b"}`, `{"type":"send","id":"m1","text":"hello"}`, `{"type":"send","type":"typing"}`,
		`{"type":"history","before":10,"limit":50}`, `{"limit":4294967296}`, `{"before":-1}`, `{"before":1.0}`,
		`{"seq":3,"id":"a","name":"n","text":"t","ts":1700000000000,"k":"key"}`, `{"seq":3,"ts":-5}`,
		`{"type":"send",}`, `{,}`, `{"type" "send"}`, `{"type":"send"}x`, `{"Type":"send"}`,
	} {
		sameAsJSON(t, []byte(s))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		sameAsJSON(t, randomObject(rng))
	}
}

// The hand reader must take the frames and records that come every
// message, or it buys nothing.
func TestScanTakesPlainFrames(t *testing.T) {
	for _, s := range []string{
		`{"message":"hello"}`, `{"type":"send","id":"m1","text":"héllo <b>"}`, `{"type":"typing"}`,
		string(AppendRecord(nil, Message{Seq: 9, ID: "m1", Name: "ann", Text: "a & b", TS: 1700000000000}, "key-1")),
	} {
		if !scanFlat([]byte(s), func([]byte, flatValue) bool { return true }) {
			t.Errorf("%s went to encoding/json", s)
		}
	}
}

// A record reads back as what was stored, whatever its text, by hand or
// by encoding/json.
func TestRecordRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		m := Message{Seq: rng.Uint64(), ID: randomText(rng), Name: randomText(rng), Text: randomText(rng), TS: rng.Int64()}
		key := ""
		if i%3 > 0 {
			key = randomText(rng)
		}
		b := AppendRecord(nil, m, key)
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("record %s: %v", b, err)
		}
		got, gotKey, err := DecodeRecord(b)
		if err != nil || got != r.Message || gotKey != r.Key {
			t.Fatalf("record %s read as %+v %q (%v), encoding/json %+v", b, got, gotKey, err, r)
		}
		// encoding/json writes invalid UTF-8 as U+FFFD: compare with what
		// it makes of the same message.
		want, _ := json.Marshal(record{m, key})
		var w record
		if err := json.Unmarshal(want, &w); err != nil || w != r {
			t.Fatalf("record %s reads as %+v, encoding/json's %s as %+v", b, r, want, w)
		}
	}
}

func FuzzScan(f *testing.F) {
	f.Add([]byte(`{"type":"send","id":"m1","text":"hello"}`))
	f.Add([]byte(`{"message":"hi"}`))
	f.Add(AppendRecord(nil, Message{Seq: 1, ID: "a", Name: "n", Text: "t", TS: 2}, "k"))
	f.Fuzz(sameAsJSON)
}

// BenchmarkDecode is what a room pays to read a browser's send and, once
// per message leaving the dedupe window, a stored record.
func BenchmarkDecode(b *testing.B) {
	frame := []byte(`{"type":"send","id":"k3f9-1","text":"hello, this is a fairly ordinary chat message"}`)
	rec := AppendRecord(nil, Message{Seq: 123456, ID: "k3f9-1", Name: "ann", Text: "hello, this is a fairly ordinary chat message", TS: 1764100000123}, "secret-key-0123456789")
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"frame/hand", func() error { _, err := decodeV2(frame); return err }},
		{"frame/encoding-json", func() error { var in v2In; return json.Unmarshal(frame, &in) }},
		{"record/hand", func() error { _, _, err := DecodeRecord(rec); return err }},
		{"record/encoding-json", func() error { var r record; return json.Unmarshal(rec, &r) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
