package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// Every frame decodes as encoding/json decodes it: the same fields, and
// the same verdict on validity.
func TestDecodeFrameMatchesEncodingJSON(t *testing.T) {
	inputs := []string{
		`{"type":"message","seq":12,"id":"r0-c1-2s","name":"r0-c1","text":"123 r0-c1 7 xx","ts":1733000000123}`,
		`{"type":"ack","id":"r0-c1-2s","seq":3,"ts":5}`,
		`{"type":"error","code":"overloaded","message":"server overloaded","id":"x"}`,
		`{"message":"hi","name":"bob","timestamp":17}`,
		` { "type" : "message" , "seq" : 0 } `, `{}`, ` {} `, `{"seq":18446744073709551615}`,
		`{"seq":18446744073709551616}`, `{"ts":9223372036854775808}`, `{"seq":-1}`, `{"seq":01}`, `{"seq":1.5}`,
		`{"seq":1e3}`, `{"seq":"1"}`, `{"type":1}`, `{"type":"a","type":"b"}`, `{"Type":"x"}`, `{"TYPE":"x"}`,
		`{"ſeq":4}`, `{"type":"a\"b"}`, `{"type":"a\u0041"}`, "{\"type\":\"a\xffb\"}", "{\"type\":\"a\x01\"}",
		`{"type":"é✓"}`, `{"x":{"y":1},"type":"a"}`, `{"x":[1,2],"seq":2}`, `{"x":null}`, `{"x":true}`,
		`{"type":"a",}`, `{"type":"a"`, `{"type":"a"}x`, `{"type" "a"}`, `{type:"a"}`, `[]`, `null`, ``, `"s"`,
		`{"":1}`, `{"text":""}`, `{"seq":1 }`, `{"seq":1,}`, `{"seq":12a}`,
	}
	rng := rand.New(rand.NewPCG(7, 7))
	pieces := []string{`"type"`, `"seq"`, `"ts"`, `"id"`, `"text"`, `"name"`, `"other"`, `:`, `,`, `{`, `}`, `"v"`, `"\n"`,
		`12`, `-3`, `0`, `1.5`, ` `, `"Seq"`, `null`, `[`, `]`, `"é"`}
	for range 20000 {
		var b strings.Builder
		for range 1 + rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		inputs = append(inputs, b.String(), "{"+b.String()+"}")
	}
	for _, in := range inputs {
		var got, want frame
		ok := decodeFrame([]byte(in), &got)
		wantOK := json.Unmarshal([]byte(in), &want) == nil
		if ok != wantOK || ok && got != want {
			t.Fatalf("%q: decoded %+v (valid %v), encoding/json %+v (valid %v)", in, got, ok, want, wantOK)
		}
	}
}

// BenchmarkDecodeFrame is the load generator's cost per frame it is shown.
func BenchmarkDecodeFrame(b *testing.B) {
	data := []byte(fmt.Sprintf(`{"type":"message","seq":%d,"id":"r0-c1-2s","name":"r0-c1","text":%q,"ts":1733000000123}`,
		123456, makeText("r0-c1", 77, 123456789, 140)))
	for _, c := range []struct {
		name   string
		decode func([]byte, *frame) bool
	}{
		{"scan", decodeFrame},
		{"encoding-json", func(d []byte, f *frame) bool { return json.Unmarshal(d, f) == nil }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var f frame
				if !c.decode(data, &f) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
