package wire

import (
	"strings"
	"testing"
	"unicode/utf8"

	"hellochat/limits"
)

// FuzzParse feeds arbitrary frames, in both protocols, to the parser
// of browser input: it must never panic, every refusal carries a known code,
// and every accepted send holds a trimmed, non-empty, valid UTF-8 text
// within MaxMessageBytes with a valid id (v2).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"message":"hello"}`, `{"message":""}`, `{"message":null}`, `{"msg":"x"}`, `not json`,
		`{"type":"send","id":"a1","text":"hi"}`, `{"type":"send","id":"","text":"hi"}`,
		`{"type":"send","id":"a","text":"a\u0007b"}`, `{"type":"typing"}`,
		`{"type":"history","before":10,"limit":50}`, `{"type":"shout"}`, `[1,2]`, `{"type":"send","id":"x","text":"` + strings.Repeat("é", 3000) + `"}`,
	} {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	codes := map[string]bool{limits.CodeBadJSON: true, limits.CodeEmpty: true, limits.CodeTooLarge: true,
		limits.CodeBadID: true, limits.CodeUnknownType: true}
	f.Fuzz(func(t *testing.T, v2 bool, data []byte) {
		p := Seed
		if v2 {
			p = V2
		}
		op, err := Parse(p, data)
		if err != nil {
			if !codes[err.Code] || err.Message == "" {
				t.Fatalf("refusal with code %q message %q", err.Code, err.Message)
			}
			return
		}
		switch op.Kind {
		case "send":
			if op.Text == "" || op.Text != strings.TrimSpace(op.Text) || len(op.Text) > limits.MaxMessageBytes || !utf8.ValidString(op.Text) {
				t.Fatalf("accepted text %q", op.Text)
			}
			if v2 && limits.ClientID(op.ID) != nil {
				t.Fatalf("accepted id %q", op.ID)
			}
		case "typing", "history":
			if !v2 {
				t.Fatalf("seed frame parsed as %s", op.Kind)
			}
		default:
			t.Fatalf("accepted frame of kind %q", op.Kind)
		}
	})
}
