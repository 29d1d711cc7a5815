package bench

import (
	"fmt"
	"testing"
	"time"
)

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

// A ramp step keeps up when it commits all but the messages in flight at
// the window's end, within p99 100 ms and with nothing lost.
func TestKept(t *testing.T) {
	for _, c := range []struct {
		r    Result
		want bool
	}{
		{Result{MsgsPerSec: 9967, P99: 25}, true},
		{Result{MsgsPerSec: 13966, P99: 90}, true},
		{Result{MsgsPerSec: 9850, P99: 25}, false},
		{Result{MsgsPerSec: 9990, P99: 150}, false},
		{Result{MsgsPerSec: 9990, P99: 25, Lost: 1}, false},
	} {
		if got := kept(c.r, 10000); got != c.want {
			t.Errorf("kept(%+v, 10000) = %v, want %v", c.r, got, c.want)
		}
	}
}

// --steps takes a list of rates and refuses what is not one.
func TestParseSteps(t *testing.T) {
	for in, want := range map[string]string{"7000": "[7000]", "4000, 7000,": "[4000 7000]", "": "[]", "0.5e4": "[5000]"} {
		got, err := ParseSteps(in)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("ParseSteps(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-5", "x", "100001", "7000,NaN", "Inf"} {
		if got, err := ParseSteps(bad); err == nil {
			t.Errorf("ParseSteps(%q) = %v, want an error", bad, got)
		}
	}
}

// A room's stamp 5 ms after a message's scheduled send counts as 5 ms to
// the stamp (to the millisecond), on the load generator's clock turned
// into wall time; stamps outside the window, or missing, are not counted.
func TestRecordStampMeasuresFromTheScheduledSend(t *testing.T) {
	r := &run{}
	at := now()
	stampMillis := (epoch.UnixNano()+at)/int64(time.Millisecond) + 5
	r.recordStamp(at, stampMillis)
	if len(r.stamped) != 0 {
		t.Fatalf("recorded %v outside the window", r.stamped)
	}
	r.measuring.Store(true)
	r.recordStamp(at, stampMillis)
	r.recordStamp(at, 0)
	if len(r.stamped) != 1 {
		t.Fatalf("recorded %d stamps, want 1", len(r.stamped))
	}
	if d := r.stamped[0]; d <= 4*time.Millisecond || d > 5*time.Millisecond {
		t.Fatalf("to the stamp: %v, want within (4ms, 5ms]", d)
	}
}
