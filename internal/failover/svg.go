package failover

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file lays out the HTML report's plots: it computes where every
// bar, line, tick and label goes, in SVG user units; report.html.tmpl
// draws them, so that html/template escapes every piece of text.

// tick is one labelled position along an axis.
type tick struct {
	At    float64 // px along the axis
	Label string
}

// linear maps the domain [d0, d1] onto the range [r0, r1].
type linear struct{ d0, d1, r0, r1 float64 }

func (s linear) at(v float64) float64 {
	if s.d1 == s.d0 {
		return s.r0
	}
	return s.r0 + (v-s.d0)/(s.d1-s.d0)*(s.r1-s.r0)
}

// logScale maps [d0, d1] (0 < d0 < d1) onto [r0, r1] logarithmically,
// clamping values outside the domain to its ends.
type logScale struct{ d0, d1, r0, r1 float64 }

func (s logScale) at(v float64) float64 {
	v = min(max(v, s.d0), s.d1)
	return s.r0 + math.Log(v/s.d0)/math.Log(s.d1/s.d0)*(s.r1-s.r0)
}

// niceStep is the round step (1, 2 or 5 times a power of ten) that cuts
// span into at most about n intervals: ticks people read at a glance.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw*(1-1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

// roundUp is the smallest multiple of step at or above v, so that an
// axis ends on a tick.
func roundUp(v, step float64) float64 {
	return math.Ceil(v/step-1e-9) * step
}

// linearTicks are the multiples of step from 0 to hi, placed by s and
// labelled by label.
func linearTicks(s linear, hi, step float64, label func(float64) string) []tick {
	var ts []tick
	for i := 0; float64(i)*step <= hi*(1+1e-9); i++ {
		v := float64(i) * step
		ts = append(ts, tick{At: s.at(v), Label: label(v)})
	}
	return ts
}

// fmtDur formats a duration for people: milliseconds below a second,
// seconds above, to the millisecond as the text report prints them, with
// no trailing zeros (so round tick values read "500 ms", "1 s", "1.5 s").
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "0"
	case ms < 9.95:
		return trimFloat(ms, 1) + " ms"
	case ms < 999.5:
		return trimFloat(ms, 0) + " ms"
	}
	return trimFloat(ms/1000, 3) + " s"
}

