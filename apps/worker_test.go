package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"hellochat/durable"
	"hellochat/limits"
)

func TestPathName(t *testing.T) {
	for _, tc := range []struct {
		path, want string
		ok         bool
	}{
		{"/x/lobby", "lobby", true},
		{"/x/" + strings.Repeat("a", 200), "", false},
		{"/x/%20lobby", "", false},
		{"/x/a%00b", "", false},
	} {
		mux := http.NewServeMux()
		var got string
		var err error
		mux.HandleFunc("/x/{name}", func(w http.ResponseWriter, r *http.Request) { got, err = PathName(r, "test name") })
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, tc.path, nil))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: got %q, %v; want %q, ok %v", tc.path, got, err, tc.want, tc.ok)
		}
	}
}

func TestRequestID(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	a, err := RequestID(r)
	b, _ := RequestID(r)
	if err != nil || a == b || !strings.HasPrefix(a, limits.RouterIDMark) {
		t.Fatalf("without a key: %q and %q (%v); want two fresh ids with the router's mark", a, b, err)
	}
	r.Header.Set("Idempotency-Key", "k-1")
	if k, err := RequestID(r); err != nil || k != "k-1" {
		t.Fatalf("with a key: %q, %v", k, err)
	}
	for _, bad := range []string{"", limits.RouterIDMark + "x", strings.Repeat("k", 1000)} {
		r.Header.Set("Idempotency-Key", bad)
		if k, err := RequestID(r); err == nil {
			t.Errorf("key %.20q accepted as %.20q", bad, k)
		}
	}
}

// answerStub answers every call with out, or fails with err.
type answerStub struct {
	out []byte
	err error
	arg []byte
}

func (s *answerStub) Call(_ context.Context, _ durable.ID, _ string, arg []byte) ([]byte, error) {
	s.arg = arg
	return s.out, s.err
}

func (s *answerStub) Fetch(_ context.Context, _ durable.ID, r *http.Request) (*http.Response, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.arg, _ = io.ReadAll(r.Body)
	h := http.Header{"X-Seen": {r.Method + " " + r.URL.Path}}
	return &http.Response{StatusCode: http.StatusCreated, Header: h, Body: io.NopCloser(bytes.NewReader(s.out))}, nil
}

// Forward writes the object's status, headers and body, or the stub's
// error with its status.
func TestForward(t *testing.T) {
	ns, err := durable.NewNamespace("T")
	if err != nil {
		t.Fatal(err)
	}
	stub := &answerStub{out: []byte("made")}
	w := httptest.NewRecorder()
	Forward(w, httptest.NewRequest("PUT", "/t/a", strings.NewReader("body")), stub, ns.IDFromName("a"), "t")
	if w.Code != http.StatusCreated || w.Body.String() != "made" || w.Header().Get("X-Seen") != "PUT /t/a" || string(stub.arg) != "body" {
		t.Fatalf("forwarded: %d %q %v, the object saw body %q", w.Code, w.Body, w.Header(), stub.arg)
	}
	w = httptest.NewRecorder()
	Forward(w, httptest.NewRequest("GET", "/t/a", nil), &answerStub{err: &Error{Code: Unavailable, Message: "no leader"}}, ns.IDFromName("a"), "t")
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "t: no leader") {
		t.Fatalf("a stub error: %d %q", w.Code, w.Body)
	}
}

func TestCallJSON(t *testing.T) {
	ns, err := durable.NewNamespace("T")
	if err != nil {
		t.Fatal(err)
	}
	id := ns.IDFromName("a")
	for _, tc := range []struct {
		stub   answerStub
		status int
		body   string
	}{
		{answerStub{out: []byte(`{"value":3}`)}, 200, `{"value":3}`},
		{answerStub{err: &Error{Code: Unavailable, Message: "no leader"}}, 503, `{"error":"t get: no leader"}`},
		{answerStub{err: &Error{Code: Refused, Message: "no"}}, 422, `{"error":"t get: no"}`},
		{answerStub{out: []byte(`not json`)}, 500, `{"error":"t get: bad result from the object"}`},
	} {
		w := httptest.NewRecorder()
		var res struct {
			Value int `json:"value"`
		}
		CallJSON(w, httptest.NewRequest(http.MethodGet, "/", nil), &tc.stub, id, "t", "get", map[string]int{"n": 1}, &res)
		if w.Code != tc.status || strings.TrimSpace(w.Body.String()) != tc.body {
			t.Errorf("got %d %s; want %d %s", w.Code, w.Body, tc.status, tc.body)
		}
		var arg map[string]int
		if json.Unmarshal(tc.stub.arg, &arg) != nil || arg["n"] != 1 {
			t.Errorf("the object got %s", tc.stub.arg)
		}
	}
}
