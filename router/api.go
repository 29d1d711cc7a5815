package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"hellochat/cluster"
	pb "hellochat/proto/roompb"
)

// MaxQRText bounds the text encoded by /qr.png.
const MaxQRText = 512

// grpcConnectParams retries a node quickly: grpc's default backoff grows to
// two minutes, far longer than a node restart takes.
var grpcConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 2 * time.Second,
}

// handlePublicHealth says only whether the router can serve every room:
// counts of nodes and shards are for the admin endpoint.
func (rt *Router) handlePublicHealth(w http.ResponseWriter, _ *http.Request) {
	if rt.isClosing() || !rt.members.Placement().Serving() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (rt *Router) handleHealth(w http.ResponseWriter, _ *http.Request) {
	// A router shutting down is taken out of rotation before it drops its
	// browsers.
	if rt.isClosing() {
		http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
		return
	}
	p := rt.members.Placement()
	alive, total := p.NodeCounts()
	// Healthy means every room can be served now: each shard has a leader.
	if !p.Serving() {
		http.Error(w, fmt.Sprintf("not ready: %d of %d object nodes alive, %d of %d shards have a leader",
			alive, total, p.LedShards(), cluster.Partitions), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok: %d of %d object nodes alive, all %d shards have a leader\n", alive, total, cluster.Partitions)
}

// handleQR draws a QR code server-side so the page needs no CDN.
func handleQR(w http.ResponseWriter, req *http.Request) {
	text := req.URL.Query().Get("text")
	if text == "" || len(text) > MaxQRText {
		http.Error(w, fmt.Sprintf("text must be 1-%d bytes", MaxQRText), http.StatusBadRequest)
		return
	}
	png, err := qrcode.Encode(text, qrcode.Medium, 256)
	if err != nil {
		http.Error(w, "cannot encode: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(png)
}

// clusterView is what /api/cluster reports.
type clusterView struct {
	Router     string         `json:"router"`
	Partitions int            `json:"partitions"`
	Members    []memberView   `json:"members"`
	Shards     map[int]string `json:"shards"`  // shard -> preferred leader (ring's first replica)
	Leaders    map[int]string `json:"leaders"` // shard -> node gossiping that it leads
	Nodes      []nodeView     `json:"nodes"`
	Rooms      []roomOwner    `json:"rooms,omitempty"`
	// Groups is every shard's Raft group as its leader reports it, indexed
	// by shard; a shard whose leader did not answer has no Leader.
	Groups []groupView `json:"groups"`
	// MovesInFlight counts the shards whose leader reports a replica move
	// under way; GroupsReported counts the shards whose leader answered.
	MovesInFlight  int `json:"moves_in_flight"`
	GroupsReported int `json:"groups_reported"`
}

type memberView struct {
	ID    string `json:"id"`
	Role  string `json:"role"`
	Addr  string `json:"addr"`
	Alive bool   `json:"alive"`
	// The rest is set for object nodes only. Leaving: being decommissioned.
	// Left: decommissioned and gone (down, and no answering leader names it
	// in its group).
	Leaving bool `json:"leaving,omitempty"`
	Left    bool `json:"left,omitempty"`
	// Replicas is how many shard replicas the node holds, by its own count
	// (absent when it did not answer).
	Replicas *uint32 `json:"replicas,omitempty"`
	// RingWants counts the shards whose leader's ring names this node as a
	// replica; InGroups those whose leader has it as a voter or learner.
	RingWants int `json:"ring_wants,omitempty"`
	InGroups  int `json:"in_groups,omitempty"`
}

type nodeView struct {
	ID      string             `json:"id"`
	Ready   bool               `json:"ready"`
	Error   string             `json:"error,omitempty"`
	Objects []*pb.ObjectStatus `json:"objects,omitempty"`
	// ObjectCommits is the node's count of objects' committed batches
	// (the live view's rates come from it).
	ObjectCommits uint64 `json:"objectCommits"`
}

// groupView is one shard's Raft group as its leader sees it. Moving is set
// while a move is under way: the voters are not the replicas the ring wants
// (Want, preferred leader first), or a learner is catching up. A voter from
// an earlier incarnation of a node (its disk was wiped) is named "id(old)".
type groupView struct {
	Shard    int      `json:"shard"`
	Leader   string   `json:"leader,omitempty"`
	Voters   []string `json:"voters,omitempty"`
	Learners []string `json:"learners,omitempty"`
	Want     []string `json:"want,omitempty"`
	Applied  uint64   `json:"applied,omitempty"`
	Moving   bool     `json:"moving,omitempty"`
	// Behind names the replicas whose node has applied less of the shard
	// than the leader had when asked (or did not answer): a restarted or
	// new replica catching up. Under load a follower is often a few
	// entries behind; in a quiet cluster none is.
	Behind []string `json:"behind,omitempty"`
}

type roomOwner struct {
	Room     string   `json:"room"`
	Shard    int      `json:"shard"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"` // preferred leader first; "(down)" marks dead ones
}

// handleCluster reports members, shard owners, each shard's replicas and
// moves, and each node's active objects: the view users need while they kill,
// restart, add and remove nodes.
func (rt *Router) handleCluster(w http.ResponseWriter, req *http.Request) {
	var rooms []string
	if r := req.URL.Query().Get("rooms"); r != "" {
		rooms = strings.Split(r, ",")
	}
	v := rt.clusterView(req.Context(), rooms)
	if req.URL.Query().Get("format") == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		writeClusterText(w, v)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// clusterView builds the view from gossip and every live node's Status,
// with the owners of rooms.
func (rt *Router) clusterView(ctx context.Context, rooms []string) clusterView {
	p := rt.members.Placement()
	v := clusterView{Router: rt.cfg.ID, Partitions: cluster.Partitions, Shards: map[int]string{}, Leaders: map[int]string{}}
	for s := 0; s < cluster.Partitions; s++ {
		if o, ok := p.ShardOwner(s); ok {
			v.Shards[s] = o.ID
		}
		if l := p.Leaders(s); len(l) > 0 {
			v.Leaders[s] = l[0].ID
		}
	}
	// Ask every live node at once: one slow node must not use up the
	// others' time.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	nodes := p.Nodes()
	statuses := make([]*pb.StatusResponse, len(nodes))
	v.Nodes = make([]nodeView, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		v.Nodes[i].ID = n.ID
		if !p.Alive(n.ID) {
			v.Nodes[i].Error = "down"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nv := &v.Nodes[i]
			if conn, err := rt.conn(n.GRPC); err != nil {
				nv.Error = err.Error()
			} else if st, err := pb.NewRoomsClient(conn).Status(ctx, &pb.StatusRequest{}); err != nil {
				nv.Error = err.Error()
			} else {
				nv.Ready, nv.Objects, nv.ObjectCommits = st.Ready, st.Objects, st.ObjectCommits
				statuses[i] = st
			}
		}()
	}
	wg.Wait()
	v.Groups, v.MovesInFlight, v.GroupsReported = collectGroups(v.Leaders, statuses)
	wants, in := map[string]int{}, map[string]int{}
	for _, g := range v.Groups {
		for _, id := range g.Want {
			wants[id]++
		}
		for _, id := range append(append([]string(nil), g.Voters...), g.Learners...) {
			in[id]++
		}
	}
	for i, n := range nodes {
		m := memberView{ID: n.ID, Role: n.Role, Addr: n.GRPC, Alive: p.Alive(n.ID), Leaving: n.Leaving,
			RingWants: wants[n.ID], InGroups: in[n.ID]}
		if st := statuses[i]; st != nil {
			m.Leaving = m.Leaving || st.Leaving
			m.Replicas = &st.Replicas
		}
		m.Left = m.Leaving && !m.Alive && m.InGroups == 0 && v.GroupsReported == cluster.Partitions
		if m.Left {
			v.Nodes[i].Error = "left"
		}
		v.Members = append(v.Members, m)
	}
	for _, r := range p.Routers() {
		v.Members = append(v.Members, memberView{ID: r.ID, Role: r.Role, Addr: r.HTTP, Alive: true})
	}
	for _, room := range rooms {
		if rt.rooms == nil {
			break // no class of rooms to look them up in
		}
		// A room is the RoomClass object named after it.
		ro := roomOwner{Room: room, Shard: cluster.Shard(rt.rooms.IDFromName(room).StorageObject())}
		if l := p.Leaders(ro.Shard); len(l) > 0 {
			ro.Leader = l[0].ID
		}
		reps, _ := p.Replicas(ro.Shard, 3)
		for _, r := range reps {
			name := r.ID
			if !p.Alive(r.ID) {
				name += "(down)"
			}
			ro.Replicas = append(ro.Replicas, name)
		}
		v.Rooms = append(v.Rooms, ro)
	}
	return v
}

// collectGroups builds every shard's group from the nodes' Status answers
// (nil for a node that did not answer). Two nodes may both claim a shard
// for a moment while leadership moves: the one gossip names as leader wins,
// else the one that applied more. A replica is behind when its node
// applied less of the shard than the leader has, or did not answer. It
// also counts the shards with a move in flight and those whose leader
// answered.
func collectGroups(leaders map[int]string, statuses []*pb.StatusResponse) (groups []groupView, moving, reported int) {
	best := make([]*pb.ShardStatus, cluster.Partitions)
	bestNode := make([]string, cluster.Partitions)
	applied := map[string]map[int]uint64{} // node -> shard -> index applied
	for _, st := range statuses {
		if st == nil {
			continue
		}
		byShard := map[int]uint64{}
		for _, a := range st.Applied {
			byShard[int(a.Shard)] = a.Index
		}
		applied[st.NodeId] = byShard
		for _, ss := range st.Shards {
			s := int(ss.Shard)
			if s < 0 || s >= cluster.Partitions {
				continue
			}
			if cur := best[s]; cur != nil {
				if bestNode[s] == leaders[s] || (st.NodeId != leaders[s] && cur.Applied >= ss.Applied) {
					continue
				}
			}
			best[s], bestNode[s] = ss, st.NodeId
		}
	}
	groups = make([]groupView, cluster.Partitions)
	for s := range groups {
		g := groupView{Shard: s}
		if ss := best[s]; ss != nil {
			reported++
			g.Leader = bestNode[s]
			g.Voters = sortedCopy(ss.Voters)
			g.Learners = sortedCopy(ss.Learners)
			g.Want = append([]string(nil), ss.Want...)
			g.Applied = ss.Applied
			if a, ok := applied[g.Leader][s]; ok {
				g.Applied = a // read with the replicas', not when the leader last published
			}
			g.Behind = behind(g, applied)
			g.Moving = len(g.Learners) > 0 || !sameSet(g.Voters, g.Want)
			if g.Moving {
				moving++
			}
		}
		groups[s] = g
	}
	return groups, moving, reported
}

// behind lists the group's current replicas whose node has applied less
// of the shard than its leader, or did not answer. A replica of an
// earlier incarnation ("id(old)") is on its way out: the move shows it.
func behind(g groupView, applied map[string]map[int]uint64) []string {
	var out []string
	for _, r := range slices.Concat(g.Voters, g.Learners) {
		if r == g.Leader || strings.HasSuffix(r, "(old)") {
			continue
		}
		if a, ok := applied[r][g.Shard]; !ok || a < g.Applied {
			out = append(out, r)
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	in := map[string]int{}
	for _, x := range a {
		in[x]++
	}
	for _, x := range b {
		if in[x] == 0 {
			return false
		}
		in[x]--
	}
	return true
}

func listOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// memberState is a member's STATE column: alive, leaving, DOWN,
// DOWN,leaving or left.
func memberState(m memberView) string {
	switch {
	case m.Left:
		return "left"
	case m.Alive && m.Leaving:
		return "leaving"
	case m.Alive:
		return "alive"
	case m.Leaving:
		return "DOWN,leaving"
	}
	return "DOWN"
}

func writeClusterText(w io.Writer, v clusterView) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBER\tROLE\tADDRESS\tSTATE\tSHARDS LED (PREFERRED)\tREPLICAS (RING WANTS)\n")
	owned, led := map[string]int{}, map[string]int{}
	for _, o := range v.Shards {
		owned[o]++
	}
	for _, l := range v.Leaders {
		led[l]++
	}
	for _, m := range v.Members {
		shards, replicas := "-", "-"
		if m.Role == cluster.RoleNode {
			shards = fmt.Sprintf("%d (%d) of %d", led[m.ID], owned[m.ID], v.Partitions)
			held := "?" // it did not answer
			if m.Replicas != nil {
				held = fmt.Sprint(*m.Replicas)
			} else if m.Left {
				held = "0" // no answering leader names it
			}
			replicas = fmt.Sprintf("%s (%d)", held, m.RingWants)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Role, m.Addr, memberState(m), shards, replicas)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SHARD\tLEADER\tVOTERS\tLEARNERS\tRING WANTS\tMOVE\tBEHIND\n")
	for _, g := range v.Groups {
		if g.Leader == "" {
			fmt.Fprintf(tw, "%d\t?\t?\t?\t?\t(no leader answered)\t?\n", g.Shard)
			continue
		}
		move := "-"
		if g.Moving {
			move = "moving"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Shard, g.Leader, listOrDash(g.Voters), listOrDash(g.Learners), listOrDash(g.Want), move, listOrDash(g.Behind))
	}
	tw.Flush()
	// scripts/add-node.sh and restart-node.sh parse this line.
	fmt.Fprintf(w, "moves in flight: %d of %d shards (voters differ from the ring's replicas, or a learner is catching up); leaders answered for %d of %d shards\n",
		v.MovesInFlight, v.Partitions, v.GroupsReported, v.Partitions)
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ACTIVE OBJECT\tNAME\tSHARD\tNODE\n")
	for _, n := range v.Nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "(%s: %s)\t\t\t\n", n.ID, n.Error)
			continue
		}
		sort.Slice(n.Objects, func(i, j int) bool {
			a, b := n.Objects[i], n.Objects[j]
			return a.Class < b.Class || a.Class == b.Class && a.Id < b.Id
		})
		for _, o := range n.Objects {
			name := o.Name
			if name == "" {
				name = "-"
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%d\t%s\n", o.Class, o.Id, name, o.Shard, n.ID)
		}
	}
	tw.Flush()
	if len(v.Rooms) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "ROOM\tSHARD\tLEADER\tREPLICAS\n")
		for _, r := range v.Rooms {
			leader := r.Leader
			if leader == "" {
				leader = "(electing)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Room, r.Shard, leader, strings.Join(r.Replicas, ","))
		}
		tw.Flush()
	}
}