// fromSeconds converts seconds, as the plots' axes count them, to a
// duration.
func fromSeconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// trimFloat formats v with at most prec decimals, trailing zeros dropped.
func trimFloat(v float64, prec int) string {
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// px formats an SVG coordinate: a tenth of a unit is finer than any
// screen shows, and keeps the file small.
func px(v float64) string { return trimFloat(v, 1) }

// timeline is the plot of the load over the whole experiment: committed
// messages per second above, ack latency below, on one time axis, with
// every step marked across both.
type timeline struct {
	W, H        float64
	Left, Right float64
	Ticks       []tick // seconds since the load start, under the lower panel
	AxisY       float64
	Rate        panel
	Latency     panel
	Markers     []stepMarker
	Bars        []countBar // committed messages, one bar per second
	OfferedY    float64    // the offered load's line in the upper panel
	Offered     string
	P50, P99    string // path data of the latency lines
}

// panel is one of the timeline's two plots.
type panel struct {
	Left, Right float64
	Top, Bottom float64
	Mid         float64 // where its title, written along the left edge, is centred
	Title       string
	Ticks       []tick // along the y axis
}

// newPanel is a panel across the timeline, from top down.
func newPanel(top float64, title string) panel {
	return panel{Left: plotLeft, Right: plotRight, Top: top, Bottom: top + panelH, Mid: top + panelH/2, Title: title}
}

// W and H are the panel's size; TickX is where its y tick labels end.
func (p panel) W() float64     { return p.Right - p.Left }
func (p panel) H() float64     { return p.Bottom - p.Top }
func (p panel) TickX() float64 { return p.Left - 5 }

// stepMarker marks one step on the timeline: a band from its start to
// its end across both panels, and a label above them.
type stepMarker struct {
	Step           int
	Kind, Victim   string
	Start, End     secs    // since the load start, for the data attributes
	X, W           float64 // the band
	Top, Bottom    float64
	LabelX, LabelY float64
	LeadTop        float64 // the lead line runs from the label down to the band
	Label, Title   string
	WritableX      float64 // where the rooms the victim led were writable again; 0: not measured
}

// H is the band's height.
func (m stepMarker) H() float64 { return m.Bottom - m.Top }

// countBar is the number of messages committed in one second.
type countBar struct {
	X, Y, W, H float64
	T, N       int
}

// Timeline layout, in SVG user units.
const (
	plotW        = 1200.0
	plotLeft     = 76.0
	plotRight    = plotW - 20
	panelH       = 190.0
	panelGap     = 26.0
	laneH        = 13.0
	maxLanes     = 8
	labelCharW   = 6.0 // a generous average width of a 10px sans-serif character
	labelSpacing = 6.0
)

// buildTimeline lays out the timeline of a report.
func buildTimeline(rep *runReport) timeline {
	tl := timeline{W: plotW, Left: plotLeft, Right: plotRight}

	span := float64(len(rep.Load.Seconds))
	for _, st := range rep.Steps {
		span = max(span, st.End.Seconds())
	}
	step := niceStep(max(span, 1), 12)
	end := roundUp(max(span, 1), step)
	x := linear{0, end, plotLeft, plotRight}

	// The step labels' lanes come first, the panels under them.
	labels, lanes := placeLabels(rep.Steps, x)
	tl.Rate = newPanel(8+float64(lanes)*laneH+8, "committed messages / s")
	tl.Latency = newPanel(tl.Rate.Bottom+panelGap, "ack latency (log)")
	tl.AxisY = tl.Latency.Bottom + 16
	tl.H = tl.AxisY + 24
	tl.Ticks = linearTicks(x, end, step, func(v float64) string { return fmtDur(fromSeconds(v)) })

	tl.Bars, tl.Rate.Ticks, tl.OfferedY = rateBars(rep, x, tl.Rate)
	tl.Offered = fmt.Sprintf("offered %s/s", trimFloat(rep.Load.Offered, 1))
	tl.P50, tl.P99, tl.Latency.Ticks = latencyLines(rep.Load.Seconds, x, tl.Latency)

	for i, st := range rep.Steps {
		m := stepMarker{
			Step: st.N, Kind: st.Kind, Victim: st.Victim, Start: st.Start, End: st.End,
			X: x.at(st.Start.Seconds()), Top: tl.Rate.Top, Bottom: tl.Latency.Bottom,
			LabelX: labels[i].x, LabelY: 8 + 10 + float64(labels[i].lane)*laneH,
			Label: stepLabel(st),
			Title: fmt.Sprintf("%s: %s to %s, placed after %s", stepLabel(st),
				fmtDur(time.Duration(st.Start)), fmtDur(time.Duration(st.End)), st.Placed),
		}
		// A band narrower than a pixel or two would vanish.
		m.W = max(x.at(st.End.Seconds())-m.X, 1.5)
		m.LeadTop = m.LabelY + 3
		if st.Writable != nil {
			m.WritableX = x.at((st.Start + *st.Writable).Seconds())
			m.Title += fmt.Sprintf(", writable after %s", *st.Writable)
		}
		if st.Error != "" {
			m.Title += ": " + st.Error
		}
		tl.Markers = append(tl.Markers, m)
	}
	return tl
}

// stepLabel names a step the way the plots label it: "#3 kill node3".
func stepLabel(st reportStep) string {
	return strings.TrimSpace(fmt.Sprintf("#%d %s %s", st.N, st.Kind, st.Victim))
}

// label is where a step's label goes above the timeline.
type label struct {
	x    float64
	lane int
}

// placeLabels puts each step's label at its start, in the first lane
// (row) where it does not run into the label before it; when every lane
// is taken it goes into the one that frees up first and may overlap. It
// returns the labels and the number of lanes used.
func placeLabels(steps []reportStep, x linear) ([]label, int) {
	var ends []float64 // per lane: where its last label ends
	labels := make([]label, len(steps))
	for i, st := range steps {
		w := float64(len(stepLabel(st))) * labelCharW
		lx := min(x.at(st.Start.Seconds()), x.r1-w) // keep it inside the plot
		lane := -1
		for l, e := range ends {
			if e+labelSpacing <= lx {
				lane = l
				break
			}
		}
		switch {
		case lane >= 0:
		case len(ends) < maxLanes:
			lane = len(ends)
			ends = append(ends, 0)
		default:
			lane = 0
			for l, e := range ends {
				if e < ends[lane] {
					lane = l
				}
			}
		}
		ends[lane] = lx + w
		labels[i] = label{x: lx, lane: lane}
	}
	return labels, max(len(ends), 1)
}

// rateBars draws one bar per second of committed messages, on a scale
// that holds the busiest second and the offered load, and returns the
// bars, the y ticks and the offered load's y.
func rateBars(rep *runReport, x linear, p panel) ([]countBar, []tick, float64) {
	hi := rep.Load.Offered
	for _, s := range rep.Load.Seconds {
		hi = max(hi, float64(s.Committed))
	}
	hi = max(hi*1.05, 1)
	step := niceStep(hi, 5)
	top := roundUp(hi, step)
	y := linear{0, top, p.Bottom, p.Top}
	ticks := linearTicks(y, top, step, func(v float64) string { return trimFloat(v, 1) })

	// A small gap between bars keeps them apart where a second is wide.
	w := x.at(1) - x.at(0)
	gap := min(w*0.15, 1)
	var bars []countBar
	for _, s := range rep.Load.Seconds {
		if s.Committed == 0 {
			continue
		}
		top := y.at(float64(s.Committed))
		bars = append(bars, countBar{X: x.at(float64(s.T)) + gap/2, Y: top, W: max(w-gap, 0.5), H: p.Bottom - top, T: s.T, N: s.Committed})
	}
	return bars, ticks, y.at(rep.Load.Offered)
}

// latencyLines draws the p50 and p99 latency of the messages sent in
// each second, at the second's middle, on a log scale between round
// values (1, 2 or 5 times a power of ten) around the fastest and the
// slowest: a failover's seconds-long waits and the milliseconds of steady
// load both stay readable. A second with no acknowledged message breaks
// the lines.
func latencyLines(seconds []second, x linear, p panel) (p50, p99 string, ticks []tick) {
	lo, hi := math.Inf(1), 0.0
	for _, s := range seconds {
		if s.Acked > 0 {
			lo = min(lo, max(s.P50.Seconds(), 0.001))
			hi = max(hi, s.P99.Seconds())
		}
	}
	if math.IsInf(lo, 1) { // nothing was acknowledged: an empty plot over a plausible range
		lo, hi = 0.01, 1
	}
	// A little room below the fastest keeps its line off the frame.
	lo, hi = roundDown125(lo*0.95), roundUp125(hi)
	if hi <= lo {
		hi = roundUp125(lo * 1.01)
	}
	y := logScale{lo, hi, p.Bottom, p.Top}

	// Over more than two decades the 2s and 5s get a grid line but no
	// label, which would crowd the axis.
	few := hi/lo <= 100*(1+1e-9)
	for v := lo; v <= hi*(1+1e-9); v = roundUp125(v * 1.01) {
		t := tick{At: y.at(v)}
		if few || isPow10(v) {
			t.Label = fmtDur(fromSeconds(v))
		}
		ticks = append(ticks, t)
	}

	var b50, b99 strings.Builder
	gap := true
	for _, s := range seconds {
		if s.Acked == 0 {
			gap = true
			continue
		}
		cmd := "L"
		if gap {
			cmd = "M"
		}
		cx := px(x.at(float64(s.T) + 0.5))
		fmt.Fprintf(&b50, "%s%s %s", cmd, cx, px(y.at(s.P50.Seconds())))
		fmt.Fprintf(&b99, "%s%s %s", cmd, cx, px(y.at(s.P99.Seconds())))
		gap = false
	}
	return b50.String(), b99.String(), ticks
}

// roundUp125 is the smallest 1, 2 or 5 times a power of ten at or above
// v > 0; roundDown125, the largest at or below.
func roundUp125(v float64) float64 {
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= v*(1-1e-9) {
			return m * mag
		}
	}
	return 10 * mag
}

