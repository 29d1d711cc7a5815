package objectnode

import (
	"context"
	"sync/atomic"
	"time"

	"hellochat/cluster"
	"hellochat/durable"
)

// Alarms on the cluster. An object's alarm is in its own storage, so it
// survives whatever happens to the actor that set it; but an alarm only
// fires in a running actor, and actors start when a call reaches them.
// So the serving leader of each shard looks for the shard's objects whose
// alarm is due soon and wakes them: it starts their actor through the
// path a call takes (leadership confirmed by a quorum, the registry's one
// actor per object), and the actor arms its timer from storage.
//
// There is no index of alarms: a shard command writes one object's keys,
// and an index entry written in a second command could be lost or left
// behind apart from the alarm it names. Instead the leader scans its
// store, seeking from object to object straight to each one's alarm key
// (storage.SeekObjects: two seeks an object, however much it stores), at
// most alarmScanObjects objects of a shard per pass and one pass every
// alarmScanInterval, resuming where the last pass stopped. A shard of N
// objects is scanned through once every ceil(N/alarmScanObjects) passes;
// an object whose alarm is due within alarmWakeAhead when the scan passes
// it is woken. With up to alarmScanObjects*alarmWakeAhead/alarmScanInterval
// objects per shard (768) every alarm is woken before it is due; beyond
// that an alarm can fire up to one scan through the shard late.
//
// A node that becomes a shard's serving leader scans it from its start at
// once (leadershipChanged), so an alarm due while the shard had no leader
// fires as soon as it has one again.
//
// It also passes once through the shard's objects that hold WebSockets
// (durable.SocketKeyPrefix) and starts them. The old leader may have
// committed events whose frames never left it; nothing else would start
// such an object until its next event, and its class's Load is where it
// can send the recent ones again (numbered, so routers drop repeats).
//
// Idle actors: the sweep does not close an actor whose alarm is due
// within alarmWakeAhead, since the scan would only wake it again; one
// whose alarm is further away is closed like any other and woken when the
// alarm comes near. So an object with an alarm set for next year costs
// nothing in memory until then.
const (
	alarmScanInterval = time.Second
	alarmScanObjects  = 256
	alarmWakeAhead    = 3 * time.Second
	// alarmWakeTimeout bounds one wake-up: the leadership confirmation
	// and the actor's start (its class's Load).
	alarmWakeTimeout = ConfirmTimeout + 5*time.Second
	// maxAlarmSkipsLogged bounds the objects of unregistered classes the
	// scanner remembers having logged, so each is logged once, not once a
	// pass.
	maxAlarmSkipsLogged = 1024
)

// alarmNear reports whether the actor's alarm is due within
// alarmWakeAhead (or overdue, and being retried).
func alarmNear(a *durable.Actor) bool {
	at, set := a.Alarm()
	return set && time.Until(at) <= alarmWakeAhead
}

// alarmWaker is the goroutine that scans the shards this node serves for
// objects whose alarm is due. It owns its cursors; leadershipChanged only
// flags shards to scan afresh and kicks it.
type alarmWaker struct {
	o     *objectHost
	kick  chan struct{}                   // capacity 1: a shard was flagged
	fresh [cluster.Partitions]atomic.Bool // newly served: scan from the start now

	// Owned by the run goroutine.
	cursor [cluster.Partitions]string // the last object scanned in the current pass
	// sockets marks the shards whose objects with sockets are still to
	// be started since the node became their leader, and sockCursor is
	// the last object that pass visited.
	sockets    [cluster.Partitions]bool
	sockCursor [cluster.Partitions]string
	logged     map[string]bool // unregistered classes' objects already logged
}

func newAlarmWaker(o *objectHost) *alarmWaker {
	return &alarmWaker{o: o, kick: make(chan struct{}, 1), logged: map[string]bool{}}
}

