// Package reports renders results (results.Run) as one self-contained HTML file that works
// offline, and as a summary for the terminal. It only reads results; it never measures.
//
// A report opens on the answer, sized for a 1280×800 screen: the verdict computed from the run
// (verdict.go: the cheapest dataplane per packet, per churn event and in state size at each
// scale, with same-run ratios and the caps) and four log-log plots against pods (summary.go).
// The figures both read come from one place (figures.go), which is what changes when the run
// records a figure differently. Every other section (percentiles, distributions, box plots,
// fits, updates, churn, sizes, every benchmark, the machine) is folded below. WriteSummary
// prints the same answer for a terminal (terminal.go).
//
// Plots are inline SVG drawn with gonum/plot; each backend has one fixed colour everywhere
// (colour.go), legends are HTML beside the plots (legend.go) and every plot marks its data
// area (rect.plot-data) so the browser test can check that no legend covers it. The results
// JSON itself is embedded in a <script type="application/json"> element.
package reports

import (
	"encoding/json"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"maps"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"netpolbench/results"
)

// Section is one part of a report; Empty explains why it has no data.
type Section struct {
	ID    string
	Title string
	// Digest is the line shown beside the title while the section is folded: what it holds.
	Digest  string
	Intro   string
	Empty   string
	Figures []Figure
	Tables  []Table
}

// setDigest fills a section's folded line from its contents unless it has one.
func (s *Section) setDigest() {
	if s.Digest != "" {
		return
	}
	if s.Empty != "" {
		s.Digest = "not measured"
		return
	}
	var parts []string
	if n := len(s.Figures); n > 0 {
		parts = append(parts, plural(n, "plot"))
	}
	rows := 0
	for _, t := range s.Tables {
		rows += len(t.Rows)
	}
	if rows > 0 {
		parts = append(parts, plural(rows, "table row"))
	}
	s.Digest = strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%s %ss", fmtInt(n), what)
}

// Table is a simple table of preformatted cells.
type Table struct {
	Caption string
	Head    []string
	Rows    [][]Cell
	// Open keeps a long table unfolded.
	Open bool
}

// Folded reports whether the page folds the table behind a summary line (long and not Open).
func (t Table) Folded() bool { return len(t.Rows) > 40 && !t.Open }

// Cell is a table cell; Class styles it (e.g. "num", "bad", "good").
type Cell struct {
	Text  string
	Class string
}

func num(s string) Cell    { return Cell{Text: s, Class: "num"} }
func txt(s string) Cell    { return Cell{Text: s} }
func cls(s, c string) Cell { return Cell{Text: s, Class: c} }

// page is what the template renders.
type page struct {
	Title    string
	Subtitle string
	// Answer is a report's first screen: the verdict and the summary plots.
	Answer *answerView
	// Gate and GateOK are a comparison's gate verdict, Headlines its changed figures.
	Gate      string
	GateOK    bool
	Headlines []string
	// Fold collapses the sections (a report's details); a comparison shows them open.
	Fold     bool
	Sections []Section
	JSON     template.JS
}

// Render writes the HTML report of run to w: first the verdict and the four summary plots,
// then every other section folded.
func Render(w io.Writer, run *results.Run) error {
	b := newBuilder(run)
	figs := collectFigures(run)
	plots, err := b.summaryPlots(figs)
	if err != nil {
		return err
	}
	pg := page{
		Title:    "netpolbench report",
		Subtitle: subtitle(run),
		Answer:   &answerView{Verdict: verdictView(computeVerdict(run, figs), figs.dataplanes()), Plots: plots},
		Fold:     true,
	}
	for _, f := range []func() (Section, error){b.claims, b.latencyTables, b.latencyDistributions, b.latencyBoxes,
		b.scaling, b.updates, b.churn, b.endToEnd, b.sizes, b.benchmarks, b.environment} {
		s, err := f()
		if err != nil {
			return err
		}
		s.setDigest()
		pg.Sections = append(pg.Sections, s)
	}
	js, err := embedJSON(run)
	if err != nil {
		return err
	}
	pg.JSON = js
	return execute(w, pg)
}

// embedJSON encodes v for a <script type="application/json"> element; encoding/json escapes <, >
// and & so the text can never close the element.
func embedJSON(v any) (template.JS, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("embed results json: %w", err)
	}
	return template.JS(b), nil //nolint:gosec // HTML-escaped by encoding/json
}

func subtitle(run *results.Run) string {
	parts := []string{"run " + run.Start.UTC().Format("2006-01-02 15:04 MST")}
	if run.Duration > 0 {
		parts = append(parts, "took "+run.Duration.Round(1e9).String())
	}
	if run.GitRevision != "" {
		rev, dirty := strings.CutSuffix(run.GitRevision, "-dirty")
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		parts = append(parts, "commit "+rev)
	}
	if m := run.Machine; m.Cores > 0 {
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("%d cores %s", m.Cores, m.CPUModel)))
	}
	if run.Kernel != "" {
		parts = append(parts, "kernel "+run.Kernel)
	}
	parts = append(parts, fmt.Sprintf("seed %d", run.Seed))
	return strings.Join(parts, " · ")
}

type builder struct {
	run *results.Run
	seq int
}

func newBuilder(run *results.Run) *builder {
	return &builder{run: run}
}

// fig renders a chart as a figure with its legend beside it.
func (b *builder) fig(c *chart, title, caption string, w, h vg.Length) (Figure, error) {
	return b.figPanels(title, caption, w, h, c)
}

