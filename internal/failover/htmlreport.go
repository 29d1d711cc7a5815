package failover

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// runReport is the whole experiment as the HTML report shows it; the same
// value is report.json. Its figures and checks are the text report's
// (figures, checks), so the three never disagree.
type runReport struct {
	Started  string        `json:"started"` // when the load started, RFC 3339, UTC
	Config   reportConfig  `json:"config"`
	Planned  int           `json:"steps_planned"` // more than len(Steps) when the run stopped early
	Steps    []reportStep  `json:"steps"`
	Load     loadSeries    `json:"load"`
	Figures  []figure      `json:"figures"`
	Messages messageCounts `json:"messages"`
	Replicas replicaCounts `json:"replicas"`
	Counter  counterCounts `json:"counter"`
	Checks   []check       `json:"checks"`
	Failures []string      `json:"failures,omitempty"` // checks that could not run
	OK       bool          `json:"ok"`                 // every step ran and every check passed
}

// reportConfig is the experiment's Config, as far as it shapes the results.
type reportConfig struct {
	Netlab        bool    `json:"netlab"` // on a lab of network namespaces
	Adds          int     `json:"adds"`
	Kills         int     `json:"kills"`
	Pauses        int     `json:"pauses"`
	Wipes         int     `json:"wipes"`
	Partitions    int     `json:"partitions"`
	Mutes         int     `json:"mutes"`
	Deafs         int     `json:"deafs"`
	Removes       int     `json:"removes"`
	PauseFor      secs    `json:"pause_for_s"`
	CutFor        secs    `json:"cut_for_s"`
	PlaceTimeout  secs    `json:"place_timeout_s"`
	MaxWritePause secs    `json:"max_write_pause_s"`
	Rooms         int     `json:"rooms"`
	Clients       int     `json:"clients"` // per room
	Rate          float64 `json:"rate"`    // messages per second per client
	Dir           string  `json:"data_dir"`
}

// reportStep is what one step measured, with when it happened.
type reportStep struct {
	N           int    `json:"n"` // numbered from 1, as the text report does
	Kind        string `json:"kind"`
	Victim      string `json:"victim"`
	Start       secs   `json:"start_s"` // since the load started
	End         secs   `json:"end_s"`   // placed again, or failed
	NodesBefore int    `json:"nodes_before"`
	NodesAfter  int    `json:"nodes_after"`
	Shards      int    `json:"shards"` // the victim led when the step began (add: the new node, once placed)
	Rooms       int    `json:"rooms"`  // of ours, on those shards
	// Writable is only measured when the victim of a fault led some of
	// our rooms.
	Writable    *secs  `json:"writable_s,omitempty"`
	Placed      secs   `json:"placed_s"`
	Recovered   secs   `json:"recovered_s,omitempty"` // from the restart, SIGCONT or heal until placed
	MovedBytes  int64  `json:"moved_bytes"`
	Snapshots   int    `json:"snapshots"`
	Plan        string `json:"plan,omitempty"`
	Stall       secs   `json:"stall_s"` // the longer of the ack gap and the ack wait
	AckGap      secs   `json:"ack_gap_s"`
	AckGapRoom  string `json:"ack_gap_room,omitempty"`
	AckWait     secs   `json:"ack_wait_s"`
	AckWaitRoom string `json:"ack_wait_room,omitempty"`
	Result      string `json:"result"` // ok, SLOW (> limit) or ERROR
	Error       string `json:"error,omitempty"`
}

// loadSeries is the load, second by second.
type loadSeries struct {
	Offered float64  `json:"offered_per_s"` // rooms x clients x rate
	Seconds []second `json:"seconds"`
}

// second is one second of load: the bucket [T, T+1) s after the load
// started.
type second struct {
	T int `json:"t"`
	// Committed counts the acks that arrived in the second: what the
	// cluster committed.
	Committed int `json:"committed"`
	// Sent counts the messages sent in the second; Acked, those of them
	// acknowledged, whose latencies (ack time minus send time) P50 and P99
	// sum up. A second's latencies belong to when the messages were sent,
	// so a pause shows where it hit the browsers.
	Sent  int  `json:"sent"`
	Acked int  `json:"acked"`
	P50   secs `json:"p50_s,omitempty"`
	P99   secs `json:"p99_s,omitempty"`
}

// messageCounts and replicaCounts are the text report's two lines of
// totals.
type messageCounts struct {
	Sent      int `json:"sent"`
	Acked     int `json:"acked"`
	Unacked   int `json:"unacked"`
	Refused   int `json:"refused"` // of the unacked
	InHistory int `json:"in_history"`
}

