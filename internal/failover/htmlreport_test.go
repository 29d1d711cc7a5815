package failover

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// fixtureReport renders the synthetic run's report and parses the page
// the way a browser would.
func fixtureReport(t *testing.T) (*runReport, []byte, *html.Node) {
	t.Helper()
	cfg, cycles, clients, res := syntheticRun()
	rep := buildReport(cfg, fixtureStart, len(fixtureSteps), cycles, clients, res)
	var page bytes.Buffer
	if err := renderHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(page.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return rep, page.Bytes(), doc
}

func TestHTMLReportIsWellFormedAndSelfContained(t *testing.T) {
	_, page, doc := fixtureReport(t)

	// The page is polyglot markup: a strict XML parser must accept all of
	// it, which an HTML parser (which repairs anything) cannot check.
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("report.html is not well-formed: %v", err)
		}
	}

	for _, n := range elements(doc, func(n *html.Node) bool { return true }) {
		switch n.Data {
		case "script", "link", "img", "iframe", "object", "embed", "image", "use":
			t.Errorf("report.html has a <%s> element: it must need nothing but itself", n.Data)
		}
		for _, a := range n.Attr {
			if a.Key == "src" || a.Key == "href" || strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s %s=%q>: no external or scripted attributes", n.Data, a.Key, a.Val)
			}
		}
	}
	if got := len(elements(doc, tagged("svg"))); got != 3 {
		t.Errorf("%d svg plots, want 3 (timeline, writable, placed)", got)
	}
}

func TestHTMLReportMarksEachStepOnce(t *testing.T) {
	rep, _, doc := fixtureReport(t)
	markers := elements(doc, withClass("fault"))
	if len(markers) != len(fixtureSteps) {
		t.Fatalf("%d fault markers, want one per step (%d)", len(markers), len(fixtureSteps))
	}
	for i, m := range markers {
		fs := fixtureSteps[i]
		want := map[string]string{
			"data-step":    strconv.Itoa(i + 1),
			"data-kind":    fs.kind,
			"data-victim":  fs.victim,
			"data-start-s": strconv.FormatFloat(fs.at, 'f', -1, 64),
			"data-end-s":   strconv.FormatFloat(rep.Steps[i].End.Seconds(), 'f', -1, 64),
		}
		for k, v := range want {
			if got := attr(m, k); got != v {
				t.Errorf("marker %d: %s=%q, want %q", i+1, k, got, v)
			}
		}
		label := fmt.Sprintf("#%d %s %s", i+1, fs.kind, fs.victim)
		if got := text(elements(m, withClass("step-label"))[0]); got != label {
			t.Errorf("marker %d is labelled %q, want %q", i+1, got, label)
		}
		if end := fs.at + fs.took; math.Abs(rep.Steps[i].End.Seconds()-end) > 1e-9 {
			t.Errorf("step %d ends at %v s, want %v s", i+1, rep.Steps[i].End.Seconds(), end)
		}
	}

	// The writable chart has a bar for each fault that measured it (the
	// wipe failed, the second kill hit no leader of ours); the placed
	// chart one for every step, the failed one marked.
	bars := func(id string) []*html.Node {
		svg := elements(doc, func(n *html.Node) bool { return n.Data == "svg" && attr(n, "id") == id })
		if len(svg) != 1 {
			t.Fatalf("%d svg elements with id %q", len(svg), id)
		}
		return elements(svg[0], withClass("bar"))
	}
	var steps []string
	for _, b := range bars("writable") {
		steps = append(steps, attr(b, "data-step")+" "+attr(b, "data-kind"))
	}
	if want := []string{"2 kill", "3 pause"}; !slices.Equal(steps, want) {
		t.Errorf("writable bars for steps %q, want %q", steps, want)
	}
	placed := bars("placed")
	if len(placed) != len(fixtureSteps) {
		t.Errorf("%d placed bars, want %d", len(placed), len(fixtureSteps))
	}
	for _, b := range placed {
		if failed := slices.Contains(strings.Fields(attr(b, "class")), "failed"); failed != (attr(b, "data-step") == "4") {
			t.Errorf("placed bar of step %s: failed=%v", attr(b, "data-step"), failed)
		}
	}
}