// figPanels renders charts side by side as one figure; their legends are joined.
func (b *builder) figPanels(title, caption string, w, h vg.Length, cs ...*chart) (Figure, error) {
	b.seq++
	ps := make([]*plot.Plot, len(cs))
	var keys, inline []LegendItem
	for i, c := range cs {
		ps[i] = c.Plot
		keys = append(keys, c.keys...)
		inline = append(inline, c.inline...)
	}
	svg, err := render(title, w, h, ps...)
	if err != nil {
		return Figure{}, err
	}
	return Figure{ID: fmt.Sprintf("fig-%d", b.seq), Title: title, Caption: caption, SVG: svg, Legend: keys, Key: inline}, nil
}

func (b *builder) claims() (Section, error) {
	s := Section{ID: "claims", Title: "Claims", Intro: "The seed claims, each confirmed or refuted by this run's own figures (inconclusive where their intervals straddle the claim's thresholds)."}
	if len(b.run.Claims) == 0 {
		s.Empty = "No claims were evaluated in this run."
		return s, nil
	}
	t := Table{Head: []string{"Claim", "Status", "Evidence"}}
	for _, c := range b.run.Claims {
		class := map[string]string{results.ClaimConfirmed: "good", results.ClaimRefuted: "bad"}[c.Status]
		ev := c.Evidence
		if len(c.Figures) > 0 {
			var keys []string
			for k := range c.Figures {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var fs []string
			for _, k := range keys {
				fs = append(fs, fmt.Sprintf("%s=%s", k, trim(c.Figures[k], 3)))
			}
			ev = strings.TrimSpace(ev + " (" + strings.Join(fs, ", ") + ")")
		}
		t.Rows = append(t.Rows, []Cell{txt(c.Statement), cls(c.Status, class), txt(ev)})
	}
	s.Tables = append(s.Tables, t)
	counts := map[string]int{}
	for _, c := range b.run.Claims {
		counts[c.Status]++
	}
	var parts []string
	for _, st := range []string{results.ClaimConfirmed, results.ClaimRefuted, results.ClaimInconclusive, results.ClaimNotMeasured} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	s.Digest = strings.Join(parts, ", ")
	return s, nil
}

// detail reports whether a histogram is a breakdown of a headline one (one path of a span,
// labelled path=) or a variant of the sweep's measurement (rate=sparse, flows=N, headroom=H):
// it is listed in the tables, but the summary figures and the plots take the headline.
func detail(h results.Histogram) bool {
	return h.Labels["path"] != "" || h.Variant()
}

// roundsText is what a per-packet figure's rounds say beside its p50 above the floor: the 95%
// interval from resampling rounds, and a warning where the floor drifted by a large share of the
// figure ("" without rounds).
func roundsText(r *results.RoundStats) string {
	if r == nil || r.Rounds < 2 {
		return ""
	}
	out := fmt.Sprintf(" [%s–%s]", fmtNS(r.P50Lo), fmtNS(r.P50Hi))
	if r.Noisy {
		out += fmt.Sprintf(" (floor drift %s)", fmtNS(r.FloorDrift))
	}
	return out
}

// latencyOrder orders the per-packet distributions for the latency sections; the end-to-end
// runs' enforcement histograms have a section of their own.
func latencyOrder(hs []results.Histogram) []results.Histogram {
	var out []results.Histogram
	for _, h := range hs {
		if h.Kind != results.KindEnforcement {
			out = append(out, h)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, c := out[i], out[j]
		if a.Kind != c.Kind {
			return a.Kind < c.Kind
		}
		if a.Backend != c.Backend {
			return a.Backend < c.Backend
		}
		if a.Pods != c.Pods {
			return a.Pods < c.Pods
		}
		if a.Verdict != c.Verdict {
			return a.Verdict < c.Verdict
		}
		return a.Flow < c.Flow
	})
	return out
}

func (b *builder) latencyTables() (Section, error) {
	s := Section{ID: "latency", Title: "Per-packet cost: percentiles",
		Intro: "Each row is one distribution. Stamp deltas are per packet, measured in the kernel between a stamp just before and one just after the enforcement point; the floor is the same stamping around an empty enforcement step, and 'above floor' subtracts the floor's same percentile. BPF_PROG_TEST_RUN rows are distributions of batch means, narrower than per-packet spread. A tail percentile is shown only when at least " + fmt.Sprint(results.MinTailSamples) + " values lie beyond it ('–' otherwise): from fewer it is one or two samples, whatever the tail looks like. In brackets beside a per-packet p50 above the floor, its 95% interval from resampling the measurement's rounds; 'floor drift' where the floor moved between rounds by a quarter of the figure or more."}
	if len(latencyOrder(b.run.Latency)) == 0 {
		s.Empty = "No latency distributions were measured in this run."
		return s, nil
	}
	byKind := map[string][]results.Histogram{}
	var kinds []string
	for _, h := range latencyOrder(b.run.Latency) {
		if _, ok := byKind[h.Kind]; !ok {
			kinds = append(kinds, h.Kind)
		}
		byKind[h.Kind] = append(byKind[h.Kind], h)
	}
	for _, k := range kinds {
		t := Table{Caption: "Kind: " + k, Head: []string{"Backend", "Pods", "Verdict", "Flow", "Count", "p50", "p90", "p99", "p99.9", "Max", "p50 above floor", "p99 above floor", "Labels", "Raw"}}
		for _, h := range byKind[k] {
			above50, above99 := "–", "–"
			if h.AboveFloor != nil {
				above50, above99 = fmtNS(h.AboveFloor.P50)+roundsText(h.Rounds), fmtTail(h.Count, 99, h.AboveFloor.P99)
			}
			t.Rows = append(t.Rows, []Cell{txt(h.Backend), num(fmtCount(float64(h.Pods))), txt(h.Verdict), txt(h.Flow),
				num(fmtCount(float64(h.Count))), num(fmtNS(h.Percentiles.P50)), num(fmtTail(h.Count, 90, h.Percentiles.P90)), num(fmtTail(h.Count, 99, h.Percentiles.P99)),
				num(fmtTail(h.Count, 99.9, h.Percentiles.P999)), num(fmtNS(float64(h.Max))), num(above50), num(above99), txt(labelText(h)), cls(h.HgrmPath, "path")})
		}
		s.Tables = append(s.Tables, t)
	}
	return s, nil
}

func (b *builder) latencyDistributions() (Section, error) {
	s := Section{ID: "distributions", Title: "Per-packet cost distributions",
		Intro: "Percentile curves on log axes (x: percentile, y: time per packet), one plot per kind of measurement and scale: colour by backend, line style by verdict, flow state and test; thin grey lines are the stamping floors the curves are measured against. Read the tail on the right."}
	type group struct {
		kind string
		pods int
	}
	groups := map[group][]results.Histogram{}
	var keys []group
	for _, h := range latencyOrder(b.run.Latency) {
		if h.Count == 0 || h.Backend == results.BackendFloorName && h.Kind == results.KindStampDelta || detail(h) {
			continue // stamp floors are drawn with the curves measured against them
		}
		k := group{h.Kind, h.Pods}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], h)
	}
	if len(keys) == 0 {
		s.Empty = "No latency distributions were measured in this run."
		return s, nil
	}
	sort.SliceStable(keys, func(i, j int) bool {
		if keys[i].kind != keys[j].kind {
			return keys[i].kind > keys[j].kind // stamp deltas, then test runs, then round trips
		}
		return keys[i].pods < keys[j].pods
	})
	for _, k := range keys {
		hs := groups[k]
		title := fmt.Sprintf("%s, %s pods", k.kind, fmtCount(float64(k.pods)))
		c := percentileChart(title, yLabelOf(k.kind), 10000)
		fields := variantFields(hs)
		styles := map[string]int{}
		for _, h := range hs {
			if _, ok := styles[variant(h, fields)]; !ok {
				styles[variant(h, fields)] = len(styles)
			}
		}
		for _, h := range hs {
			l, err := curveLine(h)
			if err != nil {
				return s, err
			}
			if l == nil {
				continue
			}
			l.Dashes = dashPatterns[styles[variant(h, fields)]%len(dashPatterns)]
			c.Add(l)
			c.key(strings.TrimSpace(h.Backend+" "+variant(h, fields)), "p99 "+fmtTail(h.Count, 99, h.Percentiles.P99), lineSwatch(l.LineStyle))
		}
		// The floors these distributions are measured against, thin and grey (a shade per
		// attach point), so the cost above the stamping floor is the gap between the curves.
		drawnFloor := map[string]bool{}
		shades := map[string]int{}
		for _, h := range hs {
			fh := b.run.FindLatency(h.Floor)
			if h.Floor == "" || drawnFloor[h.Floor] || fh == nil || fh.Count == 0 {
				continue
			}
			drawnFloor[h.Floor] = true
			xy, err := curveOf(*fh)
			if err != nil || len(xy) < 2 {
				continue
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return s, fmt.Errorf("plot floor %s: %w", fh.Name, err)
			}
			attach := fh.Labels["attach"]
			if _, ok := shades[attach]; !ok {
				shades[attach] = len(shades)
			}
			l.Color = floorShades[shades[attach]%len(floorShades)]
			l.Width = vg.Points(1)
			l.Dashes = dashPatterns[styles[variant(*fh, fields)]%len(dashPatterns)]
			c.Add(l)
			c.key(strings.TrimSpace("floor "+attach+" "+variant(*fh, fields)), "p99 "+fmtTail(fh.Count, 99, fh.Percentiles.P99), lineSwatch(l.LineStyle))
		}
		c.X.Min, c.X.Max = 1, 10000
		fixLogRange(&c.Y)
		f, err := b.fig(c, title, "Percentile distribution of "+k.kind+" at "+fmtCount(float64(k.pods))+" pods, per backend.", 15*vg.Centimeter, 9*vg.Centimeter)
		if err != nil {
			return s, err
		}
		s.Figures = append(s.Figures, f)
	}
	return s, nil
}

