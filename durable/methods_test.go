package durable

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type addReq struct{ A, B int }
type addResp struct{ Sum int }

var (
	addMethod  = Method[addReq, addResp]{Name: "add"}
	failMethod = Method[addReq, addResp]{Name: "fail"}
	// wrongResult calls "add" expecting a result "add" does not give.
	wrongResult = Method[addReq, []string]{Name: "add"}
)

// methodsClass serves addMethod and failMethod through Methods.
type methodsClass struct{ methods Methods }

func (c *methodsClass) Call(ctx context.Context, s *State, method string, arg []byte) ([]byte, error) {
	return c.methods.Call(ctx, s, method, arg)
}

// actorCaller reaches one actor as a MethodCaller does an object.
type actorCaller struct{ a *Actor }

func (c actorCaller) Call(ctx context.Context, _ ID, method string, arg []byte) ([]byte, error) {
	return c.a.Call(ctx, method, arg)
}

func TestTypedMethods(t *testing.T) {
	refused := errors.New("refused")
	obj := &methodsClass{methods: NewMethods(
		addMethod.Serve(func(_ context.Context, s *State, r addReq) (addResp, error) {
			// A method's writes are the event's, as any handler's.
			return addResp{Sum: r.A + r.B}, PutJSON(s.Storage(), "last", r.A+r.B)
		}),
		failMethod.Serve(func(context.Context, *State, addReq) (addResp, error) { return addResp{}, refused }),
	)}
	ns, _ := NewNamespace("Test")
	store := NewMemStore()
	a, err := Start(ns.IDFromName(t.Name()), func() Object { return obj }, Config{Reader: store, Committer: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ctx, c := context.Background(), actorCaller{a}
	id := ns.IDFromName(t.Name())

	if got, err := addMethod.Call(ctx, c, id, addReq{A: 2, B: 3}); err != nil || got.Sum != 5 {
		t.Fatalf("add: %+v %v", got, err)
	}
	if v, ok, err := store.Get(id.StorageObject(), userKey("last")); err != nil || !ok || string(v) != "5" {
		t.Fatalf("the method's write: %q %v %v", v, ok, err)
	}
	if _, err := failMethod.Call(ctx, c, id, addReq{}); !errors.Is(err, refused) {
		t.Fatalf("a method's own error: %v", err)
	}
	if _, err := (Method[addReq, addResp]{Name: "mul"}).Call(ctx, c, id, addReq{}); !errors.Is(err, ErrNoMethod) ||
		!strings.Contains(err.Error(), "add, fail") {
		t.Fatalf("an unknown method: %v; want ErrNoMethod naming add, fail", err)
	}
	if _, err := a.Call(ctx, "add", []byte("{")); err == nil || !strings.Contains(err.Error(), "add: bad argument") {
		t.Fatalf("a bad argument: %v", err)
	}
	if out, err := a.Call(ctx, "add", nil); err != nil || string(out) != `{"Sum":0}` {
		t.Fatalf("an empty argument (the request's zero value): %s %v", out, err)
	}
	if _, err := wrongResult.Call(ctx, c, id, addReq{}); err == nil || !strings.Contains(err.Error(), "decode the result of add") {
		t.Fatalf("a result of another type: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a method declared twice did not panic")
		}
	}()
	NewMethods(addMethod.Serve(nil), addMethod.Serve(nil))
}