func roundDown125(v float64) float64 {
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2} {
		if m*mag <= v*(1+1e-9) {
			return m * mag
		}
	}
	return mag
}

// isPow10 reports whether v is a power of ten, give or take rounding.
func isPow10(v float64) bool {
	l := math.Log10(v)
	return math.Abs(l-math.Round(l)) < 1e-9
}

// barChart is a horizontal bar chart of one duration per step.
type barChart struct {
	ID, Title   string // the svg element's id and accessible name
	W, H        float64
	Left, Right float64 // the bars start at Left; the longest ends by Right
	Top, Bottom float64
	Ticks       []tick
	Bars        []bar
}

// LabelX is where the steps' labels end; TickY, the ticks' baseline.
func (c barChart) LabelX() float64 { return c.Left - 8 }
func (c barChart) TickY() float64  { return c.Top - 6 }

// bar is one step's bar.
type bar struct {
	Step          int
	Kind          string
	Y, W, H       float64 // the bar's top edge, length and thickness
	TextY, ValueX float64
	Label, Value  string
	Title         string
	Failed        bool
}

// Bar chart layout, in SVG user units.
const (
	barLeft = 190.0
	barRowH = 17.0
	barH    = 11.0
	barTop  = 22.0
)

// buildBars lays out a bar per step that has the duration of(step).
func buildBars(id, title string, steps []reportStep, of func(reportStep) (secs, bool)) barChart {
	type row struct {
		st reportStep
		d  secs
	}
	var rows []row
	hi := 0.0
	for _, st := range steps {
		if d, ok := of(st); ok {
			rows = append(rows, row{st, d})
			hi = max(hi, d.Seconds())
		}
	}
	bc := barChart{ID: id, Title: title, W: plotW, Left: barLeft, Right: plotRight - 70, Top: barTop}
	bc.Bottom = bc.Top + float64(len(rows))*barRowH + 4
	bc.H = bc.Bottom + 4
	step := niceStep(max(hi, 0.001), 8)
	end := roundUp(max(hi, 0.001), step)
	x := linear{0, end, bc.Left, bc.Right}
	bc.Ticks = linearTicks(x, end, step, func(v float64) string { return fmtDur(fromSeconds(v)) })
	for i, r := range rows {
		y := bc.Top + 4 + float64(i)*barRowH
		w := x.at(r.d.Seconds()) - bc.Left
		b := bar{
			Step: r.st.N, Kind: r.st.Kind, Y: y, W: w, H: barH,
			TextY: y + barH - 1.5, ValueX: bc.Left + w + 5,
			Label: stepLabel(r.st), Value: r.d.String(), Failed: r.st.Error != "",
		}
		if b.Failed {
			b.Value += " (failed)"
		}
		b.Title = b.Label + ": " + b.Value
		bc.Bars = append(bc.Bars, b)
	}
	return bc
}
