package router

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
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

func (rt *Router) handleHealth(w http.ResponseWriter, _ *http.Request) {
	p := rt.members.Placement()
	led := 0
	for s := 0; s < cluster.Partitions; s++ {
		if len(p.Leaders(s)) > 0 {
			led++
		}
	}
	// Healthy means every room can be served now: each shard has a leader.
	if p.LiveNodes() == 0 || led < cluster.Partitions {
		http.Error(w, fmt.Sprintf("not ready: %d of %d object nodes alive, %d of %d shards have a leader",
			p.LiveNodes(), len(p.Nodes()), led, cluster.Partitions), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok: %d of %d object nodes alive, all %d shards have a leader\n", p.LiveNodes(), len(p.Nodes()), cluster.Partitions)
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
}

type memberView struct {
	ID    string `json:"id"`
	Role  string `json:"role"`
	Addr  string `json:"addr"`
	Alive bool   `json:"alive"`
}

type nodeView struct {
	ID    string           `json:"id"`
	Ready bool             `json:"ready"`
	Error string           `json:"error,omitempty"`
	Rooms []*pb.RoomStatus `json:"rooms"`
}

type roomOwner struct {
	Room     string   `json:"room"`
	Shard    int      `json:"shard"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"` // preferred leader first; "(down)" marks dead ones
}

// handleCluster reports members, shard owners and each node's active rooms:
// the view users need while they kill and restart nodes.
func (rt *Router) handleCluster(w http.ResponseWriter, req *http.Request) {
	p := rt.members.Placement()
	v := clusterView{Router: rt.cfg.ID, Partitions: cluster.Partitions, Shards: map[int]string{}, Leaders: map[int]string{}}
	for _, n := range p.Nodes() {
		v.Members = append(v.Members, memberView{ID: n.ID, Role: n.Role, Addr: n.GRPC, Alive: p.Alive(n.ID)})
	}
	for _, r := range p.Routers() {
		v.Members = append(v.Members, memberView{ID: r.ID, Role: r.Role, Addr: r.HTTP, Alive: true})
	}
	for s := 0; s < cluster.Partitions; s++ {
		if o, ok := p.ShardOwner(s); ok {
			v.Shards[s] = o.ID
		}
		if l := p.Leaders(s); len(l) > 0 {
			v.Leaders[s] = l[0].ID
		}
	}
	ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
	defer cancel()
	for _, n := range p.Nodes() {
		nv := nodeView{ID: n.ID}
		if !p.Alive(n.ID) {
			nv.Error = "down"
		} else if conn, err := rt.conn(n.GRPC); err != nil {
			nv.Error = err.Error()
		} else if st, err := pb.NewRoomsClient(conn).Status(ctx, &pb.StatusRequest{}); err != nil {
			nv.Error = err.Error()
		} else {
			nv.Ready, nv.Rooms = st.Ready, st.Rooms
		}
		v.Nodes = append(v.Nodes, nv)
	}
	if rooms := req.URL.Query().Get("rooms"); rooms != "" {
		for _, room := range strings.Split(rooms, ",") {
			ro := roomOwner{Room: room, Shard: cluster.Shard(room)}
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
	}
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

func writeClusterText(w http.ResponseWriter, v clusterView) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBER\tROLE\tADDRESS\tSTATE\tSHARDS LED (PREFERRED)\n")
	owned, led := map[string]int{}, map[string]int{}
	for _, o := range v.Shards {
		owned[o]++
	}
	for _, l := range v.Leaders {
		led[l]++
	}
	for _, m := range v.Members {
		state := "alive"
		if !m.Alive {
			state = "DOWN"
		}
		shards := "-"
		if m.Role == cluster.RoleNode {
			shards = fmt.Sprintf("%d (%d) of %d", led[m.ID], owned[m.ID], v.Partitions)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.Role, m.Addr, state, shards)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ACTIVE ROOM\tSHARD\tNODE\tLAST SEQ\tSESSIONS\n")
	for _, n := range v.Nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "(%s: %s)\t\t\t\t\n", n.ID, n.Error)
			continue
		}
		sort.Slice(n.Rooms, func(i, j int) bool { return n.Rooms[i].Room < n.Rooms[j].Room })
		for _, r := range n.Rooms {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\n", r.Room, r.Shard, n.ID, r.LastSeq, r.Sessions)
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
