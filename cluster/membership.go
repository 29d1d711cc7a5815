package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/memberlist"

	"hellochat/security"
)

// Roles a member can have.
const (
	RoleNode   = "node"
	RoleRouter = "router"
)

// Meta is what a member tells the others about itself through gossip.
type Meta struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	GRPC   string `json:"grpc,omitempty"`   // object nodes: the Rooms service
	HTTP   string `json:"http,omitempty"`   // routers: the browser edge
	Gossip string `json:"gossip,omitempty"` // where to rejoin it
	// Started orders two metas of the same member: the later process wins,
	// so a node restarted on new addresses replaces its old entry. Object
	// nodes make it an incarnation counter persisted in their data dir
	// (never below the last one, whatever the clock says); routers use the
	// start time. Version orders the updates of one process.
	Started int64  `json:"started"`
	Version uint64 `json:"version,omitempty"`
	// Leads is a bitmask of the shards whose Raft group this node leads and
	// serves: routers follow it to find a room's leader quickly, and notice
	// a new leader even while an old, paused one still holds its streams.
	Leads uint64 `json:"leads,omitempty"`
	// Replica is the incarnation of an object node's data directory, made
	// fresh whenever the node starts on an empty (or wiped) disk. A node's
	// Raft identity is its id and this together, so a node that lost its
	// disk comes back as a new replica and never votes with a memory it
	// does not have. "" is the incarnation of data dirs older than it.
	Replica string `json:"replica,omitempty"`
	// Cluster is the id of the cluster the node's data belongs to; "" while
	// a fresh node has not joined one yet. Members ignore object nodes of
	// another cluster.
	Cluster string `json:"cluster,omitempty"`
	// Leaving is set on an object node being decommissioned: it leaves the
	// ring, its replicas move to other nodes, then it stops.
	Leaving bool `json:"leaving,omitempty"`
	// Proof is the member's own signature of the fields above, when the
	// cluster runs with certificates: members persist and push it along,
	// so the member's word travels intact even while it is down.
	Proof *Proof `json:"proof,omitempty"`
	// Forgotten is set, with Role RoleForgotten, on an entry of the known
	// set (pushed or persisted) that is an admin's tombstone, not a member.
	Forgotten *Tombstone `json:"forgotten,omitempty"`
}

// RaftID is the Raft id of an object node's replicas (0 is "none" to Raft).
func (m Meta) RaftID() uint64 { return RaftID(m.ID, m.Replica) }

// RaftID is the Raft id of node id's replicas in incarnation replica.
func RaftID(id, replica string) uint64 {
	if replica == "" {
		return xxhash.Sum64String(id) | 1
	}
	return xxhash.Sum64String(id+"/"+replica) | 1
}

// newer reports whether m supersedes old.
func (m Meta) newer(old Meta) bool {
	if m.Started != old.Started {
		return m.Started > old.Started
	}
	return m.Version > old.Version
}

// Timings tunes failure detection. The defaults declare a crashed member
// dead in about one to two seconds on a LAN; memberlist's stock LAN config
// takes 4-24 s with three or four members.
type Timings struct {
	ProbeInterval       time.Duration
	ProbeTimeout        time.Duration
	SuspicionMult       int
	GossipInterval      time.Duration
	PushPullInterval    time.Duration
	DeadNodeReclaimTime time.Duration
	RejoinInterval      time.Duration
}

// DefaultTimings suits a LAN or loopback.
func DefaultTimings() Timings {
	return Timings{
		ProbeInterval:       400 * time.Millisecond,
		ProbeTimeout:        200 * time.Millisecond,
		SuspicionMult:       2,
		GossipInterval:      100 * time.Millisecond,
		PushPullInterval:    5 * time.Second,
		DeadNodeReclaimTime: time.Second,
		RejoinInterval:      time.Second,
	}
}

