package countercheck

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// counterServer speaks the counter app's protocol from memory: one
// mutex, so every answer is linearizable. dedupe false makes a retry
// count twice, a history Check must refuse.
type counterServer struct {
	mu     sync.Mutex
	values map[string]int64
	seen   map[string]int64 // idempotency key → the value it answered
	dedupe bool
	// failEvery makes every nth increment count but lose its answer, so
	// the load retries it.
	failEvery, n int
}

func (s *counterServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/counter/")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		fmt.Fprintf(w, `{"value":%d}`, s.values[name])
	case http.MethodPost:
		key := r.Header.Get("Idempotency-Key")
		if v, ok := s.seen[key]; ok && s.dedupe {
			fmt.Fprintf(w, `{"value":%d}`, v)
			return
		}
		s.values[name]++
		s.seen[key] = s.values[name]
		if s.n++; s.failEvery > 0 && s.n%s.failEvery == 0 {
			http.Error(w, "answer lost", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"value":%d}`, s.values[name])
	}
}

func runLoad(t *testing.T, s *counterServer) (History, Result) {
	t.Helper()
	srv := httptest.NewServer(s)
	defer srv.Close()
	cfg := DefaultLoad(srv.URL, srv.Client(), "t", 1000)
	// Several counters: StartLoad once added a counter to the map its
	// running clients read, a race only a second counter shows.
	cfg.Counters, cfg.Clients, cfg.Rate, cfg.MaxOps = 4, 2, 200, 30
	cfg.AttemptTimeout = 2 * time.Second
	l, err := StartLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitSteady(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h := l.Finish(context.Background())
	return h, Check(h, Options{Timeout: 10 * time.Second})
}

func TestLoadRecordsALinearizableCounter(t *testing.T) {
	s := &counterServer{values: map[string]int64{}, seen: map[string]int64{}, dedupe: true, failEvery: 7}
	h, res := runLoad(t, s)
	if res.Failed() {
		t.Fatalf("a linearizable counter was refused: %s", res.Summary())
	}
	incs, retried := 0, 0
	for _, op := range h.Ops {
		if op.Kind == Increment {
			incs++
			if op.Attempts > 1 {
				retried++
			}
		}
	}
	if incs == 0 || retried == 0 {
		t.Fatalf("increments %d, retried %d: the load should have retried lost answers", incs, retried)
	}
	for name, v := range s.values {
		if h.Final[name] != v {
			t.Errorf("%s: final read %d, server holds %d", name, h.Final[name], v)
		}
	}
}

func TestLoadCatchesACounterThatCountsRetriesTwice(t *testing.T) {
	s := &counterServer{values: map[string]int64{}, seen: map[string]int64{}, failEvery: 5}
	_, res := runLoad(t, s)
	if !res.Failed() {
		t.Fatalf("a counter that counts retries twice passed the check: %s", res.Summary())
	}
}