// counterCounts are the counter load's totals (countercheck.Result).
type counterCounts struct {
	Counters    int   `json:"counters"`
	Increments  int   `json:"increments"`
	Acked       int   `json:"acked"`
	Retried     int   `json:"retried"`   // of the acked, answered by a retry of their key
	Ambiguous   int   `json:"ambiguous"` // no attempt got a value
	Reads       int   `json:"reads"`
	FailedReads int   `json:"failed_reads"`
	FinalSum    int64 `json:"final_sum"`
	CheckTook   secs  `json:"check_took_s"` // porcupine's time
}

type replicaCounts struct {
	Holders       int `json:"holders"` // shard replicas on disk
	Shards        int `json:"shards"`
	RoomsCompared int `json:"rooms_compared"`
}

// secs is a duration that JSON holds as a number of seconds, to the
// millisecond, which plotting tools and jq read without parsing Go's
// "1.5s". The report rounds every duration it holds to the millisecond,
// so the JSON round-trips exactly.
type secs time.Duration

// toSecs rounds d to the millisecond.
func toSecs(d time.Duration) secs { return secs(d.Round(time.Millisecond)) }

// Seconds is s in seconds. One division, unlike Duration.Seconds (whole
// seconds plus the fraction), gives the float nearest the exact value, so
// 3470 ms prints as 3.47, not 3.4699999999999998.
func (s secs) Seconds() float64 { return float64(s) / float64(time.Second) }

// String is s for people: "195 ms", "1.53 s".
func (s secs) String() string { return fmtDur(time.Duration(s)) }

func (s secs) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, toSecs(time.Duration(s)).Seconds(), 'f', -1, 64), nil
}

func (s *secs) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = secs(math.Round(f*1000)) * secs(time.Millisecond)
	return nil
}

// buildReport gathers a finished run into its report: the steps with
// their times relative to start (when the load started), the load second
// by second, and the text report's figures and checks. planned is the
// number of steps the run meant to take.
func buildReport(cfg Config, start time.Time, planned int, cycles []cycle, clients []*client, res result) *runReport {
	rep := &runReport{
		Started: start.UTC().Format(time.RFC3339),
		Config: reportConfig{
			Netlab: cfg.Cuts != nil, Adds: cfg.Adds, Kills: cfg.Kills, Pauses: cfg.Pauses, Wipes: cfg.Wipes,
			Partitions: cfg.Partitions, Mutes: cfg.Mutes, Deafs: cfg.Deafs, Removes: cfg.Removes,
			PauseFor: toSecs(cfg.PauseFor), CutFor: toSecs(cfg.CutFor),
			PlaceTimeout: toSecs(cfg.PlaceTimeout), MaxWritePause: toSecs(cfg.MaxWritePause),
			Rooms: cfg.Rooms, Clients: cfg.Clients, Rate: cfg.Rate, Dir: cfg.Dir,
		},
		Planned: planned,
		Load: loadSeries{
			Offered: float64(cfg.Rooms*cfg.Clients) * cfg.Rate,
			Seconds: perSecond(start, allSends(clients)),
		},
		Figures:  figures(cycles),
		Messages: messageCounts{Sent: res.sent, Acked: res.acked, Unacked: res.unacked, Refused: res.refused, InHistory: res.historyMessages},
		Replicas: replicaCounts{Holders: res.replicas.holders, Shards: res.replicas.shards, RoomsCompared: res.replicas.roomsCompared},
		Counter: counterCounts{Counters: res.counter.Counters, Increments: res.counter.Increments, Acked: res.counter.Acked,
			Retried: res.counter.Retried, Ambiguous: res.counter.Ambiguous, Reads: res.counter.Reads, FailedReads: res.counter.FailedReads,
			FinalSum: res.counter.FinalSum, CheckTook: toSecs(res.counter.Took)},
		Checks:   checks(cfg, cycles, res),
		Failures: failures(res),
	}
	for i, cy := range cycles {
		rep.Steps = append(rep.Steps, newReportStep(cfg, i+1, cy, start))
	}
	rep.OK = len(cycles) == planned && len(rep.Failures) == 0
	for _, c := range rep.Checks {
		rep.OK = rep.OK && c.OK()
	}
	return rep
}

// Steps says how many steps of each kind the experiment planned.
func (c reportConfig) Steps() string {
	s := fmt.Sprintf("adds %d, kills %d, pauses %d (%s each), wipes %d", c.Adds, c.Kills, c.Pauses, c.PauseFor, c.Wipes)
	if c.Netlab {
		s += fmt.Sprintf(", partitions %d, mutes %d, deafs %d (%s each)", c.Partitions, c.Mutes, c.Deafs, c.CutFor)
	}
	return s + fmt.Sprintf(", removes %d", c.Removes)
}

// IsMoved reports whether the figure is data moved rather than a duration.
func (f figure) IsMoved() bool { return f.Metric == metricMoved }