// percentileChart is a chart of percentile curves: x the percentile on a log scale of the
// tail (1/(1-q)) up to maxX (1000: 99.9%), y the value on a log scale.
func percentileChart(title, ylabel string, maxX float64) *chart {
	c := newChart(title, "percentile", ylabel)
	logAxis(&c.Y, fmtNS)
	c.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	for _, t := range []plot.Tick{{Value: 1, Label: "0%"}, {Value: 2, Label: "50%"}, {Value: 10, Label: "90%"},
		{Value: 100, Label: "99%"}, {Value: 1000, Label: "99.9%"}, {Value: 10000, Label: "99.99%"}} {
		if t.Value <= maxX {
			ticks = append(ticks, t)
		}
	}
	c.X.Tick.Marker = ticks
	c.X.Min, c.X.Max = 1, maxX
	return c
}

// curveLine is h's percentile curve in its backend's colour, or nil when h has fewer than two
// points to draw.
func curveLine(h results.Histogram) (*plotter.Line, error) {
	xy, err := curveOf(h)
	if err != nil || len(xy) < 2 {
		return nil, err
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil, fmt.Errorf("plot %s: %w", h.Name, err)
	}
	l.Color = backendColour(h.Backend)
	l.Width = vg.Points(1.5)
	return l, nil
}

// floorShades tell apart the floors of different attach points in one plot.
var floorShades = []color.RGBA{{80, 80, 80, 255}, {165, 165, 165, 255}}