func TestHTMLReportShowsTheTextReportsChecksAndFigures(t *testing.T) {
	cfg, cycles, _, res := syntheticRun()
	var txt bytes.Buffer
	report(&txt, cfg, cycles, res)
	_, _, doc := fixtureReport(t)
	page := text(doc)

	for _, c := range checks(cfg, cycles, res) {
		line := fmt.Sprintf("%-48s %6d  %s", c.Name, c.Count, c.Mark())
		if !strings.Contains(txt.String(), line) {
			t.Errorf("the text report lacks %q", line)
		}
		row := c.Name + strings.Join(c.Examples, "") + strconv.Itoa(c.Count) + c.Mark()
		if !strings.Contains(page, row) {
			t.Errorf("the HTML report lacks the check row %q", row)
		}
	}
	for _, f := range figures(cycles) {
		if !strings.Contains(page, f.Label+strconv.Itoa(f.N)) {
			t.Errorf("the HTML report lacks the figure %q", f.Label)
		}
	}
	for _, want := range []string{"Messages sent 1280, acknowledged 1279, never acknowledged 1\n(refused by an error frame 1), in history 1279", "FAILED."} {
		if !strings.Contains(page, want) {
			t.Errorf("the HTML report lacks %q", want)
		}
	}
	// The failed step's error, quotes and angle brackets included, is
	// text, not markup.
	if !strings.Contains(page, `learner "node1" <old>`) {
		t.Errorf("the failed step's error is not shown verbatim")
	}
	if n := elements(doc, tagged("old")); len(n) > 0 {
		t.Errorf("the error's <old> became an element")
	}
}

func TestReportJSONRoundTrips(t *testing.T) {
	rep, _, _ := fixtureReport(t)
	dir := t.TempDir()
	htmlPath, jsonPath, err := writeReport(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	if htmlPath != filepath.Join(dir, "report.html") || jsonPath != filepath.Join(dir, "report.json") {
		t.Errorf("wrote %s and %s", htmlPath, jsonPath)
	}
	js, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var back runReport
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, rep) {
		t.Errorf("report.json does not round-trip:\n got %+v\nwant %+v", back, *rep)
	}

	// Key numbers, read the way another tool would: durations in seconds.
	var raw struct {
		Steps []struct {
			N        int      `json:"n"`
			Kind     string   `json:"kind"`
			Start    float64  `json:"start_s"`
			End      float64  `json:"end_s"`
			Writable *float64 `json:"writable_s"`
			Moved    int64    `json:"moved_bytes"`
		} `json:"steps"`
		Load struct {
			Seconds []struct{ Committed, Sent int } `json:"seconds"`
		} `json:"load"`
		Checks []check `json:"checks"`
		OK     bool    `json:"ok"`
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw.Steps) != len(fixtureSteps) {
		t.Fatalf("%d steps in report.json, want %d", len(raw.Steps), len(fixtureSteps))
	}
	for i, fs := range fixtureSteps {
		st := raw.Steps[i]
		if st.N != i+1 || st.Kind != fs.kind || st.Start != fs.at || math.Abs(st.End-(fs.at+fs.took)) > 1e-9 {
			t.Errorf("step %d in report.json: %+v, want %+v", i+1, st, fs)
		}
		measured := fs.writable > 0 && fs.kind != kindWipe // the wipe failed
		switch {
		case measured && (st.Writable == nil || *st.Writable != fs.writable):
			t.Errorf("step %d: writable_s %v, want %v", i+1, st.Writable, fs.writable)
		case !measured && st.Writable != nil:
			t.Errorf("step %d: writable_s %v, want none", i+1, *st.Writable)
		}
	}
	if raw.Steps[0].Moved != 54_784 {
		t.Errorf("the add moved %d bytes, want 54784", raw.Steps[0].Moved)
	}
	committed, sent := 0, 0
	for _, s := range raw.Load.Seconds {
		committed += s.Committed
		sent += s.Sent
	}
	if committed != 1279 || sent != 1280 {
		t.Errorf("report.json's seconds hold %d acks of %d messages, want 1279 of 1280", committed, sent)
	}
	if raw.OK || len(raw.Checks) != 19 || raw.Checks[0].Count != 1 || raw.Checks[4].Count != 1 {
		t.Errorf("checks in report.json: ok=%v %+v", raw.OK, raw.Checks)
	}
}

