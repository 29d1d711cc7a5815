package objectnode

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"hellochat/fifo"
	"hellochat/limits"
	pb "hellochat/proto/roompb"
	"hellochat/shard"
	"hellochat/storage"
)

// RoomMailbox bounds the requests queued for one room. A full mailbox
// blocks the streams feeding it, which pushes back through gRPC flow control
// to the routers and from them to the browsers: a flood slows its senders
// instead of growing memory. The mailbox holds memory only for what
// waits in it, so an idle room does not pay for the bound.
const RoomMailbox = 4096

// ErrRoomStopped is returned to callers of a room that has shut down (idle
// eviction, lost ownership, node shutdown); they retry on a fresh actor or
// follow the redirect.
var ErrRoomStopped = errors.New("objectnode: room stopped")

// roomReq is one input to a room actor. Exactly one field is set.
type roomReq struct {
	attach *attachReq
	detach *stream
	from   *stream
	req    *pb.AttachRequest
	status chan *pb.RoomStatus
}

type attachReq struct {
	st     *stream
	result chan error
}

type sessionKey struct {
	st *stream
	id uint64
}

type session struct {
	name string
}

// pendingSend is a message waiting for its batch to commit, with everyone
// who must be acked when it does (a resend of an id still in flight waits
// on the first copy instead of being stored twice).
type pendingSend struct {
	msg     *pb.ChatMessage
	key     string // dedupeKey(name, client id)
	waiters []sessionKey
}

// room is the actor for one chat room: a single goroutine (run) owns all of
// its state, handles every event in arrival order and is the only writer of
// the room's keys. Nothing it broadcasts, acks or serves as history has not
// been committed first (the output gate).
type room struct {
	name    string
	shard   int
	node    *Node
	mailbox *fifo.Queue[roomReq]
	stopc   chan *pb.Redirect // apart from mailbox so a full mailbox cannot delay it
	commitc chan error        // result of the one batch in flight
	done    chan struct{}
	loadErr error // set before done is closed when the room could not load
	// nsessions is len(sessions), kept for the metrics where it changes.
	nsessions atomic.Int32

	// Owned by run. History is not kept here: routers read it from the
	// store in pages, and the store's dedupe index answers resends.
	lastSeq  uint64 // highest committed seq
	lastTS   int64
	streams  map[*stream]struct{}
	sessions map[sessionKey]*session
	inflight []*pendingSend
	pending  []*pendingSend
	queued   map[string]*pendingSend // dedupe key -> inflight or pending send
	stopping bool                    // lost leadership: finish up and exit
	// now is the room's clock in Unix milliseconds; tests set their own to
	// see timestamps they chose.
	now func() int64
	// dedupeWindow is how many of the newest messages keep their dedupe
	// records (DedupeWindow; tests shrink it).
	dedupeWindow uint64
}

// DedupeWindow is how many of a room's newest messages keep their dedupe
// records: a resend is recognised while fewer than this many messages
// were stored after its first copy.
const DedupeWindow = 1 << 16

// ShutdownCommitWait bounds how long a stopping room waits for its batch in
// flight; without a quorum it may never commit.
const ShutdownCommitWait = 2 * time.Second

func newRoom(n *Node, name string) *room {
	return &room{
		name:     name,
		shard:    shardOf(name),
		node:     n,
		mailbox:  fifo.New[roomReq](RoomMailbox),
		stopc:    make(chan *pb.Redirect, 1),
		commitc:  make(chan error, 1),
		done:     make(chan struct{}),
		streams:  map[*stream]struct{}{},
		sessions: map[sessionKey]*session{},
		queued:   map[string]*pendingSend{},
		now:      func() int64 { return time.Now().UnixMilli() },

		dedupeWindow: DedupeWindow,
	}
}