// newReportStep is step n (cy) of the report.
func newReportStep(cfg Config, n int, cy cycle, start time.Time) reportStep {
	st := reportStep{
		N: n, Kind: cy.kind, Victim: cy.victim,
		Start: toSecs(cy.start.Sub(start)), End: toSecs(cy.end.Sub(start)),
		NodesBefore: cy.nodesBefore, NodesAfter: cy.nodesAfter, Shards: cy.shards, Rooms: cy.rooms,
		Placed: toSecs(cy.took), Recovered: toSecs(cy.recovered),
		MovedBytes: cy.moved.bytes, Snapshots: cy.moved.snapshots, Plan: cy.moved.plan,
		Stall:  toSecs(cy.stall.worst()),
		AckGap: toSecs(cy.stall.gap), AckGapRoom: cy.stall.gapRoom,
		AckWait: toSecs(cy.stall.lat), AckWaitRoom: cy.stall.latRoom,
		Result: cy.status(cfg),
	}
	if cy.hasWritable {
		w := toSecs(cy.writable)
		st.Writable = &w
	}
	if cy.err != nil {
		st.Error = cy.err.Error()
	}
	return st
}

// allSends copies every message the clients sent.
func allSends(clients []*client) []sent {
	var all []sent
	for _, cl := range clients {
		cl.mu.Lock()
		for _, id := range cl.order {
			all = append(all, *cl.sends[id])
		}
		cl.mu.Unlock()
	}
	return all
}

// perSecond buckets the messages by whole seconds since start: each ack
// in the second it arrived (what the cluster committed then), each
// latency in the second its message was sent (what a browser sending
// then waited). Unacknowledged messages count as sent only; the checks
// count them.
func perSecond(start time.Time, msgs []sent) []second {
	bucket := func(t time.Time) int { return max(int(t.Sub(start)/time.Second), 0) }
	var secsOf []second
	grow := func(b int) {
		for len(secsOf) <= b {
			secsOf = append(secsOf, second{T: len(secsOf)})
		}
	}
	lats := map[int][]time.Duration{}
	for _, m := range msgs {
		b := bucket(m.at)
		grow(b)
		secsOf[b].Sent++
		if m.acked.IsZero() {
			continue
		}
		secsOf[b].Acked++
		lats[b] = append(lats[b], m.acked.Sub(m.at))
		a := bucket(m.acked)
		grow(a)
		secsOf[a].Committed++
	}
	for b, ls := range lats {
		slices.Sort(ls)
		secsOf[b].P50, secsOf[b].P99 = toSecs(percentile(ls, 0.50)), toSecs(percentile(ls, 0.99))
	}
	return secsOf
}

// percentile is the nearest-rank p-quantile of sorted ds: a latency some
// message really had.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// The report's files, in the report directory.
const (
	reportHTML = "report.html"
	reportJSON = "report.json"
)

// writeReport writes rep to dir as report.html and report.json and
// returns their paths.
func writeReport(dir string, rep *runReport) (htmlPath, jsonPath string, err error) {
	var js bytes.Buffer
	enc := json.NewEncoder(&js)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false) // it is no HTML: keep error messages' <, > and & readable
	if err := enc.Encode(rep); err != nil {
		return "", "", err
	}
	var page bytes.Buffer
	if err := renderHTML(&page, rep); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	htmlPath, jsonPath = filepath.Join(dir, reportHTML), filepath.Join(dir, reportJSON)
	if err := os.WriteFile(htmlPath, page.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(jsonPath, js.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	return htmlPath, jsonPath, nil
}

//go:embed report.html.tmpl
var reportTemplateText string

// reportTemplate draws the report page. The page is self-contained (its
// CSS inline, its plots inline SVG, no script) and polyglot: well-formed
// XML as well as HTML, which lets a test check it strictly.
var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{"px": px, "size": size}).Parse(reportTemplateText))

// page is what the template draws: the report, its plots, and the kinds
// of step it ran, for the legend.
type page struct {
	*runReport
	Duration string
	Kinds    []legendKey
	Timeline timeline
	Writable barChart
	Placed   barChart
}

// legendKey is a kind of step in the legend.
type legendKey struct{ Kind, Name string }

// renderHTML draws rep as an HTML page.
func renderHTML(w io.Writer, rep *runReport) error {
	p := page{
		runReport: rep,
		Duration:  fmtDur(time.Duration(len(rep.Load.Seconds)) * time.Second),
		Timeline:  buildTimeline(rep),
		Writable: buildBars("writable", "Time to writable per fault", rep.Steps, func(st reportStep) (secs, bool) {
			if st.Writable == nil {
				return 0, false
			}
			return *st.Writable, true
		}),
		Placed: buildBars("placed", "Time to placed per step", rep.Steps, func(st reportStep) (secs, bool) { return st.Placed, true }),
	}
	for _, k := range stepNames {
		if slices.ContainsFunc(rep.Steps, func(st reportStep) bool { return st.Kind == k.kind }) {
			p.Kinds = append(p.Kinds, legendKey{k.kind, k.name})
		}
	}
	if err := reportTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("report.html: %w", err)
	}
	return nil
}
