package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"hellochat/apps"
	"hellochat/apps/counter"
	"hellochat/durable"
	tc "hellochat/internal/testcluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/security"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// hopNS is the class of the call-chain test app: an object that counts
// its visits and passes a path of names on to the next object. Its
// route's body is the path after the object the URL names.
var hopNS = durable.MustNamespace("hop")

type hopObject struct{}

func (hopObject) Call(ctx context.Context, s *durable.State, method string, arg []byte) ([]byte, error) {
	visits, _, err := durable.GetJSON[int](s.Storage(), "visits")
	if err != nil || method == "visits" {
		return json.Marshal(visits)
	}
	var path []string
	if err := json.Unmarshal(arg, &path); err != nil {
		return nil, err
	}
	if err := durable.PutJSON(s.Storage(), "visits", visits+1); err != nil {
		return nil, err
	}
	// path[0] names this object (an ID read from the wire carries no
	// name), the rest the objects to call in turn.
	if len(path) == 0 || !hopNS.IDFromName(path[0]).Equal(s.ID()) {
		return nil, fmt.Errorf("path %q does not start with this object", path)
	}
	self := path[0]
	if len(path) == 1 {
		return json.Marshal(self)
	}
	rest, _ := json.Marshal(path[1:])
	out, err := s.Call(ctx, hopNS.IDFromName(path[1]), "hop", rest)
	if err != nil {
		return nil, fmt.Errorf("%s calling %s: %w", self, path[1], err)
	}
	var tail string
	if err := json.Unmarshal(out, &tail); err != nil {
		return nil, err
	}
	return json.Marshal(self + " " + tail)
}

// Fetch keeps a note (PUT stores the body; GET answers it, 404 when
// there is none), and with ?path=self,next,... fetches the next object's
// note and answers "self " and its body, with its status.
func (hopObject) Fetch(ctx context.Context, s *durable.State, w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		body, _ := io.ReadAll(r.Body)
		if err := s.Storage().Put("note", body); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("X-Stored", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusCreated)
		return
	}
	if path := strings.Split(r.URL.Query().Get("path"), ","); len(path) > 1 {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://hop/hopfetch/"+path[1]+"?path="+strings.Join(path[1:], ","), nil)
		resp, err := s.Fetch(ctx, hopNS.IDFromName(path[1]), req)
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
	note, found, err := s.Storage().Get("note")
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case !found:
		http.Error(w, "no note", http.StatusNotFound)
	default:
		w.Header().Set("X-Object", s.ID().String())
		w.Write(note)
	}
}

func hopApps(t *testing.T) *apps.Registry {
	reg, err := apps.NewRegistry(counter.App(), apps.App{
		Name:    "hop",
		Classes: []apps.Class{{Name: hopNS.Name(), New: func() durable.Object { return hopObject{} }}},
		Routes: []apps.Route{
			{Pattern: "POST /hop/{name}", Handler: func(stub apps.Stub) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					var path []string
					if err := json.Unmarshal(body, &path); err != nil {
						apps.WriteError(w, http.StatusBadRequest, err.Error())
						return
					}
					var out string
					name := r.PathValue("name")
					apps.CallJSON(w, r, stub, hopNS.IDFromName(name), "hop", "hop", append([]string{name}, path...), &out)
				})
			}},
			{Pattern: "/hopfetch/{name}", Handler: func(stub apps.Stub) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					apps.Forward(w, r, stub, hopNS.IDFromName(r.PathValue("name")), "hop")
				})
			}},
			{Pattern: "GET /hop/{name}", Handler: func(stub apps.Stub) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var n int
					apps.CallJSON(w, r, stub, hopNS.IDFromName(r.PathValue("name")), "hop", "visits", nil, &n)
				})
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// hopNamesOnTwoLeaders names two hop objects whose shards different nodes
// lead, so that calls between them cross nodes.
func hopNamesOnTwoLeaders(c *tc.Cluster) (a, b string) {
	leader := func(name string) int { return c.ObjectLeader(hopNS.IDFromName(name).StorageObject()) }
	a = "a0"
	for i := 0; b == ""; i++ {
		if n := fmt.Sprintf("b%d", i); leader(n) != leader(a) {
			b = n
		}
	}
	return a, b
}