// curveOf re-plots h from its encoding, or from its summary percentiles when it has none or the
// encoding does not decode (a damaged file should still give a report of what is readable).
func curveOf(h results.Histogram) (plotter.XYs, error) {
	if h.Encoded != "" {
		if d, err := h.Decode(); err == nil {
			return percentileCurve(d), nil
		}
	}
	var xy plotter.XYs
	for _, p := range []struct{ q, v float64 }{{0, float64(h.Min)}, {50, h.Percentiles.P50}, {90, h.Percentiles.P90},
		{99, h.Percentiles.P99}, {99.9, h.Percentiles.P999}} {
		if p.v > 0 {
			xy = append(xy, plotter.XY{X: 1 / (1 - p.q/100), Y: p.v})
		}
	}
	return xy, nil
}

func (b *builder) latencyBoxes() (Section, error) {
	s := Section{ID: "boxes", Title: "Per-packet cost by backend and scale",
		Intro: "Box plots (median, quartiles, 1.5 IQR whiskers, outliers) per backend and scale on a log axis, drawn from the recorded histograms, one plot per kind, verdict, flow state and test; the floor's box is the stamping cost alone."}
	// Group by everything but backend, scale and attach point, so backends measured at different
	// hooks still share a plot (each next to its own floor).
	groupKey := func(h results.Histogram) string {
		l := maps.Clone(h.Labels)
		delete(l, "attach")
		return strings.Join([]string{h.Kind, h.Verdict, h.Flow, labelText(results.Histogram{Labels: l})}, "\x00")
	}
	groups := map[string][]results.Histogram{}
	var keys []string
	for _, h := range latencyOrder(b.run.Latency) {
		if h.Count == 0 || h.Encoded == "" || detail(h) {
			continue
		}
		k := groupKey(h)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], h)
	}
	if len(keys) == 0 {
		s.Empty = "No recorded histograms to draw box plots from."
		return s, nil
	}
	for _, k := range keys {
		hs := groups[k]
		h0 := hs[0]
		var tparts []string
		for _, v := range []string{h0.Kind, h0.Verdict, h0.Flow, h0.Labels["test"]} {
			if v != "" {
				tparts = append(tparts, v)
			}
		}
		title := strings.Join(tparts, ", ")
		fields := varyingFields(hs)
		p := newChart(title, "", yLabelOf(h0.Kind))
		logAxis(&p.Y, fmtNS)
		var names []string
		for _, h := range hs {
			d, err := h.Decode()
			if err != nil {
				continue // the percentile table and curves still show its summary
			}
			vals := quantileValues(d, 400)
			if len(vals) == 0 {
				continue
			}
			bp, err := plotter.NewBoxPlot(vg.Points(14), float64(len(names)), vals)
			if err != nil {
				return s, fmt.Errorf("box plot %s: %w", h.Name, err)
			}
			bp.FillColor = backendColour(h.Backend)
			bp.GlyphStyle.Radius = vg.Points(1.2)
			p.Add(bp)
			names = append(names, strings.TrimSpace(fmt.Sprintf("%s %s %s", h.Backend, fmtCount(float64(h.Pods)), variant(h, fields))))
		}
		if len(names) == 0 {
			continue
		}
		p.NominalX(names...)
		p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
		p.X.Tick.Label.Rotation = math.Pi / 5
		p.X.Tick.Label.XAlign = -0.9
		p.X.Tick.Label.YAlign = -0.3
		fixLogRange(&p.Y)
		seenBackend := map[string]bool{}
		for _, h := range hs {
			if !seenBackend[h.Backend] {
				seenBackend[h.Backend] = true
				p.key(h.Backend, "", boxSwatch(backendColour(h.Backend)))
			}
		}
		width := vg.Length(math.Max(15, 1.4*float64(len(names)))) * vg.Centimeter
		f, err := b.fig(p, "Box plot: "+title, "Per backend and scale: "+title+".", width, 10*vg.Centimeter)
		if err != nil {
			return s, err
		}
		s.Figures = append(s.Figures, f)
	}
	return s, nil
}

