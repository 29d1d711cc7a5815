package limits

import (
	"errors"
	"testing"
)

func TestName(t *testing.T) {
	ok := map[string]string{
		"":             DefaultName,
		"  ann  ":      "ann",
		"Ünïcødé name": "Ünïcødé name",
		"系统":           "系统",
		"systems":      "systems",
	}
	for raw, want := range ok {
		if got, err := Name(raw); err != nil || got != want {
			t.Errorf("Name(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{
		"system", " System ", "SYSTEM",
		"ann\u202Egnp",     // right-to-left override
		"ann\u2066x\u2069", // isolate
		"zero\u200Bwidth", "soft\u00ADhyphen", "\uFEFFann",
		"non\u00A0breaking", "ideo\u3000space",
		"\u3164", "ann\u2800",
		"tab\there",
	} {
		_, err := Name(raw)
		var le *Error
		if !errors.As(err, &le) || le.Code != CodeBadName {
			t.Errorf("Name(%q) = %v, want %s", raw, err, CodeBadName)
		}
	}
}