func hopRequest(t *testing.T, base, method, name, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+"/hop/"+name, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s /hop/%s: %v", method, name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct{ Error string }
	if resp.StatusCode != http.StatusOK && json.Unmarshal(b, &e) == nil {
		return resp.StatusCode, e.Error
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// Objects call objects led by other nodes; a call back into the chain
// (a -> b -> a) fails at once with a clear error instead of leaving the
// two objects waiting on each other, every event of the chain has its
// writes dropped, and the objects serve calls again afterwards.
func TestObjectsCallObjectsAcrossNodesWithoutCycles(t *testing.T) {
	c := tc.New(t, 3, tc.Options{Apps: hopApps(t)})
	a, b := hopNamesOnTwoLeaders(c)

	if st, body := hopRequest(t, c.URL(), "POST", a, fmt.Sprintf(`[%q, "c"]`, b)); st != 200 || body != fmt.Sprintf(`"%s %s c"`, a, b) {
		t.Fatalf("%s -> %s -> c answered %d %s", a, b, st, body)
	}

	st, body := hopRequest(t, c.URL(), "POST", a, fmt.Sprintf(`[%q, %q]`, b, a))
	if st != http.StatusUnprocessableEntity || !strings.Contains(body, "call cycle") ||
		!strings.Contains(body, fmt.Sprintf("hop/%.8s -> hop/%.8s -> hop/%.8s", hopNS.IDFromName(a), hopNS.IDFromName(b), hopNS.IDFromName(a))) {
		t.Fatalf("%s -> %s -> %s answered %d %s; want 422 naming the cycle", a, b, a, st, body)
	}
	for name, want := range map[string]string{a: "1", b: "1", "c": "1"} {
		if st, body := hopRequest(t, c.URL(), "GET", name, ""); st != 200 || body != want {
			t.Fatalf("%s visits after the cycle: %d %s, want %s (the cycle's writes dropped)", name, st, body, want)
		}
	}

	// A chain one longer than the bound is refused, naming the bound.
	path := make([]string, durable.MaxCallDepth)
	for i := range path {
		path[i] = fmt.Sprintf("%q", fmt.Sprintf("d%d", i))
	}
	if st, body := hopRequest(t, c.URL(), "POST", "d-first", "["+strings.Join(path, ",")+"]"); st != http.StatusUnprocessableEntity ||
		!strings.Contains(body, durable.ErrCallDepth.Error()) {
		t.Fatalf("a chain of %d objects answered %d %s; want 422 saying it is too deep", len(path)+1, st, body)
	}

	if st, body := hopRequest(t, c.URL(), "POST", b, fmt.Sprintf(`[%q]`, a)); st != 200 || body != fmt.Sprintf(`"%s %s"`, b, a) {
		t.Fatalf("after the refusals, %s -> %s answered %d %s", b, a, st, body)
	}
}

// A route hands requests to an object's Fetch handler on the node that
// leads it (method, URL, headers and body there; status, headers and
// body back), objects fetch from objects on other nodes, a fetch cycle
// fails at once, and a node refuses bad requests and classes without a
// fetch handler.
func TestObjectsFetchThroughStubs(t *testing.T) {
	c := tc.New(t, 3, tc.Options{Apps: hopApps(t)})
	a, b := hopNamesOnTwoLeaders(c)
	do := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, c.URL()+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp, strings.TrimSpace(string(out))
	}
	if resp, _ := do("PUT", "/hopfetch/"+a, "hello"); resp.StatusCode != http.StatusCreated || resp.Header.Get("X-Stored") != "5" {
		t.Fatalf("PUT: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body := do("GET", "/hopfetch/"+a, ""); resp.StatusCode != 200 || body != "hello" ||
		resp.Header.Get("X-Object") != hopNS.IDFromName(a).String() {
		t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if resp, body := do("GET", "/hopfetch/"+b, ""); resp.StatusCode != http.StatusNotFound || body != "no note" {
		t.Fatalf("GET of an object without a note: %d %q", resp.StatusCode, body)
	}
	if resp, body := do("GET", fmt.Sprintf("/hopfetch/%s?path=%s,%s", b, b, a), ""); resp.StatusCode != 200 || body != b+" hello" {
		t.Fatalf("%s fetching %s: %d %q", b, a, resp.StatusCode, body)
	}
	if resp, body := do("GET", fmt.Sprintf("/hopfetch/%s?path=%s,%s,%s", a, a, b, a), ""); resp.StatusCode != http.StatusConflict ||
		!strings.Contains(body, durable.ErrCallCycle.Error()) {
		t.Fatalf("%s -> %s -> %s: %d %q, want the cycle refused", a, b, a, resp.StatusCode, body)
	}

	id := hopNS.IDFromName(a)
	good := func() *pb.FetchRequest {
		return &pb.FetchRequest{Class: hopNS.Name(), Id: id.String(), Method: "GET", Url: "http://x/hopfetch/" + a}
	}
	// Each request goes to the node that leads the object it names.
	fetch := func(req *pb.FetchRequest) (*pb.FetchResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		node := c.ObjectLeader(hopNS.IDFromName(a).StorageObject())
		if req.Class == counter.ClassName {
			node = c.ObjectLeader(counter.Namespace.IDFromName(a).StorageObject())
		}
		return pb.NewObjectsClient(grpcConn(t, c, security.RoleRouter, c.Config(node).GRPCListen)).Fetch(ctx, req)
	}
	if resp, err := fetch(good()); err != nil || string(resp.GetResponse().GetBody()) != "hello" {
		t.Fatalf("a direct fetch: %v %v", resp, err)
	}
	for _, bad := range []struct {
		what string
		edit func(*pb.FetchRequest)
		want codes.Code
	}{
		{"relative URL", func(r *pb.FetchRequest) { r.Url = "/hopfetch" }, codes.InvalidArgument},
		{"bad method", func(r *pb.FetchRequest) { r.Method = "G T" }, codes.InvalidArgument},
		{"header with a newline", func(r *pb.FetchRequest) { r.Headers = []*pb.Header{{Name: "X", Value: "a\nb"}} }, codes.InvalidArgument},
		{"body too large", func(r *pb.FetchRequest) { r.Body = make([]byte, limits.MaxFetchBodyBytes+1) }, codes.InvalidArgument},
		{"bad chain", func(r *pb.FetchRequest) { r.Chain = []string{"nope"} }, codes.InvalidArgument},
		{"class without a fetch handler", func(r *pb.FetchRequest) {
			r.Class, r.Id = counter.ClassName, counter.Namespace.IDFromName(a).String()
		}, codes.Unimplemented},
		{"class not registered", func(r *pb.FetchRequest) { r.Class = "Nope" }, codes.NotFound},
	} {
		req := good()
		bad.edit(req)
		if _, err := fetch(req); status.Code(err) != bad.want || status.Convert(err).Message() == "" {
			t.Errorf("%s: %v; want %v with a message", bad.what, err, bad.want)
		}
	}
}