func (b *builder) scaling() (Section, error) {
	s := Section{ID: "scaling", Title: "Growth with scale",
		Intro: "Log-log scaling curves with least-squares fits of log y on log x: the fitted exponent a in y ∝ x^a is the growth order (1 linear, 2 quadratic, 0 flat); per-packet fits give its 95% interval in brackets, from resampling each scale's rounds."}
	if len(b.run.Fits) == 0 {
		s.Empty = "No scaling fits in this run (a fit needs at least two scales)."
		return s, nil
	}
	groups := map[string][]results.Fit{}
	var keys []string
	for _, f := range b.run.Fits {
		k := f.Metric + " vs " + f.XLabel
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], f)
	}
	t := Table{Head: []string{"Backend", "Metric", "x", "Exponent a", "R²", "Points"}}
	for _, k := range keys {
		fits := groups[k]
		p := newChart(k, fits[0].XLabel, fits[0].Metric)
		logAxis(&p.X, fmtCount)
		yfmt := fmtCount
		if m := fits[0].Metric; strings.HasSuffix(m, " ns") || strings.Contains(m, " ns ") {
			yfmt = fmtNS
		}
		logAxis(&p.Y, yfmt)
		for _, f := range fits {
			var xy plotter.XYs
			for _, pt := range f.Points {
				if pt.X > 0 && pt.Y > 0 {
					xy = append(xy, plotter.XY{X: pt.X, Y: pt.Y})
				}
			}
			exp := trim(f.Exponent, 2)
			if f.HasInterval() {
				exp += fmt.Sprintf(" [%s, %s]", trim(f.ExponentLo, 2), trim(f.ExponentHi, 2))
			}
			t.Rows = append(t.Rows, []Cell{txt(f.Backend), txt(f.Metric), txt(f.XLabel), num(exp), num(r2Text(f)), num(fmt.Sprint(len(f.Points)))})
			if len(xy) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return s, fmt.Errorf("plot fit %s: %w", k, err)
			}
			c := backendColour(f.Backend)
			sc.Color = c
			sc.Radius = vg.Points(3)
			p.Add(sc)
			if len(xy) >= 2 {
				lo, hi := xy[0].X, xy[0].X
				for _, q := range xy {
					lo, hi = math.Min(lo, q.X), math.Max(hi, q.X)
				}
				var line plotter.XYs
				for i := 0; i <= 20; i++ {
					x := lo * math.Pow(hi/lo, float64(i)/20)
					line = append(line, plotter.XY{X: x, Y: math.Exp(f.Intercept) * math.Pow(x, f.Exponent)})
				}
				l, err := plotter.NewLine(line)
				if err != nil {
					return s, fmt.Errorf("plot fit %s: %w", k, err)
				}
				l.Color = c
				dashed(l)
				p.Add(l)
				p.keyGrowth(f.Backend, f.XLabel, f.Exponent, swatch{line: &l.LineStyle, glyph: ptr(shapeDot), glyphColour: c})
				p.keys[len(p.keys)-1].Note = "R² " + r2Text(f)
			} else {
				p.key(f.Backend, "", glyphSwatch(shapeDot, c))
			}
		}
		fixLogRange(&p.X)
		fixLogRange(&p.Y)
		f, err := b.fig(p, k, "Log-log: "+k+", with fitted power laws.", 14*vg.Centimeter, 10*vg.Centimeter)
		if err != nil {
			return s, err
		}
		s.Figures = append(s.Figures, f)
	}
	s.Tables = append(s.Tables, t)
	return s, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(xs []float64) (float64, float64) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

func eventRank(ev string) int {
	for i, e := range results.EventTypes {
		if e == ev {
			return i
		}
	}
	return len(results.EventTypes)
}

