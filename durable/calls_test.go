package durable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// localStub runs calls on actors of one process, started on first use,
// the way a node's stub reaches the objects it leads.
type localStub struct {
	t      *testing.T
	store  *MemStore
	newObj func() Object
	mu     sync.Mutex
	actors map[string]*Actor
}

func (l *localStub) Call(ctx context.Context, id ID, method string, arg []byte) ([]byte, error) {
	a, err := l.actor(id)
	if err != nil {
		return nil, err
	}
	return a.Call(ctx, method, arg)
}

func (l *localStub) Fetch(ctx context.Context, id ID, r *http.Request) (*http.Response, error) {
	a, err := l.actor(id)
	if err != nil {
		return nil, err
	}
	return a.Fetch(ctx, r.WithContext(ctx))
}

func (l *localStub) actor(id ID) (*Actor, error) {
	l.mu.Lock()
	a, ok := l.actors[id.String()]
	if !ok {
		var err error
		a, err = Start(id, l.newObj, Config{Reader: l.store, Committer: l.store, Stub: l})
		if err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.actors[id.String()] = a
		l.t.Cleanup(func() { a.Close() })
	}
	l.mu.Unlock()
	return a, nil
}

// hopper's "hop" takes a list of object names: it counts the visit,
// calls the first name with the rest, and answers the path it saw.
type hopper struct{ ns *Namespace }

func (h hopper) Call(ctx context.Context, s *State, method string, arg []byte) ([]byte, error) {
	var names []string
	if err := json.Unmarshal(arg, &names); err != nil {
		return nil, err
	}
	n, _, err := GetJSON[int](s.Storage(), "visits")
	if err != nil {
		return nil, err
	}
	if err := PutJSON(s.Storage(), "visits", n+1); err != nil {
		return nil, err
	}
	self, _ := s.ID().Name()
	if len(names) == 0 {
		return []byte(self), nil
	}
	rest, _ := json.Marshal(names[1:])
	out, err := s.Call(ctx, h.ns.IDFromName(names[0]), "hop", rest)
	if err != nil {
		return nil, fmt.Errorf("%s calling %s: %w", self, names[0], err)
	}
	return []byte(self + " " + string(out)), nil
}

func hopRig(t *testing.T) (*localStub, *Namespace) {
	ns, err := NewNamespace("hop")
	if err != nil {
		t.Fatal(err)
	}
	store := NewMemStore()
	l := &localStub{t: t, store: store, actors: map[string]*Actor{}}
	l.newObj = func() Object { return hopper{ns} }
	return l, ns
}

func hop(t *testing.T, l *localStub, ns *Namespace, path ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	arg, _ := json.Marshal(path[1:])
	out, err := l.Call(ctx, ns.IDFromName(path[0]), "hop", arg)
	if ctx.Err() != nil {
		t.Fatalf("hop %v: no answer within %v (deadlock?)", path, testWait)
	}
	return string(out), err
}

func TestCallsBetweenObjects(t *testing.T) {
	l, ns := hopRig(t)
	out, err := hop(t, l, ns, "a", "b", "c")
	if err != nil || out != "a b c" {
		t.Fatalf("a -> b -> c answered %q, %v", out, err)
	}
	// b answered its own call and c's event is over: both take calls again.
	if out, err := hop(t, l, ns, "c", "b"); err != nil || out != "c b" {
		t.Fatalf("c -> b answered %q, %v", out, err)
	}
}

// A call back to an object whose event waits further up the chain fails
// at once with ErrCallCycle, naming the cycle, and the writes of every
// event on the way are dropped; the objects keep serving.
func TestCallCycleFailsInsteadOfDeadlocking(t *testing.T) {
	l, ns := hopRig(t)
	for _, path := range [][]string{{"a", "a"}, {"a", "b", "a"}, {"a", "b", "c", "b"}} {
		_, err := hop(t, l, ns, path...)
		if !errors.Is(err, ErrCallCycle) {
			t.Fatalf("%v: %v, want ErrCallCycle", path, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("hop/%.8s", ns.IDFromName(path[len(path)-1]))) {
			t.Fatalf("%v: %v does not name the object called twice", path, err)
		}
	}
	for _, name := range []string{"a", "b", "c"} {
		v, ok, err := l.store.Get(ns.IDFromName(name).StorageObject(), []byte("visits"))
		if err != nil || ok {
			t.Fatalf("%s stored visits %q (%v): a failed chain's writes must be dropped", name, v, err)
		}
	}
	if out, err := hop(t, l, ns, "b", "a"); err != nil || out != "b a" {
		t.Fatalf("after the cycles, b -> a answered %q, %v", out, err)
	}
}

func TestCallChainDepthIsBounded(t *testing.T) {
	l, ns := hopRig(t)
	var path []string
	for i := range MaxCallDepth {
		path = append(path, fmt.Sprintf("o%d", i))
	}
	if out, err := hop(t, l, ns, path...); err != nil {
		t.Fatalf("a chain of %d objects: %q, %v", len(path), out, err)
	}
	path = append(path, "one-more")
	if _, err := hop(t, l, ns, path...); !errors.Is(err, ErrCallDepth) {
		t.Fatalf("a chain of %d objects: %v, want ErrCallDepth", len(path), err)
	}
}

func TestStateCallNeedsAStub(t *testing.T) {
	r := newRig(t, &testClass{})
	ns, _ := NewNamespace("other")
	err := r.call(func(s *State) error {
		_, err := s.Call(context.Background(), ns.IDFromName("x"), "m", nil)
		return err
	})
	if !errors.Is(err, ErrNoStub) {
		t.Fatalf("State.Call without Config.Stub: %v, want ErrNoStub", err)
	}
}

// Fetch is hop over HTTP: the path is the query's "path", comma-separated.
func (h hopper) Fetch(ctx context.Context, s *State, w http.ResponseWriter, r *http.Request) {
	path := strings.Split(r.URL.Query().Get("path"), ",")
	if len(path) > 1 {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://hop/?path="+strings.Join(path[1:], ","), nil)
		resp, err := s.Fetch(ctx, h.ns.IDFromName(path[1]), req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		w.WriteHeader(resp.StatusCode)
		fmt.Fprintf(w, "%s %s", path[0], body)
		return
	}
	fmt.Fprint(w, path[0])
}

func TestFetchBetweenObjects(t *testing.T) {
	l, ns := hopRig(t)
	fetch := func(path string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://hop/?path="+path, nil)
		resp, err := l.Fetch(ctx, ns.IDFromName(strings.Split(path, ",")[0]), req)
		if err != nil {
			t.Fatalf("fetch %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if st, body := fetch("a,b,c"); st != 200 || body != "a b c" {
		t.Fatalf("a -> b -> c: %d %q", st, body)
	}
	if st, body := fetch("a,b,a"); st != http.StatusConflict || !strings.Contains(body, ErrCallCycle.Error()) {
		t.Fatalf("a -> b -> a: %d %q, want b's 409 with the cycle", st, body)
	}
}
