package durable_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"hellochat/durable"
)

// Counter is a class: each object counts the requests it was sent.
type Counter struct{ n int }

// Load reads the count before the object's first event.
func (c *Counter) Load(_ context.Context, s *durable.State) error {
	n, _, err := durable.GetJSON[int](s.Storage(), "count")
	c.n = n
	return err
}

// Fetch counts a request. The response leaves only once the new count is
// committed.
func (c *Counter) Fetch(_ context.Context, s *durable.State, w http.ResponseWriter, _ *http.Request) {
	if err := durable.PutJSON(s.Storage(), "count", c.n+1); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	c.n++
	fmt.Fprintf(w, "request %d", c.n)
}

func Example() {
	ns, _ := durable.NewNamespace("Counter")
	store := durable.NewMemStore() // the cluster passes its store and Raft committer
	cfg := durable.Config{Reader: store, Committer: store}
	id := ns.IDFromName("home page")
	a, err := durable.Start(id, func() durable.Object { return &Counter{} }, cfg)
	if err != nil {
		panic(err)
	}
	for range 2 {
		resp, err := a.Fetch(context.Background(), &http.Request{Method: "GET"})
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, string(body))
	}
	a.Close()
	// A new actor (after a restart, or on another node) carries on.
	a, _ = durable.Start(id, func() durable.Object { return &Counter{} }, cfg)
	defer a.Close()
	resp, _ := a.Fetch(context.Background(), &http.Request{Method: "GET"})
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output:
	// 200 request 1
	// 200 request 2
	// 200 request 3
}

// Inbox is a class with RPC methods and a transaction.
type Inbox struct{}

func (Inbox) Call(_ context.Context, s *durable.State, method string, arg []byte) ([]byte, error) {
	st := s.Storage()
	switch method {
	case "move":
		// Both writes or neither.
		from, to, _ := strings.Cut(string(arg), ">")
		err := st.Transaction(func(tx *durable.Txn) error {
			v, ok, err := tx.Get(from)
			if err != nil || !ok {
				return fmt.Errorf("move %s: nothing there (%v)", from, err)
			}
			if _, err := tx.Delete(from); err != nil {
				return err
			}
			return tx.Put(to, v)
		})
		return nil, err
	case "put":
		k, v, _ := strings.Cut(string(arg), "=")
		return nil, st.Put(k, []byte(v))
	case "list":
		kvs, err := st.List(durable.ListOptions{Prefix: string(arg)})
		var out []string
		for _, kv := range kvs {
			out = append(out, kv.Key+"="+string(kv.Value))
		}
		return []byte(strings.Join(out, " ")), err
	}
	return nil, fmt.Errorf("no method %q", method)
}

func ExampleStorage_Transaction() {
	ns, _ := durable.NewNamespace("Inbox")
	store := durable.NewMemStore()
	a, _ := durable.Start(ns.NewUniqueID(), func() durable.Object { return Inbox{} },
		durable.Config{Reader: store, Committer: store})
	defer a.Close()
	ctx := context.Background()
	call := func(method, arg string) {
		out, err := a.Call(ctx, method, []byte(arg))
		fmt.Printf("%s(%s): %q %v\n", method, arg, out, err)
	}
	call("put", "new/1=hello")
	call("move", "new/1>read/1")
	call("move", "new/1>read/2")
	call("list", "")
	// Output:
	// put(new/1=hello): "" <nil>
	// move(new/1>read/1): "" <nil>
	// move(new/1>read/2): "" move new/1: nothing there (<nil>)
	// list(): "read/1=hello" <nil>
}

// Greet is a typed RPC method, declared once for the class and its
// callers.
var Greet = durable.Method[GreetReq, GreetResp]{Name: "greet"}

type GreetReq struct{ Name string }
type GreetResp struct {
	Text  string
	Times int
}

// Greeter serves Greet through Methods.
type Greeter struct{ methods durable.Methods }

func NewGreeter() *Greeter {
	return &Greeter{methods: durable.NewMethods(
		Greet.Serve(func(_ context.Context, s *durable.State, r GreetReq) (GreetResp, error) {
			n, _, err := durable.GetJSON[int](s.Storage(), "greeted/"+r.Name)
			if err != nil {
				return GreetResp{}, err
			}
			n++
			return GreetResp{Text: "hello, " + r.Name, Times: n}, durable.PutJSON(s.Storage(), "greeted/"+r.Name, n)
		}),
	)}
}

func (g *Greeter) Call(ctx context.Context, s *durable.State, method string, arg []byte) ([]byte, error) {
	return g.methods.Call(ctx, s, method, arg)
}

// oneActor is a MethodCaller for one actor; on the cluster an app's stub,
// another object's State or an objectclient.Client is.
type oneActor struct{ a *durable.Actor }

func (o oneActor) Call(ctx context.Context, _ durable.ID, method string, arg []byte) ([]byte, error) {
	return o.a.Call(ctx, method, arg)
}

func ExampleMethod() {
	ns, _ := durable.NewNamespace("Greeter")
	store := durable.NewMemStore()
	id := ns.IDFromName("lobby")
	a, err := durable.Start(id, func() durable.Object { return NewGreeter() }, durable.Config{Reader: store, Committer: store})
	if err != nil {
		panic(err)
	}
	defer a.Close()
	for range 2 {
		resp, err := Greet.Call(context.Background(), oneActor{a}, id, GreetReq{Name: "ann"})
		fmt.Println(resp.Text, resp.Times, err)
	}
	_, err = durable.Method[GreetReq, GreetResp]{Name: "wave"}.Call(context.Background(), oneActor{a}, id, GreetReq{})
	fmt.Println(err)
	// Output:
	// hello, ann 1 <nil>
	// hello, ann 2 <nil>
	// durable: no method "wave" (methods: greet)
}
