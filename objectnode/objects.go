package objectnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"hellochat/apps"
	"hellochat/cluster"
	"hellochat/durable"
	pb "hellochat/proto/roompb"
	"hellochat/storage"
)

// Durable objects (package durable) on the cluster. An object lives where
// its storage does: on the serving leader of shard
// partition.Of(id.StorageObject()). Its actor starts on the first call that
// reaches that node, reads the node's store and commits through the
// shard's Raft group; it is closed when the node stops serving the shard
// (leadershipChanged), after ObjectIdle without calls (unless its alarm is
// near), and at shutdown. The next call starts a fresh actor from what is
// committed, wherever the shard is led by then; so does the shard leader's
// alarm scan, for an object whose alarm comes due (alarms.go). One node
// runs at most one actor per object, and a node runs one only while it
// serves the shard; an actor that missed a commit anyway (a deposed leader
// that does not know it yet) is refused by the versioned batches
// (storage.Guards.Versioned).

// DefaultObjectIdle is how long an object's actor stays without calls
// before it is closed (Config.ObjectIdle).
const DefaultObjectIdle = time.Minute

// errObjectUnavailable wraps what keeps a node from running a call now
// (the object could not start); the router retries it.
var errObjectUnavailable = errors.New("object unavailable")

// objectHost is the node's registry of live object actors.
type objectHost struct {
	n      *Node
	apps   *apps.Registry
	idle   time.Duration
	alarms *alarmWaker // wakes objects whose alarm is due (alarms.go)

	// mu guards live and closed. It is a mutex rather than an owner
	// goroutine because the state is one index and every critical section
	// is a few map operations, and because leadershipChanged runs on the
	// Raft loop: it must retire a shard's actors at once, and an owner
	// goroutine busy elsewhere would make the Raft loop wait. Nothing that
	// blocks runs under mu: actors start and close outside it (their Load
	// and their last commit need the Raft loop).
	mu     sync.Mutex
	live   [cluster.Partitions]map[string]*liveObject // by shard, then storage object
	closed bool                                       // the node is stopping: start nothing
	wg     sync.WaitGroup                             // actors starting, running or closing
}

// liveObject is one object's actor in the registry.
type liveObject struct {
	object string
	shard  int
	id     durable.ID
	ready  chan struct{} // closed once the actor started, or failed to
	actor  *durable.Actor
	err    error // why it did not start; actor and err are set before ready closes

	// Guarded by objectHost.mu.
	name     string    // the name its ID came from, once an event brought it
	busy     int       // calls holding the entry
	lastUsed time.Time // when the last call let go of it
	retired  bool      // out of the registry; closed (or closing)
}

func newObjectHost(n *Node, reg *apps.Registry, idle time.Duration) *objectHost {
	o := &objectHost{n: n, apps: reg, idle: idle}
	o.alarms = newAlarmWaker(o)
	for s := range o.live {
		o.live[s] = map[string]*liveObject{}
	}
	return o
}

// acquire returns the object's running actor, starting it if needed, and
// holds it (busy) until release.
func (o *objectHost) acquire(ctx context.Context, id durable.ID, newObject func() durable.Object) (*liveObject, *pb.Redirect, error) {
	object := id.StorageObject()
	s := shardOf(object)
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, &pb.Redirect{Reason: "node shutting down"}, nil
	}
	e := o.live[s][object]
	if e == nil {
		// Checked under mu, which leadershipChanged also takes: an actor
		// is either refused here or retired there, never left running on
		// a node that stopped serving its shard.
		if redirect := o.n.redirectFor(object); redirect != nil {
			o.mu.Unlock()
			return nil, redirect, nil
		}
		e = &liveObject{object: object, shard: s, id: id, ready: make(chan struct{}), lastUsed: time.Now()}
		e.name, _ = id.Name()
		o.live[s][object] = e
		o.wg.Add(1)
		e.busy++
		o.mu.Unlock()
		o.start(e, id, newObject)
	} else {
		e.busy++
		if name, ok := id.Name(); ok && e.name == "" {
			e.name = name
		}
		o.mu.Unlock()
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		o.release(e)
		return nil, nil, ctx.Err()
	}
	if e.err != nil {
		o.release(e)
		return nil, nil, e.err
	}
	return e, nil, nil
}

