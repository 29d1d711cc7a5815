package router

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// The live cluster view (/cluster on the admin listener) and its event
// stream (/cluster/events, server-sent events).
const (
	// ClusterViewInterval is how often a viewer gets a fresh view: a killed
	// node's shards show under new leaders within about a second.
	ClusterViewInterval = 500 * time.Millisecond
	// MaxClusterViewers bounds the event streams served at once: each asks
	// every node for its status every interval.
	MaxClusterViewers = 8
	// clusterViewWriteTimeout drops a viewer that stopped reading.
	clusterViewWriteTimeout = 5 * time.Second
)

//go:embed clusterview.html
var clusterViewPage []byte

// liveView is one event of the stream: the cluster view, with each node's
// commit rate.
type liveView struct {
	clusterView
	At int64 `json:"at"` // unix ms
	// Rates is each node's commits per second over the last interval: its
	// durable objects' committed batches (an object's events that commit
	// together count once).
	Rates map[string]float64 `json:"rates"`
}

func handleClusterPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(clusterViewPage)
}

// handleClusterEvents streams the view every ClusterViewInterval until the
// viewer goes or the router stops.
func (rt *Router) handleClusterEvents(w http.ResponseWriter, req *http.Request) {
	if n := rt.viewers.Add(1); n > MaxClusterViewers {
		rt.viewers.Add(-1)
		http.Error(w, fmt.Sprintf("%d cluster viewers already (max %d)", n-1, MaxClusterViewers), http.StatusServiceUnavailable)
		return
	}
	defer rt.viewers.Add(-1)
	rc := http.NewResponseController(w)
	// The stream outlives the admin server's read timeout, which must not
	// end it; a viewer that stops reading is cut off by the write deadline.
	rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	tick := time.NewTicker(ClusterViewInterval)
	defer tick.Stop()
	var commits map[string]uint64 // node -> object commits, as of the last event
	last := time.Time{}
	for {
		now := time.Now()
		lv := liveView{clusterView: rt.clusterView(req.Context(), nil), At: now.UnixMilli(), Rates: map[string]float64{}}
		nextCommits := map[string]uint64{}
		for _, n := range lv.Nodes {
			if n.Error == "" {
				nextCommits[n.ID] = n.ObjectCommits
			}
		}
		if !last.IsZero() {
			for _, n := range lv.Nodes {
				lv.Rates[n.ID] = 0
				// A node that restarted counts from zero again: no rate
				// until its next event.
				if prev, ok := commits[n.ID]; ok && n.ObjectCommits > prev {
					lv.Rates[n.ID] += float64(n.ObjectCommits-prev) / now.Sub(last).Seconds()
				}
			}
		}
		commits, last = nextCommits, now
		b, err := json.Marshal(lv)
		if err != nil {
			return
		}
		rc.SetWriteDeadline(now.Add(clusterViewWriteTimeout))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-req.Context().Done():
			return
		case <-rt.viewersStop:
			return
		case <-tick.C:
		}
	}
}
