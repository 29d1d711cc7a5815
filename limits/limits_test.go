package limits

import (
	"errors"
	"strings"
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

func TestClientID(t *testing.T) {
	for _, id := range []string{"1", "~router-1", "id with spaces", "ünï"} {
		if err := ClientID(id); err != nil {
			t.Errorf("ClientID(%q) = %v, want nil", id, err)
		}
	}
	long := string(make([]byte, MaxClientIDBytes+1))
	for _, id := range []string{"", "a\x00b", "a\nb", "\x7f", "a\xffb", long} {
		var le *Error
		if err := ClientID(id); !errors.As(err, &le) || le.Code != CodeBadID {
			t.Errorf("ClientID(%q) = %v, want %s", id, err, CodeBadID)
		}
	}
}

func TestObjectInputs(t *testing.T) {
	for _, m := range []string{"increment", "get", "a.b-c_1"} {
		if err := ObjectMethod(m); err != nil {
			t.Errorf("ObjectMethod(%q) = %v", m, err)
		}
	}
	for _, m := range []string{"", "has space", "nul\x00", string(make([]byte, MaxObjectMethodBytes+1))} {
		if ObjectMethod(m) == nil {
			t.Errorf("ObjectMethod(%q) accepted", m)
		}
	}
	if ObjectArg(make([]byte, MaxObjectArgBytes)) != nil || ObjectArg(make([]byte, MaxObjectArgBytes+1)) == nil {
		t.Error("ObjectArg does not hold MaxObjectArgBytes")
	}
	for _, k := range []string{"k", "a1b2-c3", "~x", "", "with space", "tab\t", "ünï", string(make([]byte, MaxIdempotencyKeyBytes+1))} {
		err := IdempotencyKey(k)
		if ok := k == "k" || k == "a1b2-c3"; ok != (err == nil) {
			t.Errorf("IdempotencyKey(%q) = %v", k, err)
		}
	}
}

func TestStoredObject(t *testing.T) {
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, ok := range []string{"lobby", "Ünïcødé room", DurableObjectPrefix + "Counter/" + hex, DurableObjectPrefix + "a-b_C9/" + hex} {
		if err := StoredObject(ok); err != nil {
			t.Errorf("StoredObject(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", " padded", "nul\x00", "\x01other", DurableObjectPrefix, DurableObjectPrefix + "Counter",
		DurableObjectPrefix + "/" + hex, DurableObjectPrefix + "Count er/" + hex, DurableObjectPrefix + "Counter/" + hex[1:],
		DurableObjectPrefix + "Counter/" + hex[1:] + "A", DurableObjectPrefix + "Counter/" + hex + "/x"} {
		if StoredObject(bad) == nil {
			t.Errorf("StoredObject(%q) accepted", bad)
		}
	}
}

func TestFetchRequest(t *testing.T) {
	ok := func(method, u string, h [][2]string, body int) error { return FetchRequest(method, u, h, body) }
	if err := ok("GET", "http://host/p?q=1", [][2]string{{"Accept", "text/plain"}, {"X-A", "tab\tok"}}, MaxFetchBodyBytes); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	many := make([][2]string, MaxFetchHeaders+1)
	for i := range many {
		many[i] = [2]string{"X", "v"}
	}
	for _, bad := range []struct {
		what   string
		method string
		url    string
		h      [][2]string
		body   int
	}{
		{"empty method", "", "http://h/", nil, 0},
		{"method not a token", "GE T", "http://h/", nil, 0},
		{"method too long", strings.Repeat("G", MaxFetchMethodBytes+1), "http://h/", nil, 0},
		{"relative URL", "GET", "/p", nil, 0},
		{"other scheme", "GET", "file:///etc/passwd", nil, 0},
		{"URL too long", "GET", "http://h/" + strings.Repeat("p", MaxFetchURLBytes), nil, 0},
		{"too many headers", "GET", "http://h/", many, 0},
		{"header name not a token", "GET", "http://h/", [][2]string{{"X Y", "v"}}, 0},
		{"empty header name", "GET", "http://h/", [][2]string{{"", "v"}}, 0},
		{"control byte in a value", "GET", "http://h/", [][2]string{{"X", "a\r\nInjected: 1"}}, 0},
		{"headers too large", "GET", "http://h/", [][2]string{{"X", strings.Repeat("v", MaxFetchHeaderBytes)}}, 0},
		{"body too large", "POST", "http://h/", nil, MaxFetchBodyBytes + 1},
	} {
		if err := ok(bad.method, bad.url, bad.h, bad.body); err == nil {
			t.Errorf("%s: accepted", bad.what)
		}
	}
}