// start starts e's actor, outside mu, once a quorum has confirmed this
// node leads the object's shard and it applied what was committed then,
// so the actor loads the object's newest state: Start runs the class's
// Load, which may commit.
func (o *objectHost) start(e *liveObject, id durable.ID, newObject func() durable.Object) {
	s := e.shard
	var a *durable.Actor
	err := o.n.confirmLeader(context.Background(), s)
	if err != nil {
		err = fmt.Errorf("leadership not confirmed: %w", err)
	} else {
		a, err = durable.Start(id, newObject, durable.Config{
			Reader:    o.n.store,
			Committer: o.n.committer,
			Stub:      o.n.stub,
			Sockets:   o.n.gateways.forObject(id, newObject),
			Confirm:   func(done func(error)) { o.n.confirmAsync(s, done) },
			Observe:   o.n.metrics.observeEvent,
			Logger:    o.n.log,
		})
	}
	o.mu.Lock()
	switch {
	case err != nil:
		o.n.log.Error("object failed to start", "object", id.Namespace()+"/"+id.String(), "err", err)
		e.err = fmt.Errorf("%w: start %s/%s: %v", errObjectUnavailable, id.Namespace(), id, err)
		o.forget(e)
	case e.retired:
		// Its shard moved (or the node began stopping) while it started.
		e.err = durable.ErrClosed
	default:
		e.actor = a
	}
	o.mu.Unlock()
	close(e.ready)
	if e.actor == nil {
		if a != nil {
			a.Close()
		}
		o.wg.Done()
	}
}

// release lets go of an entry acquire returned.
func (o *objectHost) release(e *liveObject) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e.busy--
	e.lastUsed = time.Now()
}

// forget takes e out of the index; mu is held.
func (o *objectHost) forget(e *liveObject) {
	e.retired = true
	if o.live[e.shard][e.object] == e {
		delete(o.live[e.shard], e.object)
	}
}

// retire takes e out of the index and closes its actor in the background:
// Close waits for a commit in flight, which needs the Raft loop, and
// retire is called from it. An actor still starting is closed by its
// starter. mu is held.
func (o *objectHost) retire(e *liveObject) {
	if e.retired {
		return
	}
	o.forget(e)
	if a := e.actor; a != nil {
		go func() {
			defer o.wg.Done()
			if err := a.Close(); err != nil {
				o.n.log.Warn("object closed", "object", e.object, "err", err)
			}
		}()
	}
}

// stopped reports whether an actor has stopped (closed, or given up).
func stopped(a *durable.Actor) bool {
	select {
	case <-a.Done():
		return true
	default:
		return false
	}
}

// retireStopped retires e if its actor has stopped, so the next call
// starts a fresh one.
func (o *objectHost) retireStopped(e *liveObject) {
	if !stopped(e.actor) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retire(e)
}

// shardLost closes the actors of a shard this node no longer serves. It
// runs on the Raft loop, and does not wait for them.
func (o *objectHost) shardLost(s int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.live[s] {
		o.retire(e)
	}
}

// sweep closes the actors that had no call for the idle period, until the
// node stops; not one whose alarm is due within alarmWakeAhead
// (alarms.go), which would only be woken again for it. It also takes out
// actors that stopped on their own, which calls would find and replace
// but the alarm scan, seeing them in the registry, would not.
func (o *objectHost) sweep() {
	t := time.NewTicker(max(o.idle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-o.n.stopping:
			return
		}
		o.mu.Lock()
		for s := range o.live {
			for _, e := range o.live[s] {
				if e.busy != 0 || e.actor == nil {
					continue
				}
				if stopped(e.actor) || time.Since(e.lastUsed) >= o.idle && !alarmNear(e.actor) {
					o.retire(e)
				}
			}
		}
		o.mu.Unlock()
	}
}

// closeAll closes every actor and waits until they are closed; nothing
// starts afterwards. Shutdown calls it while Raft still runs, so that
// commits in flight can finish; Kill after stopping Raft, so they fail.
func (o *objectHost) closeAll() {
	o.mu.Lock()
	o.closed = true
	for s := range o.live {
		for _, e := range o.live[s] {
			o.retire(e)
		}
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// MaxStatusObjects bounds the objects a node's Status lists, so that a
// node running many keeps its answer small (hellochat_node_active_objects
// counts them all).
const MaxStatusObjects = 1000

// status lists the objects with an actor here, started or starting, at
// most MaxStatusObjects of them.
func (o *objectHost) status() []*pb.ObjectStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*pb.ObjectStatus
	for s := range o.live {
		for _, e := range o.live[s] {
			if len(out) == MaxStatusObjects {
				return out
			}
			out = append(out, &pb.ObjectStatus{Class: e.id.Namespace(), Id: e.id.String(), Name: e.name, Shard: uint32(s)})
		}
	}
	return out
}

// count is how many objects have an actor here, started or starting.
func (o *objectHost) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := 0
	for s := range o.live {
		c += len(o.live[s])
	}
	return c
}

// ObjectKeys reads an object's committed keys in [start, end) (nil end: to
// its last) from this node's store, without starting its actor: for tests
// and tools that must look at an object without waking it. It must not be
// called once the node was stopped.
func (n *Node) ObjectKeys(object string, start, end []byte) ([]storage.KV, error) {
	return n.store.List(object, start, end, 0, false)
}
