package counter

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"hellochat/apps"
	"hellochat/durable"
)

func start(t *testing.T, store *durable.MemStore, id durable.ID, window int64) *durable.Actor {
	t.Helper()
	a, err := durable.Start(id, func() durable.Object { return newCounter(window) },
		durable.Config{Reader: store, Committer: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func callValue(t *testing.T, a *durable.Actor, method, requestID string) int64 {
	t.Helper()
	res, err := durable.CallJSON[Result](context.Background(), a, method, Arg{RequestID: requestID})
	if err != nil {
		t.Fatalf("%s(%q): %v", method, requestID, err)
	}
	return res.Value
}

func TestCounterIncrementsAndDedupes(t *testing.T) {
	store := durable.NewMemStore()
	id := Namespace.IDFromName("hits")
	a := start(t, store, id, Window)
	if v := callValue(t, a, "get", ""); v != 0 {
		t.Fatalf("new counter: %d", v)
	}
	for want := int64(1); want <= 3; want++ {
		if v := callValue(t, a, "increment", ""); v != want {
			t.Fatalf("increment without id: %d, want %d", v, want)
		}
	}
	if v := callValue(t, a, "increment", "req-a"); v != 4 {
		t.Fatalf("increment req-a: %d, want 4", v)
	}
	if v := callValue(t, a, "increment", "req-b"); v != 5 {
		t.Fatalf("increment req-b: %d, want 5", v)
	}
	// Retries answer what the first attempt got, and count nothing.
	for _, retry := range []struct {
		id   string
		want int64
	}{{"req-a", 4}, {"req-b", 5}, {"req-a", 4}} {
		if v := callValue(t, a, "increment", retry.id); v != retry.want {
			t.Fatalf("retry of %s: %d, want %d", retry.id, v, retry.want)
		}
	}
	if v := callValue(t, a, "get", ""); v != 5 {
		t.Fatalf("get after retries: %d, want 5", v)
	}
	// The ids are in storage, not in the instance: a new actor (the
	// object on a new leader) still knows them.
	a.Close()
	b := start(t, store, id, Window)
	if v := callValue(t, b, "increment", "req-a"); v != 4 {
		t.Fatalf("retry of req-a on a new actor: %d, want 4", v)
	}
	if v := callValue(t, b, "increment", "req-c"); v != 6 {
		t.Fatalf("increment req-c on a new actor: %d, want 6", v)
	}
}

func TestCounterIDMemoryIsBounded(t *testing.T) {
	const window = 4
	store := durable.NewMemStore()
	id := Namespace.IDFromName("bounded")
	a := start(t, store, id, window)
	for i := 1; i <= 50; i++ {
		if v := callValue(t, a, "increment", "id-"+itoa(i)); v != int64(i) {
			t.Fatalf("increment %d: got %d", i, v)
		}
		// "v" and two keys per id kept (the store records the version
		// apart from the object's keys).
		if keys, most := store.Keys(id.StorageObject()), 1+2*min(i, window); keys != most {
			t.Fatalf("after %d increments: %d keys stored, want %d", i, keys, most)
		}
	}
	// The last window ids are remembered ...
	for i := 50 - window + 1; i <= 50; i++ {
		if v := callValue(t, a, "increment", "id-"+itoa(i)); v != int64(i) {
			t.Fatalf("retry of id-%d: %d", i, v)
		}
	}
	// ... an older one is not: it counts again (the documented bound).
	if v := callValue(t, a, "increment", "id-1"); v != 51 {
		t.Fatalf("retry of id-1, out of the window: %d, want 51", v)
	}
	// Increments without an id leave no record, and push ids out too.
	for range window {
		callValue(t, a, "increment", "")
	}
	if keys := store.Keys(id.StorageObject()); keys != 1 {
		t.Fatalf("%d keys after %d increments without ids, want 1", keys, window)
	}
}

func TestCounterRefusals(t *testing.T) {
	store := durable.NewMemStore()
	a := start(t, store, Namespace.IDFromName("refusals"), Window)
	ctx := context.Background()
	if _, err := a.Call(ctx, "decrement", nil); err == nil || !strings.Contains(err.Error(), "no method") {
		t.Errorf("unknown method: %v", err)
	}
	if _, err := a.Call(ctx, "increment", []byte("{")); err == nil {
		t.Error("bad JSON argument accepted")
	}
	long, _ := json.Marshal(Arg{RequestID: strings.Repeat("x", MaxRequestIDBytes+1)})
	if _, err := a.Call(ctx, "increment", long); err == nil {
		t.Error("overlong request id accepted")
	}
	if v := callValue(t, a, "get", ""); v != 0 {
		t.Errorf("refused calls counted: %d", v)
	}
}

// stubFunc is a Stub made of a function.
type stubFunc func(ctx context.Context, id durable.ID, method string, arg []byte) ([]byte, error)

func (f stubFunc) Call(ctx context.Context, id durable.ID, method string, arg []byte) ([]byte, error) {
	return f(ctx, id, method, arg)
}

// Fetch is refused: the counter's routes only call.
func (f stubFunc) Fetch(context.Context, durable.ID, *http.Request) (*http.Response, error) {
	return nil, durable.ErrNoHandler
}

func TestRoutes(t *testing.T) {
	var lastArg Arg
	var lastID durable.ID
	stub := stubFunc(func(_ context.Context, id durable.ID, method string, arg []byte) ([]byte, error) {
		lastID = id
		lastArg = Arg{}
		json.Unmarshal(arg, &lastArg)
		if method == "get" {
			return nil, &apps.Error{Code: apps.Unavailable, Message: "no answer"}
		}
		return []byte(`{"value":7}`), nil
	})
	reg, err := apps.NewRegistry(App())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, r := range reg.Routes() {
		mux.Handle(r.Pattern, r.Handler(stub))
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
	w := do("POST", "/counter/hits", "k1")
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"value":7}` || lastArg.RequestID != "k1" {
		t.Fatalf("POST: %d %s (request id %q)", w.Code, w.Body, lastArg.RequestID)
	}
	if !lastID.Equal(Namespace.IDFromName("hits")) {
		t.Fatalf("called %s", lastID)
	}
	if w = do("POST", "/counter/hits", ""); w.Code != 200 || !strings.HasPrefix(lastArg.RequestID, "~") {
		t.Fatalf("POST without a key: %d, request id %q (want a router key)", w.Code, lastArg.RequestID)
	}
	for _, bad := range []struct{ path, key string }{
		{"/counter/" + strings.Repeat("n", 65), ""},
		{"/counter/%01x", ""},
		{"/counter/%20x", ""},
		{"/counter/hits", "~mine"},
		{"/counter/hits", strings.Repeat("k", 65)},
		{"/counter/hits", "has space"},
	} {
		if w := do("POST", bad.path, bad.key); w.Code != http.StatusBadRequest {
			t.Errorf("POST %s key %q: %d %s, want 400", bad.path, bad.key, w.Code, w.Body)
		}
	}
	if w := do("GET", "/counter/hits", ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("GET with the object unavailable: %d, want 503", w.Code)
	}
	if w := do("DELETE", "/counter/hits", ""); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d, want 405", w.Code)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