// load restores the room's last seq and timestamp from the store. It runs
// on the actor's goroutine before the first request; it reads one message,
// however long the room's history.
func (r *room) load() error {
	var decodeErr error
	err := r.node.store.Scan(r.name, []byte{msgKeyPrefix}, []byte{msgKeyPrefix + 1}, true, func(_, v []byte) bool {
		m := &pb.ChatMessage{}
		if decodeErr = proto.Unmarshal(v, m); decodeErr == nil {
			r.lastSeq, r.lastTS = m.Seq, m.TsMs
		}
		return false
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return fmt.Errorf("load room %q: %w", r.name, err)
	}
	return nil
}

// run is the actor loop. It exits when stopped, when idle for the node's
// RoomIdle with nobody attached, or when the node shuts down.
func (r *room) run() {
	defer r.exit()
	if err := r.load(); err != nil {
		r.node.log.Error("room failed to load", "room", r.name, "err", err)
		r.loadErr = err
		return
	}
	idle := time.NewTimer(r.node.cfg.RoomIdle)
	defer idle.Stop()
	for {
		select {
		case <-r.mailbox.Ready:
			q, ok := r.mailbox.Pop()
			if !ok {
				continue
			}
			r.handle(q)
			if q.status != nil {
				continue // looking at a room does not keep it awake
			}
		case redirect := <-r.stopc:
			r.shutdown(redirect)
			return
		case err := <-r.commitc:
			r.committed(err)
			if r.stopping {
				r.shutdown(r.node.redirectTo(r.leaderHint(), "leadership moved"))
				return
			}
		case <-idle.C:
			if r.idle() && r.node.evict(r) {
				return
			}
		case <-r.node.stopping:
			r.shutdown(&pb.Redirect{Reason: "node shutting down"})
			return
		}
		if r.idle() {
			idle.Reset(r.node.cfg.RoomIdle)
		}
	}
}

// enqueue hands the actor a request, waiting while its mailbox is full.
func (r *room) enqueue(ctx context.Context, q roomReq) error {
	if r.mailbox.Push(q, r.done, ctx.Done()) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrRoomStopped
}

// stop asks the actor to hand its streams a redirect and exit.
func (r *room) stop(redirect *pb.Redirect) {
	select {
	case r.stopc <- redirect:
	default: // a stop is already pending
	}
}

func (r *room) idle() bool {
	return len(r.streams) == 0 && len(r.inflight) == 0 && len(r.pending) == 0
}

// exit closes done and fails whatever is still queued, so callers blocked
// on this actor retry elsewhere instead of waiting forever.
func (r *room) exit() {
	r.node.evict(r)
	close(r.done)
	for {
		q, ok := r.mailbox.Pop()
		if !ok {
			return
		}
		switch {
		case q.attach != nil:
			q.attach.result <- r.stoppedErr()
		case q.status != nil:
			close(q.status)
		}
	}
}

// leaderHint is the shard's leader as far as this node knows.
func (r *room) leaderHint() string {
	if h := r.node.host.Load(); h != nil {
		_, leader := h.Serving(r.shard)
		return leader
	}
	return ""
}

func (r *room) stoppedErr() error {
	if r.loadErr != nil {
		return r.loadErr
	}
	return ErrRoomStopped
}

// shutdown finishes the batch in flight, rejects what was still waiting,
// and sends every stream the redirect before dropping it.
func (r *room) shutdown(redirect *pb.Redirect) {
	r.stopping = true
	if len(r.inflight) > 0 {
		select {
		case err := <-r.commitc:
			// Whatever the outcome, the redirect the room was stopped
			// with still says best where to go (stopping already keeps
			// committed from proposing what waits).
			r.committed(err)
		case <-time.After(ShutdownCommitWait):
			r.node.log.Warn("leaving a batch uncommitted", "room", r.name, "messages", len(r.inflight))
		}
	}
	// Nothing waiting was acked or refused: the routers resend it, with
	// the same ids, wherever the room lives next.
	r.pending = nil
	for st := range r.streams {
		st.end(redirect)
	}
	r.streams = map[*stream]struct{}{}
}

func (r *room) handle(q roomReq) {
	switch {
	case q.attach != nil:
		r.attach(q.attach)
	case q.detach != nil:
		r.detach(q.detach)
	case q.status != nil:
		q.status <- &pb.RoomStatus{Room: r.name, Shard: uint32(r.shard), LastSeq: r.lastSeq,
			Sessions: uint32(len(r.sessions)), Streams: uint32(len(r.streams))}
	case q.req != nil:
		if _, ok := r.streams[q.from]; !ok {
			return // the stream was dropped; its leftovers mean nothing now
		}
		switch k := q.req.Kind.(type) {
		case *pb.AttachRequest_Join:
			r.join(q.from, k.Join)
		case *pb.AttachRequest_Send:
			r.send(q.from, k.Send)
		case *pb.AttachRequest_Leave:
			r.leave(sessionKey{q.from, k.Leave.Session})
		case *pb.AttachRequest_Typing:
			if s := r.sessions[sessionKey{q.from, k.Typing.Session}]; s != nil {
				r.broadcast(&pb.AttachEvent{Kind: &pb.AttachEvent_Typing{Typing: &pb.Typing{
					Name: s.name, OriginRouter: q.from.router, OriginSession: k.Typing.Session}}})
			}
		}
	}
}

// attach registers a stream and tells it the last committed seq: every
// message committed after it follows on the stream, in order.
func (r *room) attach(a *attachReq) {
	r.streams[a.st] = struct{}{}
	r.sendTo(a.st, &pb.AttachEvent{Kind: &pb.AttachEvent_Opened{Opened: &pb.Opened{
		NodeId: r.node.cfg.ID, LastSeq: r.lastSeq}}})
	a.result <- nil
}

// detach forgets a stream and its sessions. The others are told they left,
// unless the stream was dropped for being too slow: its router comes back
// at once and re-joins them quietly, so the room only updates its list.
func (r *room) detach(st *stream) {
	if _, ok := r.streams[st]; !ok {
		return
	}
	delete(r.streams, st)
	var gone []sessionKey
	for k := range r.sessions {
		if k.st == st {
			gone = append(gone, k)
		}
	}
	if st.droppedSlow() {
		for _, k := range gone {
			delete(r.sessions, k)
		}
		if len(gone) > 0 {
			r.presence(pb.Presence_SNAPSHOT, "", sessionKey{})
		}
		return
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].id < gone[j].id })
	for _, k := range gone {
		r.leave(k)
	}
}

