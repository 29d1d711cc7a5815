package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"hellochat/apps/counter"
	"hellochat/cluster"
	"hellochat/durable"
	tc "hellochat/internal/testcluster"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/security"
)

// counterObject is the storage object (and so the shard) of a counter.
func counterObject(name string) string { return counter.Namespace.IDFromName(name).StorageObject() }

// counterRequest makes one request to a counter route and returns the
// status and, on 200, the value.
func counterRequest(client *http.Client, base, method, name, key string) (int, int64, string, error) {
	req, err := http.NewRequest(method, base+"/counter/"+name, nil)
	if err != nil {
		return 0, 0, "", err
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, 0, strings.TrimSpace(string(body)), nil
	}
	var res struct {
		Value *int64 `json:"value"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.Value == nil {
		return resp.StatusCode, 0, string(body), fmt.Errorf("bad answer %q: %v", body, err)
	}
	return resp.StatusCode, *res.Value, "", nil
}

// TestObjectsCounterThroughLeaderKill: clients increment several counters
// through the router at once, each increment with its own Idempotency-Key,
// and retry a failed one with the same key until it is answered; some
// re-send an answered one (an answer lost on the way) and must get the
// same value. Midway the leader of one counter's shard is killed. In the
// end every counter answered exactly 1..N, once each, and reads N.
func TestObjectsCounterThroughLeaderKill(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	names := []string{"visits", "likes", "clicks", "votes"}
	const (
		clientsPer = 2
		perClient  = 20 // increments per client: N = 40 per counter
		dupEvery   = 4  // every dupEvery-th increment is sent twice
	)
	victim := c.ObjectLeader(counterObject(names[0]))
	total := len(names) * clientsPer * perClient
	killAt := int64(total / 3)
	deadline := time.Now().Add(90 * time.Second)
	httpClient := &http.Client{Timeout: 2 * time.Minute} // the router bounds each call itself

	var (
		answered atomic.Int64
		retries  atomic.Int64 // failed attempts, retried with the same key
		mu       sync.Mutex
		got      = map[string]map[string]int64{} // counter -> key -> value
		errs     = make(chan error, total)
		wg       sync.WaitGroup
	)
	for _, name := range names {
		got[name] = map[string]int64{}
	}
	// increment retries a key until it is answered (or the test's deadline).
	increment := func(name, key string) (int64, error) {
		for {
			code, v, msg, err := counterRequest(httpClient, c.URL(), "POST", name, key)
			switch {
			case err == nil && code == http.StatusOK:
				return v, nil
			case err == nil && code != http.StatusServiceUnavailable:
				return 0, fmt.Errorf("POST %s key %s: %d %s", name, key, code, msg)
			}
			retries.Add(1)
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("POST %s key %s: no answer by the deadline (last: %d %s %v)", name, key, code, msg, err)
			}
		}
	}
	for _, name := range names {
		for k := range clientsPer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perClient {
					key := fmt.Sprintf("%s-client%d-%d", name, k, i)
					v, err := increment(name, key)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					got[name][key] = v
					mu.Unlock()
					answered.Add(1)
					if i%dupEvery == 0 {
						again, err := increment(name, key)
						if err != nil {
							errs <- err
							return
						}
						if again != v {
							errs <- fmt.Errorf("%s: key %s answered %d, its retry %d", name, key, v, again)
							return
						}
					}
				}
			}()
		}
	}
	tc.Eventually(t, 60*time.Second, func() error {
		if n := answered.Load(); n < killAt && len(errs) == 0 {
			return fmt.Errorf("%d of %d increments answered before the kill", n, killAt)
		}
		return nil
	})
	if len(errs) == 0 {
		t.Logf("killing node%d, leader of %q's shard, after %d of %d increments", victim+1, names[0], answered.Load(), total)
		c.Kill(victim)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d attempts failed and were retried with their key", retries.Load())
	n := clientsPer * perClient
	for _, name := range names {
		var values []int64
		for _, v := range got[name] {
			values = append(values, v)
		}
		slices.Sort(values)
		for i, v := range values {
			if v != int64(i+1) {
				t.Errorf("%s: answered values %v: want exactly 1..%d, each once", name, values, n)
				break
			}
		}
		if len(values) != n {
			t.Errorf("%s: %d increments answered, want %d", name, len(values), n)
		}
		code, v, msg, err := counterRequest(httpClient, c.URL(), "GET", name, "")
		if err != nil || code != http.StatusOK || v != int64(n) {
			t.Errorf("GET %s: %d %d %s %v; want 200 and %d", name, code, v, msg, err, n)
		}
	}
	if l := c.ObjectLeader(counterObject(names[0])); l == victim {
		t.Errorf("node%d still leads %q's shard after its kill", victim+1, names[0])
	}
}

// TestObjectsCounterRefusals: the router refuses bad counter requests with
// 4xx, and a node refuses bad Objects.Call inputs with clear codes,
// redirects a call for a shard it does not lead, passes an object's own
// error back, and answers only routers.
func TestObjectsCounterRefusals(t *testing.T) {
	c := tc.New(t, 3, tc.Options{})
	httpClient := &http.Client{Timeout: time.Minute}
	for _, bad := range []struct {
		method, name, key string
		want              int
	}{
		{"POST", strings.Repeat("n", limits.MaxRoomBytes+1), "", http.StatusBadRequest},
		{"POST", "%01ctl", "", http.StatusBadRequest},
		{"POST", "%20padded", "", http.StatusBadRequest},
		{"POST", "ok", limits.RouterIDMark + "mine", http.StatusBadRequest},
		{"POST", "ok", strings.Repeat("k", limits.MaxIdempotencyKeyBytes+1), http.StatusBadRequest},
		{"DELETE", "ok", "", http.StatusMethodNotAllowed},
	} {
		code, _, msg, err := counterRequest(httpClient, c.URL(), bad.method, bad.name, bad.key)
		if err != nil || code != bad.want || msg == "" {
			t.Errorf("%s /counter/%s key %q: %d %q %v; want %d with a message", bad.method, bad.name, bad.key, code, msg, err, bad.want)
		}
	}
	if code, v, msg, err := counterRequest(httpClient, c.URL(), "GET", "fresh", ""); err != nil || code != 200 || v != 0 {
		t.Errorf("GET of a new counter: %d %d %s %v", code, v, msg, err)
	}
	// Increments without a key get one from the router.
	for want := int64(1); want <= 2; want++ {
		if code, v, msg, err := counterRequest(httpClient, c.URL(), "POST", "nokey", ""); err != nil || code != 200 || v != want {
			t.Errorf("POST without a key: %d %d %s %v; want %d", code, v, msg, err, want)
		}
	}

	id := counter.Namespace.IDFromName("direct")
	leader := c.ObjectLeader(id.StorageObject())
	other := (leader + 1) % 3
	call := func(i int, role string, req *pb.CallRequest) (*pb.CallResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return pb.NewObjectsClient(grpcConn(t, c, role, c.Config(i).GRPCListen)).Call(ctx, req)
	}
	good := func() *pb.CallRequest {
		return &pb.CallRequest{Class: counter.ClassName, Id: id.String(), Method: "increment"}
	}
	if resp, err := call(leader, security.RoleRouter, good()); err != nil || resp.GetResult() == nil {
		t.Fatalf("call on the leader: %v %v", resp, err)
	}
	for _, bad := range []struct {
		what string
		edit func(*pb.CallRequest)
		want codes.Code
	}{
		{"unknown class", func(r *pb.CallRequest) { r.Class = "Nope" }, codes.NotFound},
		{"id not hex", func(r *pb.CallRequest) { r.Id = "zz" }, codes.InvalidArgument},
		{"id of another class", func(r *pb.CallRequest) { r.Id = strings.Repeat("0", 64) }, codes.InvalidArgument},
		{"bad method name", func(r *pb.CallRequest) { r.Method = "in crement" }, codes.InvalidArgument},
		{"empty method", func(r *pb.CallRequest) { r.Method = "" }, codes.InvalidArgument},
		{"argument too large", func(r *pb.CallRequest) { r.Arg = make([]byte, limits.MaxObjectArgBytes+1) }, codes.InvalidArgument},
		{"chain entry without a class", func(r *pb.CallRequest) { r.Chain = []string{id.String()} }, codes.InvalidArgument},
		{"chain entry of an unknown class", func(r *pb.CallRequest) { r.Chain = []string{"Nope/" + id.String()} }, codes.InvalidArgument},
		{"chain entry not hex", func(r *pb.CallRequest) { r.Chain = []string{counter.ClassName + "/zz"} }, codes.InvalidArgument},
		{"chain too long", func(r *pb.CallRequest) {
			r.Chain = slices.Repeat([]string{counter.ClassName + "/" + counter.Namespace.IDFromName("x").String()}, durable.MaxCallDepth+1)
		}, codes.InvalidArgument},
		{"chain through the object itself", func(r *pb.CallRequest) { r.Chain = []string{counter.ClassName + "/" + id.String()} }, codes.FailedPrecondition},
		{"name the id was not made from", func(r *pb.CallRequest) { r.Name = "indirect" }, codes.InvalidArgument},
		{"name too long", func(r *pb.CallRequest) { r.Name = strings.Repeat("n", limits.MaxObjectNameBytes+1) }, codes.InvalidArgument},
	} {
		req := good()
		bad.edit(req)
		if _, err := call(leader, security.RoleRouter, req); status.Code(err) != bad.want || status.Convert(err).Message() == "" {
			t.Errorf("%s: %v; want %v with a message", bad.what, err, bad.want)
		}
	}
	if _, err := call(leader, security.RoleAdmin, good()); status.Code(err) != codes.PermissionDenied {
		t.Errorf("call with an admin's certificate: %v; want PermissionDenied", err)
	}
	// Nodes call for their objects (durable.State.Call).
	if resp, err := call(leader, security.RoleNode, good()); err != nil || resp.GetResult() == nil {
		t.Errorf("call with a node's certificate: %v %v", resp, err)
	}
	// A call that carries the name its id came from names the object in
	// the node's status, for operators to find it.
	named := good()
	named.Name = "direct"
	if resp, err := call(leader, security.RoleRouter, named); err != nil || resp.GetResult() == nil {
		t.Errorf("call with the object's name: %v %v", resp, err)
	}
	listed := false
	for _, o := range nodeStatus(t, c, c.Config(leader).GRPCListen).GetObjects() {
		if o.GetId() == id.String() {
			listed = o.GetName() == "direct" && o.GetClass() == counter.ClassName && int(o.GetShard()) == cluster.Shard(id.StorageObject())
			if !listed {
				t.Errorf("the leader lists the object as %v; want name direct, class %s, its shard", o, counter.ClassName)
			}
		}
	}
	if !listed {
		t.Errorf("the leader's status does not list the object it just ran")
	}
	// The object's own refusal comes back as its error, not a gRPC one.
	req := good()
	req.Method = "decrement"
	if resp, err := call(leader, security.RoleRouter, req); err != nil || !strings.Contains(resp.GetError().GetMessage(), "no method") {
		t.Errorf("unknown method of the object: %v %v; want its error", resp, err)
	}
	// A node that does not lead the shard redirects to the one that does.
	resp, err := call(other, security.RoleRouter, good())
	if err != nil || resp.GetRedirect().GetOwnerAddr() != c.Config(leader).GRPCListen {
		t.Errorf("call on a follower: %v %v; want a redirect to %s", resp, err, c.Config(leader).GRPCListen)
	}
	if code, v, msg, err := counterRequest(httpClient, c.URL(), "GET", "direct", ""); err != nil || code != 200 || v != 3 {
		t.Errorf("GET direct: %d %d %s %v; want 3 (the router's, the node's and the named increments ran, nothing else counted)", code, v, msg, err)
	}
}

// TestObjectsIdleActorsClose: an object's actor runs on its shard's leader
// only, is closed after ObjectIdle without calls, and the next call starts
// a fresh one that carries on from what is committed.
func TestObjectsIdleActorsClose(t *testing.T) {
	c := tc.New(t, 3, tc.Options{ObjectIdle: 300 * time.Millisecond})
	httpClient := &http.Client{Timeout: time.Minute}
	leader := c.ObjectLeader(counterObject("idle"))
	for want := int64(1); want <= 2; want++ {
		if code, v, msg, err := counterRequest(httpClient, c.URL(), "POST", "idle", ""); err != nil || code != 200 || v != want {
			t.Fatalf("POST: %d %d %s %v; want %d", code, v, msg, err, want)
		}
		if n := c.Nodes[leader].ActiveObjects(); n != 1 {
			t.Fatalf("the leader has %d actors after a call, want 1", n)
		}
		for i, n := range c.Nodes {
			if i != leader && n.ActiveObjects() != 0 {
				t.Fatalf("node%d, not the leader, runs %d actors", i+1, n.ActiveObjects())
			}
		}
		tc.Eventually(t, 10*time.Second, func() error {
			if n := c.Nodes[leader].ActiveObjects(); n != 0 {
				return fmt.Errorf("%d actors still open on the leader", n)
			}
			return nil
		})
	}
}
