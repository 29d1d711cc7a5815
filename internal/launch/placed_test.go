package launch

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// TestSettled: a view is settled when every live node answers ready, every
// shard is led by its preferred replica, every shard's leader answered and
// none reports a replica behind. A node that left (decommissioned) or is
// down is not waited for: the failover lab removes nodes and then waits
// for the rest to settle.
func TestSettled(t *testing.T) {
	view := func(edit func(map[string]any)) View {
		shards, leaders, groups := map[string]string{}, map[string]string{}, []map[string]any{}
		for s := 0; s < 64; s++ {
			shards[strconv.Itoa(s)], leaders[strconv.Itoa(s)] = "node1", "node1"
			groups = append(groups, map[string]any{"shard": s})
		}
		raw := map[string]any{
			"members": []map[string]any{
				{"id": "node1", "role": "node", "alive": true},
				{"id": "node2", "role": "node", "alive": true},
				{"id": "node3", "role": "node", "alive": false},
				{"id": "router1", "role": "router", "alive": true},
			},
			"shards": shards, "leaders": leaders,
			"nodes": []map[string]any{
				{"id": "node1", "ready": true},
				{"id": "node2", "ready": true},
				{"id": "node3", "error": "left"},
			},
			"groups": groups, "groups_reported": 64,
		}
		if edit != nil {
			edit(raw)
		}
		b, err := json.Marshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		var v View
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := settled(view(nil), 2, true); err != nil {
		t.Fatalf("settled with a node that left: %v", err)
	}
	// Placement under load does not wait for followers to catch up.
	behind := view(func(v map[string]any) { v["groups"].([]map[string]any)[5]["behind"] = []string{"node2"} })
	if err := settled(behind, 2, false); err != nil {
		t.Fatalf("placement waited for a replica behind: %v", err)
	}
	for _, tt := range []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"a live node not ready", func(v map[string]any) {
			v["nodes"].([]map[string]any)[1]["ready"] = false
		}, "node node2 not ready"},
		{"a live node not answering", func(v map[string]any) {
			v["nodes"].([]map[string]any)[1]["error"] = "connection refused"
		}, "node node2 not ready"},
		{"a leader that did not answer", func(v map[string]any) { v["groups_reported"] = 63 }, "63 of 64"},
		{"a replica behind", func(v map[string]any) {
			v["groups"].([]map[string]any)[5]["behind"] = []string{"node2"}
		}, "shard 5"},
		{"a shard led elsewhere", func(v map[string]any) { v["leaders"].(map[string]string)["7"] = "node2" }, "shard 7"},
	} {
		if err := settled(view(tt.edit), 2, true); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error naming %q", tt.name, err, tt.want)
		}
	}
}