// shardServed is leadershipChanged telling the waker that this node now
// serves shard s. It runs on the Raft loop and does not block.
func (w *alarmWaker) shardServed(s int) {
	w.fresh[s].Store(true)
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run scans until the node stops. It is counted in the host's wait group,
// so the store outlives it.
func (w *alarmWaker) run() {
	defer w.o.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.o.n.stopping:
		case <-ctx.Done():
		}
		cancel()
	}()
	t := time.NewTicker(alarmScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
		for s := range w.cursor {
			if ctx.Err() != nil {
				return
			}
			if w.fresh[s].Swap(false) {
				w.cursor[s] = ""
				w.sockets[s], w.sockCursor[s] = true, ""
			}
			if !w.serving(s) {
				w.cursor[s] = ""
				w.sockets[s] = false
				continue
			}
			w.cursor[s] = w.scan(ctx, s, w.cursor[s])
			if w.sockets[s] {
				w.sockCursor[s], w.sockets[s] = w.scanSockets(ctx, s, w.sockCursor[s])
			}
		}
	}
}

func (w *alarmWaker) serving(s int) bool {
	h := w.o.n.host.Load()
	if h == nil {
		return false
	}
	serving, _ := h.Serving(s)
	return serving
}

// scan examines up to alarmScanObjects objects of shard s after cursor,
// wakes those whose alarm is due soon, and returns where the next pass
// resumes ("" once the shard was scanned through).
func (w *alarmWaker) scan(ctx context.Context, s int, cursor string) string {
	log := w.o.n.log
	horizon := time.Now().Add(alarmWakeAhead)
	var due []string
	last, done, err := w.o.n.store.SeekObjects(s, durable.StoragePrefix, cursor, durable.AlarmKey(), alarmScanObjects,
		func(object string, value []byte) {
			if value == nil {
				return
			}
			at, err := durable.DecodeAlarm(value)
			if err != nil {
				log.Error("object's stored alarm unreadable; not waking it", "object", object, "err", err)
				return
			}
			if !at.After(horizon) {
				due = append(due, object)
			}
		})
	if err != nil {
		log.Error("scan a shard for due alarms", "shard", s, "err", err)
		return "" // start the shard over next pass
	}
	for _, object := range due {
		w.wake(ctx, s, object, "alarm")
	}
	if done {
		return ""
	}
	return last
}

// scanSockets visits up to alarmScanObjects objects of shard s after
// cursor and starts those that hold sockets; it returns where the pass
// resumes, and whether it has more to visit.
func (w *alarmWaker) scanSockets(ctx context.Context, s int, cursor string) (string, bool) {
	var holding []string
	last, done, err := w.o.n.store.SeekObjectsHaving(s, durable.StoragePrefix, cursor, durable.SocketKeyPrefix(), alarmScanObjects,
		func(object string, value []byte) {
			if value != nil {
				holding = append(holding, object)
			}
		})
	if err != nil {
		w.o.n.log.Error("scan a shard for objects holding sockets", "shard", s, "err", err)
		return "", false
	}
	for _, object := range holding {
		w.wake(ctx, s, object, "sockets")
	}
	return last, !done
}

// wake starts the actor of object, which has an alarm due soon or holds
// sockets (why), unless it runs already.
func (w *alarmWaker) wake(ctx context.Context, s int, object, why string) {
	o, log := w.o, w.o.n.log
	class, hexID, ok := durable.ParseStorageObject(object)
	if !ok {
		w.logOnce(object, "object name in the store is not a durable object's; not waking it", why)
		return
	}
	ns, newObject, ok := o.apps.Class(class)
	if !ok {
		w.logOnce(object, "object of a class not registered here; not waking it", why)
		return
	}
	id, err := ns.IDFromString(hexID)
	if err != nil {
		w.logOnce(object, "object's id in the store is not one of its class; not waking it", why)
		return
	}
	o.mu.Lock()
	_, live := o.live[s][object]
	o.mu.Unlock()
	if live {
		return // its actor runs: its alarm is armed, its Load ran
	}
	ctx, cancel := context.WithTimeout(ctx, alarmWakeTimeout)
	defer cancel()
	// The actor's start confirms this node's leadership.
	e, redirect, err := o.acquire(ctx, id, newObject)
	switch {
	case redirect != nil:
		log.Debug("wake-up redirected", "object", object, "for", why, "reason", redirect.GetReason())
	case err != nil:
		log.Warn("wake an object", "object", object, "for", why, "err", err)
	default:
		o.release(e)
	}
}

func (w *alarmWaker) logOnce(object, msg, why string) {
	if w.logged[object] {
		return
	}
	if len(w.logged) >= maxAlarmSkipsLogged {
		clear(w.logged)
	}
	w.logged[object] = true
	w.o.n.log.Warn(msg, "object", object, "for", why)
}
