package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"hellochat/apps/chat"
	"hellochat/internal/launch"
)

// clockTicks is Linux's USER_HZ, the unit of utime and stime in
// /proc/PID/stat; it is 100 on every architecture Go supports here.
const clockTicks = 100

type procSample struct {
	cpuTicks int64
	rssKB    int64
}

// sample reads CPU time and RSS of every process of the cluster.
func sample(c *launch.Cluster) map[string]procSample {
	out := map[string]procSample{}
	for _, p := range c.All() {
		if pid := p.Pid(); pid > 0 {
			out[p.Name] = readProc(pid)
		}
	}
	// The load generator shares the machine; its share explains a lot.
	out["loadgen"] = readProc(os.Getpid())
	return out
}

func readProc(pid int) procSample {
	var s procSample
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the parenthesised command name; utime and stime are
		// the 14th and 15th fields of the whole line.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+2:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				s.cpuTicks = u + st
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(rest)
				if len(f) > 0 {
					s.rssKB, _ = strconv.ParseInt(f[0], 10, 64)
				}
			}
		}
	}
	return s
}

// procDelta turns two samples into CPU percent (of one core) over d and the
// RSS at the end.
func procDelta(before, after map[string]procSample, d time.Duration) []ProcStat {
	var out []ProcStat
	for name, a := range after {
		b := before[name]
		out = append(out, ProcStat{
			Name:   name,
			CPUPct: float64(a.cpuTicks-b.cpuTicks) / clockTicks / d.Seconds() * 100,
			RSSMB:  float64(a.rssKB) / 1024,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// activeRooms lists the chat rooms some node has an actor for, from the
// router's view: the chat class's objects, by name.
func activeRooms(base string) (map[string]bool, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/api/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v struct {
		Nodes []struct {
			Objects []struct {
				Class string `json:"class"`
				Name  string `json:"name"`
			} `json:"objects"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, n := range v.Nodes {
		for _, o := range n.Objects {
			if o.Class == chat.ClassName {
				out[o.Name] = true
			}
		}
	}
	return out, nil
}

// cpuPerMsg is the cluster's CPU microseconds per committed message, from
// the processes' CPU percent (of one core) and the committed rate over the
// same window; the load generator does not count.
func cpuPerMsg(procs []ProcStat, msgsPerSec float64) float64 {
	if msgsPerSec <= 0 {
		return 0
	}
	pct := 0.0
	for _, p := range procs {
		if p.Name != "loadgen" {
			pct += p.CPUPct
		}
	}
	return pct / 100 * 1e6 / msgsPerSec
}