// Config configures one member.
type Config struct {
	Meta      Meta     // ID, Role and the addresses others should use
	Bind      string   // gossip listen address, host:port (port 0 picks one)
	Advertise string   // gossip address others use; empty means Bind
	Seeds     []string // gossip addresses to join
	Timings   Timings
	// GossipKey, when set, encrypts and authenticates every gossip packet
	// (AES-256-GCM, memberlist's keyring): a process without it can
	// neither join nor read the cluster's metadata.
	GossipKey []byte
	// Security, unless nil or insecure, signs this member's metadata with
	// its certificate's key, and makes it refuse every other member's
	// metadata (gossiped, pushed or in Known) that is not signed by a
	// certificate of the cluster's CA naming that member's id and role.
	Security *security.Settings
	// Known is the set of object nodes this member knew before it started
	// (persisted by nodes), so a node restarted while another is down still
	// builds the same ring.
	Known []Meta
	// OnKnown is called, from the membership goroutine, whenever the set of
	// known object nodes changes; nodes persist it.
	OnKnown func([]Meta)
	// OnConflict is called (from a gossip goroutine) when this member must
	// stop: another live process uses its id (only the process that
	// started later gets the call), or an admin forgot this node's
	// incarnation. err says which; the process should exit.
	OnConflict func(err error)
	Logger     *slog.Logger
	// LogOutput receives memberlist's own log lines.
	LogOutput io.Writer
}

