package reminder

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"hellochat/apps"
	"hellochat/durable"
)

// actorStub calls the rig's actor, as a router calls the object's node.
type actorStub struct {
	r      *rig
	lastID durable.ID
}

func (s *actorStub) Call(ctx context.Context, id durable.ID, method string, arg []byte) ([]byte, error) {
	s.lastID = id
	out, err := s.r.a.Call(ctx, method, arg)
	if err != nil {
		return nil, &apps.Error{Code: apps.Refused, Message: err.Error()}
	}
	return out, nil
}

// Fetch is refused: the reminder's routes only call.
func (s *actorStub) Fetch(context.Context, durable.ID, *http.Request) (*http.Response, error) {
	return nil, durable.ErrNoHandler
}

func TestRoutes(t *testing.T) {
	r := newRig(t)
	stub := &actorStub{r: r}
	reg, err := apps.NewRegistry(App())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, rt := range reg.Routes() {
		mux.Handle(rt.Pattern, rt.Handler(stub))
	}
	do := func(method, path, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w
	}
	w := do("POST", "/reminder/list?after=1500", "k1")
	var rem Reminder
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &rem) != nil || rem.ID != "k1" ||
		!rem.Scheduled.Equal(r.clock.Now().Add(1500*time.Millisecond)) {
		t.Fatalf("POST: %d %s", w.Code, w.Body)
	}
	if !stub.lastID.Equal(Namespace.IDFromName("list")) {
		t.Fatalf("called %s", stub.lastID)
	}
	if w = do("POST", "/reminder/list?after=0", ""); w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &rem) != nil ||
		!strings.HasPrefix(rem.ID, "~") {
		t.Fatalf("POST without a key: %d %s (want a router key as its id)", w.Code, w.Body)
	}
	for _, bad := range []struct{ path, key string }{
		{"/reminder/list", ""},
		{"/reminder/list?after=soon", ""},
		{"/reminder/list?after=-1", ""},
		{"/reminder/list?after=99999999999999", ""},
		{"/reminder/" + strings.Repeat("n", 65) + "?after=1", ""},
		{"/reminder/list?after=1", "~mine"},
	} {
		if w := do("POST", bad.path, bad.key); w.Code != http.StatusBadRequest {
			t.Errorf("POST %s key %q: %d %s, want 400", bad.path, bad.key, w.Code, w.Body)
		}
	}
	r.clock.Advance(1500 * time.Millisecond)
	r.waitFired("k1", rem.ID)
	w = do("GET", "/reminder/list", "")
	var l List
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &l) != nil || len(l.Reminders) != 2 ||
		l.Reminders[0].ID != rem.ID || l.Reminders[1].ID != "k1" || l.Reminders[1].Fired == nil {
		t.Fatalf("GET: %d %s (want both, by scheduled time, fired)", w.Code, w.Body)
	}
	if w := do("DELETE", "/reminder/list", ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", w.Code)
	}
}