func TestPerSecondCountsEveryAckInItsSecond(t *testing.T) {
	at := func(d time.Duration) time.Time { return fixtureStart.Add(d) }
	ms := time.Millisecond
	msgs := []sent{
		{at: at(0), acked: at(0)},                               // the very start: second 0
		{at: at(500 * ms), acked: at(time.Second - 1)},          // the last instant of second 0
		{at: at(900 * ms), acked: at(time.Second)},              // the first instant of second 1
		{at: at(time.Second - 1), acked: at(2*time.Second - 1)}, // sent in 0, acked in 1
		{at: at(time.Second), acked: at(3 * time.Second)},       // sent in 1, acked in 3 (nothing in 2)
		{at: at(2500 * ms)},                                     // never acked: sent, not committed
		{at: at(3*time.Second + 999*ms), acked: at(3*time.Second + 999*ms + 500*time.Microsecond)},
	}
	got := perSecond(fixtureStart, msgs)
	wantCommitted := []int{2, 2, 0, 2}
	wantSent := []int{4, 1, 1, 1}
	if len(got) != len(wantCommitted) {
		t.Fatalf("%d seconds, want %d: %+v", len(got), len(wantCommitted), got)
	}
	for i, s := range got {
		if s.T != i || s.Committed != wantCommitted[i] || s.Sent != wantSent[i] {
			t.Errorf("second %d: t=%d committed=%d sent=%d, want committed=%d sent=%d",
				i, s.T, s.Committed, s.Sent, wantCommitted[i], wantSent[i])
		}
	}
	if s := got[2]; s.Acked != 0 || s.P99 != 0 {
		t.Errorf("second 2 sent only a message never acked, yet has latencies: %+v", s)
	}
	// Second 0 sent four messages that waited 0, 499.999999 ms, 100 ms
	// and 1 s: the median is the second smallest, p99 the largest.
	if s := got[0]; s.P50 != toSecs(100*ms) || s.P99 != toSecs(time.Second) {
		t.Errorf("second 0: p50 %v, p99 %v, want 100 ms and 1 s", s.P50, s.P99)
	}

	// What the timeline draws is what was counted: one bar per second with
	// acks, its data-n the count and its height in proportion.
	rep := &runReport{Load: loadSeries{Offered: 4, Seconds: got}}
	var page bytes.Buffer
	if err := renderHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&page)
	if err != nil {
		t.Fatal(err)
	}
	bars := elements(doc, withClass("committed"))
	var ts, ns []int
	var perAck []float64
	for _, b := range bars {
		t, _ := strconv.Atoi(attr(b, "data-t"))
		n, _ := strconv.Atoi(attr(b, "data-n"))
		h, _ := strconv.ParseFloat(attr(b, "height"), 64)
		ts, ns, perAck = append(ts, t), append(ns, n), append(perAck, h/float64(n))
	}
	if !slices.Equal(ts, []int{0, 1, 3}) || !slices.Equal(ns, []int{2, 2, 2}) {
		t.Errorf("committed bars at seconds %v with %v acks, want [0 1 3] with [2 2 2]", ts, ns)
	}
	for _, p := range perAck {
		if d := p - perAck[0]; d > 0.1 || d < -0.1 {
			t.Errorf("bar heights per ack differ: %v", perAck)
		}
	}
}

func TestSyntheticRunPlotsEveryAck(t *testing.T) {
	rep, _, doc := fixtureReport(t)
	sum := 0
	for _, b := range elements(doc, withClass("committed")) {
		n, err := strconv.Atoi(attr(b, "data-n"))
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	if sum != rep.Messages.Acked {
		t.Errorf("the plot shows %d acks, the run had %d", sum, rep.Messages.Acked)
	}
	// The pause held our rooms' messages sent during its first 1.525 s:
	// p99 latency in the seconds it began is over a second, around it tens
	// of milliseconds.
	for _, s := range rep.Load.Seconds[13:16] {
		if want := s.T == 14; (s.P99 > toSecs(time.Second)) != want {
			t.Errorf("second %d: p99 %v", s.T, s.P99)
		}
	}
}

func TestFormatsAndTicks(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"}, {400 * time.Microsecond, "0.4 ms"}, {5 * time.Millisecond, "5 ms"},
		{195 * time.Millisecond, "195 ms"}, {999_700 * time.Microsecond, "1 s"},
		{1525 * time.Millisecond, "1.525 s"}, {1500 * time.Millisecond, "1.5 s"}, {1_500_400 * time.Microsecond, "1.5 s"},
		{2 * time.Second, "2 s"}, {42_340 * time.Millisecond, "42.34 s"}, {150 * time.Second, "150 s"},
	} {
		if got := fmtDur(c.d); got != c.want {
			t.Errorf("fmtDur(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	for _, c := range []struct{ v, down, up float64 }{
		{0.023, 0.02, 0.05}, {1.817, 1, 2}, {0.05, 0.05, 0.05}, {7, 5, 10}, {0.0012, 0.001, 0.002},
	} {
		if down, up := roundDown125(c.v), roundUp125(c.v); down != c.down || up != c.up {
			t.Errorf("%v rounds down to %v and up to %v, want %v and %v", c.v, down, up, c.down, c.up)
		}
	}
	for _, c := range []struct {
		span float64
		n    int
		want float64
	}{{61, 12, 10}, {42, 12, 5}, {240, 5, 50}, {1.525, 8, 0.2}, {0.195, 8, 0.05}, {7, 7, 1}} {
		if got := niceStep(c.span, c.n); got != c.want {
			t.Errorf("niceStep(%v, %d) = %v, want %v", c.span, c.n, got, c.want)
		}
	}
}

// elements lists n and its descendants that match, in document order.
func elements(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			out = append(out, d)
		}
	}
	if n.Type == html.ElementNode && match(n) {
		out = append([]*html.Node{n}, out...)
	}
	return out
}

func tagged(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Data == tag }
}

func withClass(class string) func(*html.Node) bool {
	return func(n *html.Node) bool { return slices.Contains(strings.Fields(attr(n, "class")), class) }
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text is the text under n, outside <style> and <title>.
func text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode && d.Parent.Data != "style" && d.Parent.Data != "title" {
			b.WriteString(d.Data)
		}
	}
	return b.String()
}