func (r *room) join(st *stream, j *pb.Join) {
	name, err := limits.Name(j.Name)
	if err != nil {
		r.sendTo(st, r.rejectEvent(j.Session, "", limits.CodeBadName, err.Error()))
		return
	}
	key := sessionKey{st, j.Session}
	_, rejoin := r.sessions[key]
	r.sessions[key] = &session{name: name}
	change := pb.Presence_JOINED
	if j.Quiet || rejoin {
		change = pb.Presence_SNAPSHOT
	}
	r.presence(change, name, key)
}

func (r *room) leave(key sessionKey) {
	s, ok := r.sessions[key]
	if !ok {
		return
	}
	delete(r.sessions, key)
	r.presence(pb.Presence_LEFT, s.name, key)
}

func (r *room) presence(change pb.Presence_Change, name string, key sessionKey) {
	r.nsessions.Store(int32(len(r.sessions))) // every change of sessions ends here
	users := make([]string, 0, len(r.sessions))
	for _, s := range r.sessions {
		users = append(users, s.name)
	}
	sort.Strings(users)
	p := &pb.Presence{Change: change, Name: name, OriginSession: key.id, Users: users}
	if key.st != nil {
		p.OriginRouter = key.st.router
	}
	r.broadcast(&pb.AttachEvent{Kind: &pb.AttachEvent_Presence{Presence: p}})
}