func (b *builder) updates() (Section, error) {
	s := Section{ID: "updates", Title: "Update cost per churn event",
		Intro: "Time to apply each kind of change (handing the delta to the backend until it returns), the kernel operations it needed, and convergence: from the event to the first probe that saw the new verdict."}
	if len(b.run.Updates) == 0 {
		s.Empty = "No update timings in this run."
		return s, nil
	}
	ups := append([]results.Update(nil), b.run.Updates...)
	sort.SliceStable(ups, func(i, j int) bool {
		if ups[i].Pods != ups[j].Pods {
			return ups[i].Pods < ups[j].Pods
		}
		if eventRank(ups[i].Event) != eventRank(ups[j].Event) {
			return eventRank(ups[i].Event) < eventRank(ups[j].Event)
		}
		return ups[i].Backend < ups[j].Backend
	})
	t := Table{Head: []string{"Pods", "Event", "Backend", "Path", "n", "Apply median", "Apply min–max", "Kernel ops (median)", "Convergence median"}}
	byPods := map[int][]results.Update{}
	var pods []int
	for _, u := range ups {
		lo, hi := minMax(u.ApplyNS)
		ops := "–"
		if len(u.KernelOps) > 0 {
			ops = fmtCount(median(u.KernelOps)) + " " + u.OpsUnit
		}
		conv := "–"
		if len(u.ConvergenceNS) > 0 {
			conv = fmtNS(median(u.ConvergenceNS))
		}
		rng := "–"
		if len(u.ApplyNS) > 0 {
			rng = fmtNS(lo) + " – " + fmtNS(hi)
		}
		app := "–"
		if len(u.ApplyNS) > 0 {
			app = fmtNS(median(u.ApplyNS))
		}
		t.Rows = append(t.Rows, []Cell{num(fmtCount(float64(u.Pods))), txt(u.Event), txt(u.Backend), txt(u.Path), num(fmt.Sprint(len(u.ApplyNS))), num(app), num(rng), num(ops), num(conv)})
		if _, ok := byPods[u.Pods]; !ok {
			pods = append(pods, u.Pods)
		}
		byPods[u.Pods] = append(byPods[u.Pods], u)
	}
	for _, n := range pods {
		us := byPods[n]
		var events, backends []string
		seenE, seenB := map[string]bool{}, map[string]bool{}
		for _, u := range us {
			if !seenE[u.Event] {
				seenE[u.Event] = true
				events = append(events, u.Event)
			}
			if !seenB[u.Backend] {
				seenB[u.Backend] = true
				backends = append(backends, u.Backend)
			}
		}
		sort.Strings(backends)
		p := newChart(fmt.Sprintf("Apply time per event, %s pods", fmtCount(float64(n))), "", "apply time")
		logAxis(&p.Y, fmtNS)
		width := 0.8 / float64(len(backends))
		added := map[string]bool{}
		drawn := 0
		for _, u := range us {
			var vals plotter.Values
			for _, v := range u.ApplyNS {
				if v > 0 {
					vals = append(vals, v)
				}
			}
			if len(vals) == 0 {
				continue
			}
			ei := indexOf(events, u.Event)
			bi := indexOf(backends, u.Backend)
			loc := float64(ei) - 0.4 + width*(float64(bi)+0.5)
			bp, err := plotter.NewBoxPlot(vg.Points(10), loc, vals)
			if err != nil {
				return s, fmt.Errorf("box plot update %s/%s: %w", u.Backend, u.Event, err)
			}
			bp.FillColor = backendColour(u.Backend)
			bp.GlyphStyle.Radius = vg.Points(1.2)
			p.Add(bp)
			drawn++
			added[u.Backend] = true
		}
		if drawn == 0 {
			continue
		}
		p.NominalX(events...)
		p.X.Min, p.X.Max = -0.6, float64(len(events))-0.4
		p.X.Tick.Label.Rotation = math.Pi / 6
		p.X.Tick.Label.XAlign = -0.9
		fixLogRange(&p.Y)
		for _, be := range backends {
			if added[be] {
				p.key(be, "", boxSwatch(backendColour(be)))
			}
		}
		w := vg.Length(math.Max(15, 2*float64(len(events)))) * vg.Centimeter
		f, err := b.fig(p, p.Title.Text, "Apply time samples per event type and backend (log axis).", w, 10*vg.Centimeter)
		if err != nil {
			return s, err
		}
		s.Figures = append(s.Figures, f)
	}
	s.Tables = append(s.Tables, t)
	return s, nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func (b *builder) churn() (Section, error) {
	s := Section{ID: "churn", Title: "Churn under load",
		Intro: "A steady, bounded packet stream between pods that stay allowed while churn events are applied (vertical lines). Top: latency of answered packets per interval; bottom: packets lost per interval."}
	if len(b.run.Churn) == 0 {
		s.Empty = "No churn-under-load timelines in this run."
		return s, nil
	}
	t := Table{Head: []string{"Backend", "Pods", "Intervals", "Sent", "Lost", "Loss", "Worst p99", "Max", "Events"}}
	for _, tl := range b.run.Churn {
		var sent, lost int64
		worst99, worstMax := 0.0, 0.0
		for _, pt := range tl.Points {
			sent += pt.Sent
			lost += pt.Lost
			worst99 = math.Max(worst99, pt.P99US)
			worstMax = math.Max(worstMax, pt.MaxUS)
		}
		loss := "–"
		if sent > 0 {
			loss = trim(100*float64(lost)/float64(sent), 3) + "%"
		}
		who := tl.Backend
		if tl.Capped || b.run.ChurnCapped(tl.Backend, tl.Pods) {
			// Fewer events, or another state, than the other backends': not comparable.
			who += " (churn list unfinished)"
		}
		t.Rows = append(t.Rows, []Cell{txt(who), num(fmtCount(float64(tl.Pods))), num(fmt.Sprint(len(tl.Points))), num(fmtCount(float64(sent))),
			cls(fmtCount(float64(lost)), map[bool]string{true: "bad num", false: "num"}[lost > 0]), num(loss), num(fmtNS(worst99 * 1e3)), num(fmtNS(worstMax * 1e3)), num(fmt.Sprint(len(tl.Events)))})
		if len(tl.Points) == 0 {
			continue
		}
		title := fmt.Sprintf("%s at %s pods", tl.Backend, fmtCount(float64(tl.Pods)))
		lat := newChart(title+": latency per interval", "time since start (s)", "latency")
		logAxis(&lat.Y, func(v float64) string { return fmtNS(v * 1e3) })
		lossP := newChart(title+": packets lost per interval", "time since start (s)", "lost packets")
		ymin, ymax := math.Inf(1), 0.0
		series := []struct {
			name string
			get  func(results.ChurnPoint) float64
			dash bool
		}{{"p50", func(p results.ChurnPoint) float64 { return p.P50US }, false}, {"p99", func(p results.ChurnPoint) float64 { return p.P99US }, false},
			{"max", func(p results.ChurnPoint) float64 { return p.MaxUS }, true}}
		col := backendColour(tl.Backend)
		for i, se := range series {
			var xy plotter.XYs
			for _, pt := range tl.Points {
				if v := se.get(pt); v > 0 {
					xy = append(xy, plotter.XY{X: pt.TMS / 1e3, Y: v})
					ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
				}
			}
			if len(xy) < 1 {
				continue
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return s, fmt.Errorf("plot churn %s: %w", title, err)
			}
			// One colour (the backend's), told apart by weight and dashes.
			l.Color = col
			l.Width = vg.Points([]float64{2, 1.2, 0.8}[i])
			if se.dash {
				dashed(l)
			}
			lat.Add(l)
			lat.key(tl.Backend+" "+se.name, "", lineSwatch(l.LineStyle))
		}
		var lossXY plotter.XYs
		maxLost := 1.0
		for _, pt := range tl.Points {
			lossXY = append(lossXY, plotter.XY{X: pt.TMS / 1e3, Y: float64(pt.Lost)})
			maxLost = math.Max(maxLost, float64(pt.Lost))
		}
		ll, err := plotter.NewLine(lossXY)
		if err != nil {
			return s, fmt.Errorf("plot churn loss %s: %w", title, err)
		}
		ll.StepStyle = plotter.PostStep
		ll.Color = col
		ll.FillColor = translucent(col, 0.3)
		lossP.Add(ll)
		lossP.key(tl.Backend+" lost packets", "", swatch{line: &ll.LineStyle, band: ll.FillColor})
		lossP.Y.Min = 0
		lossP.Y.Max = maxLost * 1.1
		if math.IsInf(ymin, 1) {
			ymin, ymax = 1, 10
		}
		for _, ev := range tl.Events {
			for _, pl := range []struct {
				p      *plot.Plot
				lo, hi float64
			}{{lat.Plot, ymin, ymax}, {lossP.Plot, 0, maxLost * 1.1}} {
				ml, err := plotter.NewLine(plotter.XYs{{X: ev.TMS / 1e3, Y: math.Max(pl.lo, 1e-9)}, {X: ev.TMS / 1e3, Y: pl.hi}})
				if err != nil {
					return s, fmt.Errorf("plot churn mark: %w", err)
				}
				ml.Color = grey
				ml.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
				pl.p.Add(ml)
			}
		}
		fixLogRange(&lat.Y)
		if len(tl.Events) > 0 {
			mark := draw.LineStyle{Color: grey, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(2), vg.Points(2)}}
			lat.key("churn event", "", lineSwatch(mark))
			lossP.key("churn event", "", lineSwatch(mark))
		}
		f1, err := b.fig(lat, lat.Title.Text, "Latency per interval; vertical lines mark churn events.", 18*vg.Centimeter, 8*vg.Centimeter)
		if err != nil {
			return s, err
		}
		f2, err := b.fig(lossP, lossP.Title.Text, "Packets lost per interval; vertical lines mark churn events.", 18*vg.Centimeter, 5*vg.Centimeter)
		if err != nil {
			return s, err
		}
		s.Figures = append(s.Figures, f1, f2)
	}
	s.Tables = append(s.Tables, t)
	return s, nil
}