// Membership is this process's view of the cluster. One goroutine (run)
// owns the known/alive sets; readers get immutable Placement snapshots.
type Membership struct {
	cfg  Config
	meta atomic.Pointer[Meta] // the newest, read by memberlist goroutines
	// sealMu serializes signing; sealedFrom is the meta last signed,
	// signed its signed form and wire what memberlist gossips of it.
	sealMu     sync.Mutex
	sealedFrom *Meta
	signed     atomic.Pointer[Meta]
	wire       atomic.Pointer[[]byte]
	// sealer signs our meta and verifier checks others'; both nil without
	// certificates.
	sealer   *sealer
	verifier *verifier
	refusals refusals
	// tombs is the tombstones as known-set entries, oldest first, as the
	// membership goroutine last published them.
	tombs      atomic.Pointer[[]Meta]
	forgotSelf sync.Once
	// updateMu serializes writers of meta; updates wakes gossipUpdates.
	updateMu sync.Mutex
	updates  chan struct{}
	ml       *memberlist.Memberlist
	events   chan memberlist.NodeEvent
	merges   chan merge
	log      *slog.Logger

	placement atomic.Pointer[Placement]
	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced on every new placement

	foreigners sync.Map // member/cluster of foreign nodes already logged

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// Start creates the memberlist, joins the seeds (retrying in the background
// until it succeeds) and starts tracking the cluster.
func Start(cfg Config) (*Membership, error) {
	if cfg.Meta.ID == "" {
		return nil, errors.New("cluster: member id is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timings == (Timings{}) {
		cfg.Timings = DefaultTimings()
	}
	if cfg.Meta.Started == 0 {
		cfg.Meta.Started = time.Now().UnixNano()
	}
	m := &Membership{
		cfg:     cfg,
		events:  make(chan memberlist.NodeEvent, 256),
		merges:  make(chan merge, 16),
		updates: make(chan struct{}, 1),
		log:     cfg.Logger,
		changed: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}

	if cfg.Security.Secure() {
		certs, err := newCertCache(cfg.Security)
		if err != nil {
			return nil, err
		}
		own := cfg.Security.Certificate()
		m.sealer = &sealer{sec: cfg.Security, cert: own, fp: fingerprint(own)}
		m.verifier = &verifier{certs: certs}
		if err := m.checkMetaSize(cfg.Meta); err != nil {
			return nil, err
		}
	}

	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip bind address: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Meta.ID
	mc.SecretKey = cfg.GossipKey
	mc.BindAddr, mc.BindPort = host, port
	if cfg.Advertise != "" {
		ah, ap, err := splitHostPort(cfg.Advertise)
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	t := cfg.Timings
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	mc.SuspicionMult = t.SuspicionMult
	mc.SuspicionMaxTimeoutMult = 3
	mc.GossipInterval = t.GossipInterval
	mc.PushPullInterval = t.PushPullInterval
	mc.DeadNodeReclaimTime = t.DeadNodeReclaimTime
	mc.TCPTimeout = 2 * time.Second
	mc.Events = &memberlist.ChannelEventDelegate{Ch: m.events}
	mc.Delegate = (*delegate)(m)
	mc.Conflict = (*delegate)(m)
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	if !cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		out = dropDebug{out}
	}
	mc.Logger = log.New(out, "memberlist: ", log.Lmicroseconds)

	// The disk holds what gossip brought; it is checked like gossip, so
	// metas from before signatures (or forged ones an older version
	// persisted) do not come back. Tombstones first: they decide which
	// metas may.
	graves := graveyard{}
	for _, k := range cfg.Known {
		if k.Role != RoleForgotten {
			continue
		}
		if k.Forgotten == nil {
			m.refuse(k.ID, "disk", errors.New("tombstone entry without a tombstone"))
			continue
		}
		t, err := m.verifier.openTombstone(*k.Forgotten)
		if err != nil {
			m.refuse(k.ID, "disk", err)
			continue
		}
		graves.add(t)
	}
	if t, ok := graves.forgets(cfg.Meta); ok {
		return nil, fmt.Errorf("cluster: %w", errForgottenSelf(t))
	}
	known := map[string]Meta{}
	for _, k := range cfg.Known {
		if k.Role == RoleForgotten {
			continue
		}
		opened, err := m.verifier.openProof(k)
		if err != nil {
			m.refuse(k.ID, "disk", err)
			continue
		}
		if _, gone := graves.forgets(opened); gone {
			m.refuse(k.ID, "disk", errForgotten)
			continue
		}
		if opened.ID != "" && opened.Role == RoleNode {
			known[opened.ID] = opened
		}
	}
	m.publishTombs(graves)
	// Publish an initial placement and meta before memberlist can call the
	// delegate.
	m.placement.Store(newPlacement(0, known, nil, nil))
	if cfg.Meta.Gossip == "" && port != 0 {
		cfg.Meta.Gossip = cfg.Bind
		if cfg.Advertise != "" {
			cfg.Meta.Gossip = cfg.Advertise
		}
	}
	if err := m.store(cfg.Meta); err != nil {
		return nil, err
	}

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip on %s: %w", cfg.Bind, err)
	}
	m.ml = ml
	if port == 0 {
		// Only now is the picked port known; gossip it with the next update.
		ln := ml.LocalNode()
		meta := m.Meta()
		meta.Gossip = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
		if err := m.store(meta); err != nil {
			ml.Shutdown()
			return nil, err
		}
		if err := ml.UpdateNode(time.Second); err != nil {
			m.log.Warn("gossip own address", "err", err)
		}
	}

	go m.run(known, graves)
	go m.gossipUpdates()
	return m, nil
}

// Meta is this member's own metadata (with the gossip address filled in).
func (m *Membership) Meta() Meta { return *m.meta.Load() }

// GossipAddr is the address other members can join.
func (m *Membership) GossipAddr() string { return m.meta.Load().Gossip }

// SetLeads gossips the set of shards this member leads. Updates are
// coalesced: memberlist's UpdateNode waits for the broadcast, so one
// goroutine sends the newest mask while others keep coming.
func (m *Membership) SetLeads(mask uint64) {
	m.update(func(meta *Meta) bool {
		if meta.Leads == mask {
			return false
		}
		meta.Leads = mask
		return true
	})
}

// SetCluster records the cluster id this node's data belongs to, once a
// fresh node has formed or joined a cluster.
func (m *Membership) SetCluster(id string) {
	m.update(func(meta *Meta) bool {
		if meta.Cluster == id {
			return false
		}
		meta.Cluster = id
		return true
	})
}

// SetLeaving marks this node as being decommissioned: every member takes it
// out of the ring.
func (m *Membership) SetLeaving() {
	m.update(func(meta *Meta) bool {
		if meta.Leaving {
			return false
		}
		meta.Leaving = true
		return true
	})
	// Our own entry in the known set changes too; the placement follows.
	// It must carry its proof: it is pushed to others from there.
	own, err := m.reseal()
	if err != nil {
		m.log.Error("signing this node's metadata", "err", err)
		return
	}
	select {
	case m.merges <- merge{metas: []Meta{own}}:
	case <-m.stop:
	}
}

// update changes this member's meta under updateMu and has gossipUpdates
// sign and gossip it when change reports a change. Callers include the
// Raft loop (SetLeads), so the signature is made aside, once per burst.
func (m *Membership) update(change func(*Meta) bool) {
	m.updateMu.Lock()
	meta := *m.meta.Load()
	if !change(&meta) {
		m.updateMu.Unlock()
		return
	}
	meta.Version++
	meta.Proof = nil // it signed the previous version
	m.meta.Store(&meta)
	m.updateMu.Unlock()
	select {
	case m.updates <- struct{}{}:
	default: // an update is already pending and will carry this one
	}
}

func (m *Membership) gossipUpdates() {
	for {
		select {
		case <-m.updates:
			if _, err := m.reseal(); err != nil {
				// Only signing can fail, and our own key does not stop
				// working: keep gossiping the last signed meta rather
				// than an unsigned one.
				m.log.Error("signing this member's metadata", "err", err)
				continue
			}
			if err := m.ml.UpdateNode(time.Second); err != nil {
				m.log.Debug("gossip metadata update", "err", err)
			}
		case <-m.stop:
			return
		}
	}
}

// Placement is the current view.
func (m *Membership) Placement() *Placement { return m.placement.Load() }

// Changed returns a channel closed when the placement next changes.
func (m *Membership) Changed() <-chan struct{} {
	m.changedMu.Lock()
	defer m.changedMu.Unlock()
	return m.changed
}

// Leave tells the others this member is going away on purpose. It keeps its
// place in the ring: a node that leaves is expected back.
func (m *Membership) Leave(timeout time.Duration) error {
	if err := m.ml.Leave(timeout); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip. It is idempotent.
func (m *Membership) Shutdown() error {
	var err error
	m.stopOnce.Do(func() {
		close(m.stop)
		err = m.ml.Shutdown()
		<-m.done
	})
	return err
}

// run owns known and alive. It coalesces bursts of events into one new
// placement, persists the known set when it grows or changes, and rejoins
// members it knows of but does not see.
func (m *Membership) run(known map[string]Meta, graves graveyard) {
	defer close(m.done)
	alive := map[string]bool{}
	routers := map[string]Meta{} // live routers; they hold no place in the ring
	// Gossiped metas that name a certificate we have not seen: held (not
	// alive, not known) until a push/pull brings it.
	pending := map[string]*pendingMeta{}
	var version uint64
	rejoin := time.NewTicker(m.cfg.Timings.RejoinInterval)
	defer rejoin.Stop()
	m.rejoin(known, alive)

	for {
		knownChanged, dirty, tombsChanged := false, false, false
		accept := func(meta Meta) {
			dirty = true
			if m.foreign(meta) {
				return
			}
			if _, gone := graves.forgets(meta); gone {
				m.refuse(meta.ID, "gossip", errForgotten)
				delete(alive, meta.ID)
				return
			}
			if !alive[meta.ID] {
				m.log.Info("member up", "member", meta.ID, "role", meta.Role, "gossip", meta.Gossip)
			}
			alive[meta.ID] = true
			if meta.Role == RoleNode && mergeMeta(known, meta) {
				knownChanged = true
			}
			if meta.Role == RoleRouter {
				routers[meta.ID] = meta
			}
		}
		// open checks what memberlist gossiped for name from addr.
		open := func(name string, raw []byte, addr string) {
			meta, err := m.verifier.openWire(raw, name)
			switch {
			case errors.Is(err, errNoCert):
				p := pending[name]
				if p == nil {
					if len(pending) >= MaxPendingMetas {
						m.refuse(name, "gossip", fmt.Errorf("%w (and %d members are waiting for theirs)", err, len(pending)))
						return
					}
					p = &pendingMeta{addr: addr}
					pending[name] = p
					m.fetchCert(p)
				}
				p.raw = raw
			case err != nil:
				delete(pending, name)
				m.refuse(name, "gossip", err)
			default:
				delete(pending, name)
				accept(meta)
			}
		}
		apply := func(ev memberlist.NodeEvent) {
			dirty = true
			switch ev.Event {
			case memberlist.NodeJoin, memberlist.NodeUpdate:
				open(ev.Node.Name, ev.Node.Meta, ev.Node.Address())
			case memberlist.NodeLeave:
				if alive[ev.Node.Name] && ev.Node.Name != m.meta.Load().ID {
					m.log.Info("member down", "member", ev.Node.Name)
				}
				delete(alive, ev.Node.Name)
				delete(routers, ev.Node.Name)
				delete(pending, ev.Node.Name)
			}
		}
		// bury applies a checked tombstone: the incarnation it names
		// leaves the known set (so the ring) and is no longer alive.
		bury := func(t Tombstone) {
			if !graves.add(t) {
				return
			}
			tombsChanged, dirty = true, true
			self := m.meta.Load()
			if t.forgets(*self) {
				m.forgotSelf.Do(func() {
					err := errForgottenSelf(t)
					m.log.Error("this node was forgotten", "err", err)
					if m.cfg.OnConflict != nil {
						go m.cfg.OnConflict(err)
					}
				})
				return
			}
			if k, ok := known[t.Node]; ok && t.forgets(k) {
				delete(known, t.Node)
				delete(alive, t.Node)
				delete(pending, t.Node)
				knownChanged = true
				m.log.Info("forgot node", "member", t.Node, "replica", t.Replica, "at", time.Unix(0, t.At).UTC())
			}
		}
		mergeKnown := func(mg merge) {
			for _, t := range mg.tombstones {
				bury(t) // checked by Forget
			}
			if len(mg.tombstones) > 0 {
				m.spread(known, routers, alive)
			}
			// Tombstones before metas: a push carries both, and the
			// metas it carries may be the ones they forget.
			for _, meta := range mg.metas {
				if meta.Role != RoleForgotten {
					continue
				}
				if meta.Forgotten == nil {
					m.refuse(meta.ID, "push/pull", errors.New("tombstone entry without a tombstone"))
					continue
				}
				if _, held := graves[meta.Forgotten.key()]; held {
					continue // pushed again; checked when it first came
				}
				t, err := m.verifier.openTombstone(*meta.Forgotten)
				if err != nil {
					m.refuse(meta.ID, "push/pull tombstone", err)
					continue
				}
				bury(t)
			}
			for _, meta := range mg.metas {
				if meta.Role == RoleForgotten {
					continue
				}
				if mg.remote {
					if old, ok := known[meta.ID]; ok && sameProof(old.Proof, meta.Proof) {
						continue // pushed again; checked when it first came
					}
					opened, err := m.verifier.openProof(meta)
					if err != nil {
						m.refuse(meta.ID, "push/pull", err)
						continue
					}
					meta = opened
				}
				if m.foreign(meta) {
					continue
				}
				if _, gone := graves.forgets(meta); gone {
					if mg.remote {
						m.refuse(meta.ID, "push/pull", errForgotten)
					}
					continue
				}
				// A member that is alive speaks for itself (its own
				// gossip, applied above); what a peer pushes about it,
				// or about us, could only be stale or forged.
				if mg.remote && (alive[meta.ID] || meta.ID == m.meta.Load().ID) {
					continue
				}
				if meta.Role == RoleNode && mergeMeta(known, meta) {
					knownChanged, dirty = true, true
				}
			}
		}

		select {
		case <-m.stop:
			return
		case ev := <-m.events:
			apply(ev)
		case mg := <-m.merges:
			mergeKnown(mg)
		case <-rejoin.C:
			m.rejoin(known, alive)
			for name, p := range pending {
				if p.fetches >= certFetches {
					delete(pending, name)
					m.refuse(name, "gossip", fmt.Errorf("%w after %d push/pull exchanges", errNoCert, p.fetches))
					continue
				}
				m.fetchCert(p)
			}
			continue
		}
	drain:
		for {
			select {
			case ev := <-m.events:
				apply(ev)
			case mg := <-m.merges:
				mergeKnown(mg)
			default:
				break drain
			}
		}
		// A push/pull may have brought the certificates pending metas
		// name.
		for name, p := range pending {
			open(name, p.raw, p.addr)
		}
		if !dirty {
			continue
		}
		if tombsChanged {
			m.publishTombs(graves)
		}
		version++
		m.publish(newPlacement(version, known, alive, routers))
		if (knownChanged || tombsChanged) && m.cfg.OnKnown != nil {
			m.cfg.OnKnown(append(m.placement.Load().Nodes(), *m.tombs.Load()...))
		}
	}
}

// foreign reports (and logs, once per member) an object node of another
// cluster: it may share the gossip pool by mistake but never gets a place
// in the ring.
func (m *Membership) foreign(meta Meta) bool {
	own := m.meta.Load().Cluster
	if own == "" && meta.Cluster != "" && meta.Role == RoleNode && m.meta.Load().Role == RoleRouter {
		// A router holds no data: it serves the first cluster it meets and
		// ignores nodes of any other.
		m.SetCluster(meta.Cluster)
		own = meta.Cluster
		m.log.Info("serving cluster", "cluster", own)
	}
	if meta.Role != RoleNode || own == "" || meta.Cluster == "" || meta.Cluster == own {
		return false
	}
	if _, seen := m.foreigners.LoadOrStore(meta.ID+"/"+meta.Cluster, true); !seen {
		m.log.Warn("ignoring an object node of another cluster", "member", meta.ID,
			"its_cluster", meta.Cluster, "cluster", own, "gossip", meta.Gossip)
	}
	return true
}

// Foreigners lists the object nodes of other clusters this member has
// seen in its gossip pool and ignored, as "id/cluster".
func (m *Membership) Foreigners() []string {
	var out []string
	m.foreigners.Range(func(k, _ any) bool {
		out = append(out, k.(string))
		return true
	})
	sort.Strings(out)
	return out
}

func (m *Membership) publish(p *Placement) {
	m.placement.Store(p)
	m.changedMu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.changedMu.Unlock()
}

// rejoin joins seeds and known nodes that gossip does not currently show
// alive: memberlist stops probing dead members, so without this a cluster
// whose members all restarted would stay split.
func (m *Membership) rejoin(known map[string]Meta, alive map[string]bool) {
	var addrs []string
	self := m.meta.Load()
	seen := map[string]bool{self.Gossip: true}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	for _, s := range m.cfg.Seeds {
		if m.ml.NumMembers() <= 1 {
			add(s)
		}
	}
	for id, k := range known {
		if id != self.ID && !alive[id] {
			add(k.Gossip)
		}
	}
	if len(addrs) == 0 {
		return
	}
	// Join can take TCPTimeout per unreachable address; run it aside so
	// events keep flowing.
	go func() {
		if n, err := m.ml.Join(addrs); err != nil && n == 0 {
			m.log.Debug("rejoin found nobody", "tried", addrs, "err", err)
		}
	}()
}

// merge is a set of metas for the known set: our own (remote false), or
// pushed by a peer.
type merge struct {
	metas      []Meta
	remote     bool
	tombstones []Tombstone // checked already (Forget)
}

// mergeMeta records meta in known if it is new or newer; it reports a change.
func mergeMeta(known map[string]Meta, meta Meta) bool {
	old, ok := known[meta.ID]
	if ok && !meta.newer(old) {
		return false
	}
	known[meta.ID] = meta
	return true
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", ps, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// delegate carries the member's metadata and, in push/pull exchanges, the
// set of known object nodes, so a process that starts while a node is down
// still learns that node's place in the ring.
type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.wire.Load()
	if len(b) > limit {
		d.log.Error("member metadata too large", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState is the known set, our own meta, and the tombstones: a
// member that asks for our state (to get the certificate our gossip names)
// finds it there, whatever our role.
func (d *delegate) LocalState(join bool) []byte {
	state := append(d.placement.Load().Nodes(), *d.signed.Load())
	b, _ := json.Marshal(append(state, *d.tombs.Load()...))
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	var metas []Meta
	if err := json.Unmarshal(buf, &metas); err != nil {
		d.log.Warn("ignoring bad remote state", "err", err)
		return
	}
	select {
	case d.merges <- merge{metas: metas, remote: true}:
	case <-d.stop:
	}
}

// NotifyConflict is memberlist telling us that two live processes claim
// one member name. Both learn of it; the one that started later (by its
// Meta.Started) is the duplicate.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	self := d.meta.Load()
	if existing.Name != self.ID {
		d.log.Error("two processes use one member id", "member", existing.Name,
			"addr", existing.Address(), "other_addr", other.Address())
		return
	}
	theirs, err := d.verifier.openWire(other.Meta, other.Name)
	if err != nil {
		// Only the member itself can make us give way: a claim anyone
		// with the gossip key could make is not enough.
		(*Membership)(d).refuse(other.Name, "conflict", err)
		return
	}
	if theirs.Started > self.Started {
		return // the other process is the newcomer; it gets the same call
	}
	err = fmt.Errorf("member id %q is already used by a live process (gossip %s, gRPC %s, started %s); "+
		"give this process another --id, or stop that one first",
		self.ID, other.Address(), theirs.GRPC, time.Unix(0, theirs.Started).Format(time.RFC3339))
	if d.cfg.OnConflict != nil {
		d.cfg.OnConflict(err)
	}
}

// dropDebug filters memberlist's debug lines (one per gossip exchange) out
// of the log unless the process runs with --debug.
type dropDebug struct{ w io.Writer }

func (d dropDebug) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("[DEBUG]")) {
		return len(p), nil
	}
	return d.w.Write(p)
}