// send queues a message for the next batch, or acks a resend of one that
// is already stored or on its way.
func (r *room) send(st *stream, s *pb.Send) {
	r.node.metrics.received.Inc()
	key := sessionKey{st, s.Session}
	// A router resends unacknowledged messages after a failover even when
	// their sender has gone meanwhile; Send carries the name so they are
	// still stored. That name is the router's word alone, so it is held
	// to the rules a join's is: unchecked, it could be "system", hold NULs
	// (and so collide in the dedupe index) or be megabytes long.
	var name string
	switch sess := r.sessions[key]; {
	case s.Name != "":
		var err error
		if name, err = limits.Name(s.Name); err != nil {
			r.sendTo(st, r.rejectEvent(s.Session, s.ClientId, limits.CodeBadName, err.Error()))
			return
		}
	case sess != nil:
		name = sess.name
	default:
		r.sendTo(st, r.rejectEvent(s.Session, s.ClientId, limits.CodeBadName, "sender has no name"))
		return
	}
	if err := limits.ClientID(s.ClientId); err != nil {
		r.sendTo(st, r.rejectEvent(s.Session, s.ClientId, limits.CodeBadID, err.Error()))
		return
	}
	text, err := limits.Message(s.Text)
	if err != nil {
		code := limits.CodeBadJSON
		var le *limits.Error
		if errors.As(err, &le) {
			code = le.Code
		}
		r.sendTo(st, r.rejectEvent(s.Session, s.ClientId, code, err.Error()))
		return
	}
	if err := limits.ClientKey(s.Key); err != nil {
		r.sendTo(st, r.rejectEvent(s.Session, s.ClientId, limits.CodeBadID, err.Error()))
		return
	}
	dkey := dedupeKey(name, s.Key, s.ClientId)
	if p, ok := r.queued[dkey]; ok {
		p.waiters = append(p.waiters, key)
		return
	}
	// The store's index, not a window of recent ids: a resend is found
	// however many messages the room took since the first copy.
	v, found, err := r.node.store.Get(r.name, dedupeStoreKey(dkey))
	if err == nil && found {
		var seq uint64
		var ts int64
		if seq, ts, err = decodeStored(v); err == nil {
			r.sendTo(st, &pb.AttachEvent{Kind: &pb.AttachEvent_Ack{Ack: &pb.Ack{
				Session: s.Session, ClientId: s.ClientId, Seq: seq, TsMs: ts, Duplicate: true}}})
			return
		}
	}
	if err != nil {
		r.node.log.Error("read dedupe index", "room", r.name, "err", err)
		r.sendTo(st, r.rejectEvent(s.Session, s.ClientId, limits.CodeUnavailable, "message not stored: storage error"))
		return
	}
	p := &pendingSend{
		msg:     &pb.ChatMessage{Name: name, Text: text, ClientId: s.ClientId},
		key:     dkey,
		waiters: []sessionKey{key},
	}
	r.queued[dkey] = p
	r.pending = append(r.pending, p)
	if len(r.inflight) == 0 {
		r.propose()
	}
}

// propose stamps everything pending with seq and time and commits it as one
// batch: group commit, so a busy room pays one fsync per batch, not per
// message.
func (r *room) propose() {
	batch := r.pending
	r.pending = nil
	now := r.now()
	if now < r.lastTS {
		now = r.lastTS // G7: timestamps never go backwards in a room
	}
	ops := make([]storage.Op, 0, 5*len(batch))
	seq := r.lastSeq
	for _, p := range batch {
		seq++
		p.msg.Seq, p.msg.TsMs = seq, now
		b, err := proto.Marshal(p.msg)
		if err != nil {
			panic(fmt.Sprintf("objectnode: marshal message: %v", err)) // a proto of strings and ints cannot fail
		}
		ops = append(ops, storage.Op{Key: msgKey(seq), Value: b},
			storage.Op{Key: dedupeStoreKey(p.key), Value: encodeStored(seq, now)},
			storage.Op{Key: seqIDKey(seq), Value: []byte(p.key)})
		ops = r.forget(ops, seq, batch)
	}
	r.inflight = batch
	// The batch's first seq must still be free and the one before it taken:
	// a stale actor (one that missed a commit) is refused at apply time on
	// every replica, and never overwrites a committed message.
	first := r.lastSeq + 1
	// The room's version is its last seq. Replicas check it from memory;
	// the key conditions are for a room stored before versions existed.
	guards := storage.Guards{Absent: [][]byte{msgKey(first)}, Versioned: true, Version: r.lastSeq, Next: seq}
	if first > 1 {
		guards.Present = [][]byte{msgKey(first - 1)}
	}
	r.node.committer.Commit(r.name, ops, guards, func(err error) { r.commitc <- err })
}