func (b *builder) sizes() (Section, error) {
	s := Section{ID: "sizes", Title: "Sizes",
		Intro: "State each backend installed, per scale. These figures are exact: the gate compares them exactly. " +
			"Kernel memory is not: it is what the state's kernel objects charge to a memory cgroup created for the backend, " +
			"as far as the kernel charges them (the last table says what each backend's figure counts); – where it was not measured."}
	if len(b.run.Sizes) == 0 && b.run.PeakRSSBytes == 0 {
		s.Empty = "No sizes were recorded in this run."
		return s, nil
	}
	sz := append([]results.Size(nil), b.run.Sizes...)
	sort.SliceStable(sz, func(i, j int) bool {
		if sz[i].Backend != sz[j].Backend {
			return sz[i].Backend < sz[j].Backend
		}
		return sz[i].Pods < sz[j].Pods
	})
	count := func(v uint64) string { return dash(v, func(v float64) string { return fmt.Sprint(uint64(v)) }) }
	sum := Table{Caption: "Totals", Head: []string{"Backend", "Pods", "Identities", "Map entries", "Map key+value bytes", "Memlock", "Program insns",
		"Rules", "Chains", "Set members / elements", "Input bytes", "Kernel memory", "Peak RSS"}}
	maps := Table{Caption: "eBPF maps", Head: []string{"Backend", "Pods", "Map", "Type", "Entries", "Max entries", "Key B", "Value B", "Key+value bytes", "Memlock"}}
	nft := Table{Caption: "nftables tables", Head: []string{"Backend", "Pods", "Sets and maps", "Verdict map elements", "Pod set elements",
		"ipBlock ranges", "Named-port elements", "Self elements", "Longest rule-set chain", "nft commands"}}
	kernel := Table{Caption: "What kernel memory counts", Head: []string{"Backend", "Counted (and left out)"}}
	noted := map[string]bool{}
	for _, x := range sz {
		var memlock, insns uint64
		for _, m := range x.Maps {
			memlock += m.MemlockBytes
			maps.Rows = append(maps.Rows, []Cell{txt(x.Backend), num(fmtCount(float64(x.Pods))), txt(m.Name), txt(m.Type), num(fmt.Sprint(m.Entries)),
				num(fmt.Sprint(m.MaxEntries)), num(fmt.Sprint(m.KeyBytes)), num(fmt.Sprint(m.ValueBytes)),
				num(fmtBytes(float64(m.Entries * uint64(m.KeyBytes+m.ValueBytes)))), num(dash(m.MemlockBytes, fmtBytes))})
		}
		for _, p := range x.Programs {
			insns += p.Insns
		}
		row := []Cell{txt(x.Backend), num(fmtCount(float64(x.Pods))), num(count(uint64(x.Identities)))}
		if len(x.Maps) > 0 {
			row = append(row, num(fmt.Sprint(x.TotalEntries())), num(fmtBytes(float64(x.TotalMapBytes()))), num(dash(memlock, fmtBytes)))
		} else {
			row = append(row, num("–"), num("–"), num("–"))
		}
		row = append(row, num(count(insns)))
		switch {
		case x.Iptables != nil:
			ipt := x.Iptables
			row = append(row, num(fmt.Sprint(ipt.Rules)), num(fmt.Sprint(ipt.Chains)), num(count(ipt.IpsetMembers)), num(fmtBytes(float64(ipt.RestoreBytes))))
		case x.Nftables != nil:
			t := x.Nftables
			row = append(row, num(fmt.Sprint(t.Rules)), num(fmt.Sprint(t.Chains)), num(fmt.Sprint(t.Elements)), num(dash(t.Bytes, fmtBytes)))
			nft.Rows = append(nft.Rows, []Cell{txt(x.Backend), num(fmtCount(float64(x.Pods))), num(fmt.Sprint(t.Sets)), num(count(t.DispatchElements)),
				num(count(t.PodElements)), num(count(t.NetElements)), num(count(t.NamedElements)), num(count(t.SelfElements)),
				num(count(t.MaxChainRules)), num(count(t.Commands))})
		default:
			row = append(row, num("–"), num("–"), num("–"), num("–"))
		}
		kb := "–"
		if x.KernelBytes != nil {
			kb = fmtBytes(float64(*x.KernelBytes))
		}
		row = append(row, num(kb), num(dash(x.PeakRSSBytes, fmtBytes)))
		sum.Rows = append(sum.Rows, row)
		if x.KernelNote != "" && !noted[x.Backend+"\x00"+x.KernelNote] {
			noted[x.Backend+"\x00"+x.KernelNote] = true
			kernel.Rows = append(kernel.Rows, []Cell{txt(x.Backend), txt(x.KernelNote)})
		}
	}
	for _, t := range []Table{sum, maps, nft, kernel} {
		if len(t.Rows) > 0 {
			s.Tables = append(s.Tables, t)
		}
	}
	if b.run.PeakRSSBytes > 0 {
		s.Intro += " The suite's own peak resident memory over the whole run was " + fmtBytes(float64(b.run.PeakRSSBytes)) + "."
	}
	return s, nil
}

