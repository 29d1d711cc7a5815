package bench

import "testing"

// The tool must never load anything but this machine.
func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:8080/", "http://127.1.2.3:9", "http://[::1]:8080"} {
		if err := CheckLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8080", "http://192.168.1.5", "http://example.com:8080", "http://0.0.0.0:8080", "http://[::]:80", "not a url\x00"} {
		if err := CheckLoopback(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestMessageTextRoundTrip(t *testing.T) {
	text := makeText("r1-c2", 7, 12345, 64)
	at, from, n, ok := parseText(text)
	if !ok || from != "r1-c2" || at != 12345 || n != 7 || len(text) != 64 {
		t.Fatalf("%q -> %d %q %d %v", text, at, from, n, ok)
	}
	c := &loadClient{name: "r1-c2"}
	if got := c.idNumber(c.id(300)); got != 300 {
		t.Fatalf("id %q -> %d", c.id(300), got)
	}
}

// CPU per message counts the cluster's processes, not the load generator:
// three processes at half a core each for 1,000 msgs/s is 1.5 ms of CPU per
// message.
func TestCPUPerMsg(t *testing.T) {
	procs := []ProcStat{{Name: "node1", CPUPct: 50}, {Name: "node2", CPUPct: 50}, {Name: "router1", CPUPct: 50}, {Name: "loadgen", CPUPct: 80}}
	if got := cpuPerMsg(procs, 1000); got < 1499.9 || got > 1500.1 {
		t.Fatalf("cpuPerMsg = %v µs, want 1500", got)
	}
	if got := cpuPerMsg(procs, 0); got != 0 {
		t.Fatalf("cpuPerMsg with nothing committed = %v, want 0 (shown as -)", got)
	}
}