// forget adds to ops the deletion of the dedupe records that storing seq
// moves out of the window. They go in the same batch as the message, so
// every replica drops exactly what the leader dropped, in the same
// (replicated) order. batch is the batch being proposed: a small window
// can pass messages of the batch itself.
func (r *room) forget(ops []storage.Op, seq uint64, batch []*pendingSend) []storage.Op {
	if seq <= r.dedupeWindow {
		return ops
	}
	old := seq - r.dedupeWindow
	var key string
	if old > r.lastSeq {
		key = batch[old-r.lastSeq-1].key
	} else {
		// Committed, so applied here: the store has it unless it predates
		// the 'i' index (those records stay) or the read fails (it stays
		// too; a stale record only answers a resend it could have).
		v, found, err := r.node.store.Get(r.name, seqIDKey(old))
		if err != nil {
			r.node.log.Warn("keeping a dedupe record", "room", r.name, "seq", old, "err", err)
		}
		if err != nil || !found {
			return ops
		}
		key = string(v)
	}
	return append(ops, storage.Op{Key: dedupeStoreKey(key), Delete: true}, storage.Op{Key: seqIDKey(old), Delete: true})
}

// committed runs when the batch in flight is durable (or failed): only now
// may anyone see it.
func (r *room) committed(err error) {
	batch := r.inflight
	r.inflight = nil
	switch {
	case errors.Is(err, shard.ErrNotLeader) || errors.Is(err, shard.ErrStopped) || errors.Is(err, shard.ErrConflict):
		// The room moves (or the node stops). The batch may still commit
		// under the next leader; its senders are neither acked nor refused
		// here, and their routers resend it there, where ids dedupe.
		r.stopping = true
		return
	case err != nil:
		r.node.log.Error("commit failed", "room", r.name, "messages", len(batch), "err", err)
		for _, p := range batch {
			r.reject(p, limits.CodeUnavailable, "message not stored: storage error")
		}
	default:
		r.node.metrics.committed.Add(float64(len(batch)))
		for _, p := range batch {
			delete(r.queued, p.key)
			r.lastSeq, r.lastTS = p.msg.Seq, p.msg.TsMs
			r.broadcast(&pb.AttachEvent{Kind: &pb.AttachEvent_Message{Message: p.msg}})
			r.node.metrics.delivered.Add(float64(len(r.streams))) // those broadcast did not drop
			for i, w := range p.waiters {
				if _, ok := r.streams[w.st]; ok {
					r.sendTo(w.st, &pb.AttachEvent{Kind: &pb.AttachEvent_Ack{Ack: &pb.Ack{
						Session: w.id, ClientId: p.msg.ClientId, Seq: p.msg.Seq, TsMs: p.msg.TsMs, Duplicate: i > 0}}})
				}
			}
		}
	}
	if len(r.pending) > 0 && !r.stopping {
		r.propose()
	}
}

func (r *room) reject(p *pendingSend, code, msg string) {
	delete(r.queued, p.key)
	for _, w := range p.waiters {
		if _, ok := r.streams[w.st]; ok {
			r.sendTo(w.st, r.rejectEvent(w.id, p.msg.ClientId, code, msg))
		}
	}
}

func (r *room) broadcast(ev *pb.AttachEvent) {
	for st := range r.streams {
		r.sendTo(st, ev)
	}
}

// sendTo queues an event for one stream without ever blocking the room: a
// stream whose queue is full is dropped, and its router re-attaches and
// reads what it missed in pages, so a slow router can neither stall a room
// nor make anyone lose a message.
func (r *room) sendTo(st *stream, ev *pb.AttachEvent) {
	if !st.push(ev) {
		r.node.dropSlow(r.name, st)
		r.detach(st)
	}
}

// rejectEvent refuses a join or message, and counts it.
func (r *room) rejectEvent(session uint64, clientID, code, msg string) *pb.AttachEvent {
	r.node.metrics.refuse(code)
	return &pb.AttachEvent{Kind: &pb.AttachEvent_Reject{Reject: &pb.Reject{
		Session: session, ClientId: clientID, Code: code, Message: msg}}}
}