func dash(v uint64, f func(float64) string) string {
	if v == 0 {
		return "–"
	}
	return f(float64(v))
}

func (b *builder) benchmarks() (Section, error) {
	s := Section{ID: "benchmarks", Title: "All benchmark figures",
		Intro: "Every benchmark metric in Go's benchmark vocabulary (what WriteBenchfmt gives benchstat): median of the samples, their range and count; exact figures are deterministic."}
	all := b.run.AllBenchmarks()
	if len(all) == 0 {
		s.Empty = "No benchmark figures in this run."
		return s, nil
	}
	t := Table{Head: []string{"Benchmark", "Unit", "n", "Median", "Min", "Max", "Exact"}}
	for _, bm := range all {
		for _, m := range bm.Metrics {
			if len(m.Samples) == 0 {
				continue
			}
			lo, hi := minMax(m.Samples)
			f := func(v float64) string { return trim(v, 3) }
			if strings.HasPrefix(m.Unit, "ns/") || strings.HasSuffix(m.Unit, "_ns/op") {
				f = fmtNS
			}
			exact := ""
			if m.Exact {
				exact = "exact"
			}
			t.Rows = append(t.Rows, []Cell{txt(bm.Name), txt(m.Unit), num(fmt.Sprint(len(m.Samples))), num(f(median(m.Samples))), num(f(lo)), num(f(hi)), txt(exact)})
		}
	}
	s.Tables = append(s.Tables, t)
	if len(b.run.Ratios) > 0 {
		rt := Table{Caption: "Same-run ratios the gate compares", Head: []string{"Ratio", "Numerator", "Denominator", "n", "Median"}}
		for _, r := range b.run.Ratios {
			xs, ok := b.run.RatioSamples(r)
			med := "–"
			if ok {
				med = trim(median(xs), 4)
			}
			rt.Rows = append(rt.Rows, []Cell{txt(r.Name), txt(r.Num.String()), txt(r.Den.String()), num(fmt.Sprint(len(xs))), num(med)})
		}
		s.Tables = append(s.Tables, rt)
	}
	return s, nil
}

func (b *builder) environment() (Section, error) {
	r := b.run
	s := Section{ID: "environment", Title: "Machine, kernel and versions"}
	t := Table{}
	add := func(k, v string) {
		if v != "" {
			t.Rows = append(t.Rows, []Cell{txt(k), txt(v)})
		}
	}
	add("Schema", r.Schema)
	add("Started", r.Start.UTC().Format("2006-01-02 15:04:05 MST"))
	if r.Duration > 0 {
		add("Duration", r.Duration.String())
	}
	add("CPU", r.Machine.CPUModel)
	if r.Machine.Cores > 0 {
		add("Cores", fmt.Sprint(r.Machine.Cores))
	}
	if r.Machine.MemoryBytes > 0 {
		add("Memory", fmtBytes(float64(r.Machine.MemoryBytes)))
	}
	add("Host", r.Machine.Hostname)
	add("Kernel", r.Kernel)
	add("Go", r.Tools.Go)
	add("clang", r.Tools.Clang)
	add("iptables", r.Tools.Iptables)
	add("ipset", r.Tools.Ipset)
	add("bpftool", r.Tools.Bpftool)
	add("nft", r.Tools.Nft)
	add("Git revision", r.GitRevision)
	add("Seed", fmt.Sprint(r.Seed))
	add("Backends", strings.Join(r.Config.Backends, ", "))
	if len(r.Config.Pods) > 0 {
		var ps []string
		for _, p := range r.Config.Pods {
			ps = append(ps, fmtCount(float64(p)))
		}
		add("Pods sweep", strings.Join(ps, ", "))
	}
	if r.Config.Duration > 0 {
		add("Duration per measurement", r.Config.Duration.String())
	}
	if r.Config.Samples > 0 {
		add("Samples per timing", fmt.Sprint(r.Config.Samples))
	}
	var extra []string
	for k := range r.Config.Extra {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		add("--"+k, r.Config.Extra[k])
	}
	if len(r.Workload) > 0 {
		add("Workload", string(r.Workload))
	}
	for _, n := range r.Notes {
		add("Note", n)
	}
	s.Tables = append(s.Tables, t)
	if len(r.Caps) > 0 {
		ct := Table{Caption: "Caps: skipped or limited backend/scale combinations", Head: []string{"Backend", "Pods", "Skipped", "Limit", "Reason"}}
		for _, c := range r.Caps {
			pods := "all"
			if c.Pods > 0 {
				pods = fmtCount(float64(c.Pods))
			}
			ct.Rows = append(ct.Rows, []Cell{txt(c.Backend), num(pods), txt(fmt.Sprint(c.Skipped)), txt(c.Limit), txt(c.Reason)})
		}
		s.Tables = append(s.Tables, ct)
	}
	return s, nil
}

// yLabelOf names what one value of a histogram of the given kind is.
func yLabelOf(kind string) string {
	switch kind {
	case results.KindRoundTrip:
		return "round-trip time"
	case results.KindTestRunBatchMeans:
		return "mean time per run (batch)"
	}
	return "time per packet"
}

// r2Text prints a fit's R², which says nothing through two points (a line always passes through them).
func r2Text(f results.Fit) string {
	if len(f.Points) < 3 {
		return "n/a, 2 points"
	}
	return trim(f.R2, 3)
}

func ptr[T any](v T) *T { return &v }
