package reports

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"netpolbench/results"
)

// The first screen's four plots: per-packet cost, apply time per churn event kind, full-sync
// time and state size, each against pods on log-log axes, one colour per backend. They are
// sized to sit two by two under the verdict in a 1280×800 window, legends beside them.

// summaryW and summaryH are a summary plot's SVG size, in CSS px at its natural size; the
// state plot has two panels and is wider.
const summaryW, summaryH, stateW = 360, 160, 390

// px converts CSS pixels to gonum lengths (points).
func px(n float64) vg.Length { return vg.Length(n / pxPerPt) }

// summaryPlots draws the four plots; a plot without data says so instead of drawing an empty
// frame.
func (b *builder) summaryPlots(f *figures) ([]Figure, error) {
	var out []Figure
	for _, mk := range []func(*figures) (Figure, error){b.packetPlot, b.eventPlot, b.syncPlot, b.statePlot} {
		fig, err := mk(f)
		if err != nil {
			return nil, err
		}
		out = append(out, fig)
	}
	return out, nil
}

// newLogLog is a summary chart: log pods on x, ticked at the measured scales, log y. Its y axis
// has no label: the figure's heading says what y is and the tick labels carry the unit (and
// gonum reserves height above the data for a vertical label).
func newLogLog(f *figures, title string, yfmt func(float64) string) *chart {
	c := newChart(title, "pods", "")
	c.Title.TextStyle.Font.Size = 9
	c.X.Scale = plot.LogScale{}
	c.X.Tick.Marker = scaleTicks(f.scales)
	if len(f.scales) > 0 {
		lo, hi := float64(f.scales[0]), float64(f.scales[len(f.scales)-1])
		// A margin of a tenth of the span (at least of a decade) keeps the end points and
		// their markers off the frame.
		m := math.Pow(10, 0.1*math.Max(1, math.Log10(hi/lo)))
		c.X.Min, c.X.Max = lo/m, hi*m
	}
	logAxis(&c.Y, yfmt)
	return c
}

// scaleTicks tick the measured scales. When two of them sit closer than half a decade on a
// wider sweep, only powers of ten and the ends are labelled, so labels do not run together in a
// narrow panel.
func scaleTicks(scales []int) plot.ConstantTicks {
	crowded := false
	for i := 1; i < len(scales); i++ {
		if math.Log10(float64(scales[i])/float64(scales[i-1])) < 0.5 {
			crowded = true
		}
	}
	if len(scales) > 1 && math.Log10(float64(scales[len(scales)-1])/float64(scales[0])) < 2 {
		crowded = false
	}
	var ticks plot.ConstantTicks
	for i, n := range scales {
		t := plot.Tick{Value: float64(n), Label: fmtCount(float64(n))}
		if d := math.Log10(float64(n)); crowded && d != math.Trunc(d) && i != 0 && i != len(scales)-1 {
			t.Label = ""
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// finishSummary sets the axes' ranges and renders c, or records why there is nothing to draw.
func (b *builder) finishSummary(fig Figure, drawn bool, w float64, cs ...*chart) (Figure, error) {
	if !drawn {
		fig.Empty = "Not measured in this run."
		return fig, nil
	}
	for _, c := range cs {
		// Headroom of a seventh of a decade keeps markers at the extremes off the frame.
		c.Y.Min, c.Y.Max = c.Y.Min/1.4, c.Y.Max*1.4
		fixLogRange(&c.Y)
	}
	r, err := b.figPanels(fig.Title, fig.Caption, px(w), px(summaryH), cs...)
	if err != nil {
		return fig, err
	}
	fig.SVG, fig.Legend, fig.Key = r.SVG, r.Legend, r.Key
	return fig, nil
}

// keySeries adds a backend's legend entry with the growth exponent fitted to pts (y ∝ pods^a)
// when they span two scales or more.
func keySeries(c *chart, backend string, pts plotter.XYs, s swatch) {
	var ps []results.Point
	for _, p := range pts {
		ps = append(ps, results.Point{X: p.X, Y: p.Y})
	}
	fit, err := results.FitPowerLaw(backend, "", "pods", ps)
	if err != nil {
		c.key(backend, "", s)
		return
	}
	c.keyGrowth(backend, "pods", fit.Exponent, s)
}

// band draws the area between lo and hi (same x values) in fill, behind what comes after; at
// one scale, a thick whisker from lo to hi.
func band(c *chart, lo, hi plotter.XYs, fill color.NRGBA) error {
	if len(lo) < 2 {
		for i := range lo {
			l, err := plotter.NewLine(plotter.XYs{lo[i], hi[i]})
			if err != nil {
				return err
			}
			l.Color, l.Width = fill, vg.Points(5)
			c.Add(l)
		}
		return nil
	}
	pts := append(plotter.XYs{}, lo...)
	for i := len(hi) - 1; i >= 0; i-- {
		pts = append(pts, hi[i])
	}
	poly, err := plotter.NewPolygon(pts)
	if err != nil {
		return err
	}
	poly.Color = fill
	poly.LineStyle.Width = 0
	c.Add(poly)
	return nil
}

// seriesLine draws pts as a line with dots, in the backend's colour.
func seriesLine(c *chart, pts plotter.XYs, ls draw.LineStyle) error {
	if len(pts) >= 2 {
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.LineStyle = ls
		c.Add(l)
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	sc.GlyphStyle = draw.GlyphStyle{Color: ls.Color, Radius: vg.Points(2.4), Shape: shapeDot}
	c.Add(sc)
	return nil
}

func backendLine(backend string, width float64) draw.LineStyle {
	return draw.LineStyle{Color: backendColour(backend), Width: vg.Points(width)}
}

func (b *builder) packetPlot(f *figures) (Figure, error) {
	fig := Figure{ID: "plot-packet", Title: "Per-packet cost", Caption: "time above the floor for allowed new flows: p50, band to p99"}
	return b.bandedPlot(fig, f, true, func(k scaleKey) (mid, lo, hi float64, ok bool) {
		p, ok := f.packet[k]
		return p.P50, p.P50, math.Max(p.P99, p.P50), ok && p.P50 > 0
	})
}

// bandedPlot draws per dataplane a line through mid with a band from lo to hi behind it, and
// keys it with the growth fitted to mid; edge also draws the band's top, thin, so overlapping
// bands stay apart.
func (b *builder) bandedPlot(fig Figure, f *figures, edge bool, at func(scaleKey) (mid, lo, hi float64, ok bool)) (Figure, error) {
	c := newLogLog(f, "", fmtNS)
	drawn := false
	for _, be := range f.dataplanes() {
		var mid, lo, hi plotter.XYs
		for _, n := range f.scales {
			if m, l, h, ok := at(scaleKey{be, n}); ok {
				mid = append(mid, plotter.XY{X: float64(n), Y: m})
				lo = append(lo, plotter.XY{X: float64(n), Y: l})
				hi = append(hi, plotter.XY{X: float64(n), Y: h})
			}
		}
		if len(mid) == 0 {
			continue
		}
		drawn = true
		ls := backendLine(be, 2)
		fill := translucent(backendColour(be), 0.15)
		if err := band(c, lo, hi, fill); err != nil {
			return fig, fmt.Errorf("plot %s band %s: %w", fig.ID, be, err)
		}
		if edge && len(hi) >= 2 {
			l, err := plotter.NewLine(hi)
			if err != nil {
				return fig, fmt.Errorf("plot %s band edge %s: %w", fig.ID, be, err)
			}
			l.LineStyle = backendLine(be, 0.7)
			c.Add(l)
		}
		if err := seriesLine(c, mid, ls); err != nil {
			return fig, fmt.Errorf("plot %s %s: %w", fig.ID, be, err)
		}
		keySeries(c, be, mid, swatch{line: &ls, band: fill})
	}
	return b.finishSummary(fig, drawn, summaryW, c)
}

// eventShapes mark churn event kinds: circles for pods, triangles for scaling, squares and a
// cross for policies.
var eventShapes = map[string]shape{
	results.EventPodAdd: shapeDot, results.EventPodDelete: shapeRing, results.EventRelabel: shapePlus,
	results.EventScaleUp: shapeTriangle, results.EventScaleDown: shapeTriangleOutline,
	results.EventPolicyAdd: shapeSquare, results.EventPolicyUpdate: shapeCross, results.EventPolicyRemove: shapeBox,
}

var eventKeyColour = color.RGBA{60, 60, 60, 255}

func (b *builder) eventPlot(f *figures) (Figure, error) {
	fig := Figure{ID: "plot-events", Title: "Apply time per churn event", Caption: "median per kind (markers) and their geomean"}
	c := newLogLog(f, "", fmtNS)
	dps := f.dataplanes()
	// Markers of different backends and kinds at one scale are spread a little along x, a
	// fixed share of the axis, so they do not hide each other.
	span := 1.0
	if len(f.scales) > 1 {
		span = math.Max(1, math.Log10(float64(f.scales[len(f.scales)-1])/float64(f.scales[0])))
	}
	dodgeB, dodgeK := 0.03*span, 0.006*span
	kindsSeen := map[string]bool{}
	drawn := false
	for bi, be := range dps {
		offB := (float64(bi) - float64(len(dps)-1)/2) * dodgeB
		var line plotter.XYs
		byKind := map[string]plotter.XYs{}
		for _, n := range f.scales {
			evs := f.events[scaleKey{be, n}]
			if evs == nil {
				continue
			}
			if g, ok := f.geomean(be, n, f.eventKinds(dps, n)); ok {
				line = append(line, plotter.XY{X: float64(n) * math.Pow(10, offB), Y: g})
			}
			for ki, ev := range results.EventTypes {
				if v, ok := evs[ev]; ok && v > 0 {
					offK := (float64(ki) - float64(len(results.EventTypes))/2) * dodgeK
					byKind[ev] = append(byKind[ev], plotter.XY{X: float64(n) * math.Pow(10, offB+offK), Y: v})
				}
			}
		}
		if len(line) == 0 && len(byKind) == 0 {
			continue
		}
		drawn = true
		ls := backendLine(be, 1.8)
		if len(line) >= 2 {
			l, err := plotter.NewLine(line)
			if err != nil {
				return fig, fmt.Errorf("plot churn events %s: %w", be, err)
			}
			l.LineStyle = ls
			c.Add(l)
		}
		for _, ev := range results.EventTypes {
			pts := byKind[ev]
			if len(pts) == 0 {
				continue
			}
			kindsSeen[ev] = true
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return fig, fmt.Errorf("plot churn events %s %s: %w", be, ev, err)
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: backendColour(be), Radius: vg.Points(2.6), Shape: eventShapes[ev]}
			c.Add(sc)
		}
		c.key(be, "", lineSwatch(ls))
	}
	for _, ev := range results.EventTypes {
		if kindsSeen[ev] {
			c.keyShared(ev, glyphSwatch(eventShapes[ev], eventKeyColour))
		}
	}
	return b.finishSummary(fig, drawn, summaryW, c)
}

func (b *builder) syncPlot(f *figures) (Figure, error) {
	fig := Figure{ID: "plot-sync", Title: "Full-sync time", Caption: "installing the whole state: median, band from min to max"}
	return b.bandedPlot(fig, f, false, func(k scaleKey) (mid, lo, hi float64, ok bool) {
		s, ok := f.sync[k]
		return s.Median, s.Min, s.Max, ok && s.Median > 0 && s.Min > 0
	})
}

func (b *builder) statePlot(f *figures) (Figure, error) {
	fig := Figure{ID: "plot-state", Title: "State size", Caption: "rules + set members + map entries; bytes written"}
	entries := newLogLog(f, "entries", fmtCount)
	bytes := newLogLog(f, "bytes written", fmtBytesSI)
	drawn, members := false, false
	for _, be := range f.dataplanes() {
		var all, mem, by plotter.XYs
		for _, n := range f.scales {
			s, ok := f.state[scaleKey{be, n}]
			if !ok {
				continue
			}
			if s.Entries() > 0 {
				all = append(all, plotter.XY{X: float64(n), Y: float64(s.Entries())})
			}
			if s.Members > 0 {
				mem = append(mem, plotter.XY{X: float64(n), Y: float64(s.Members)})
			}
			if s.Bytes > 0 {
				by = append(by, plotter.XY{X: float64(n), Y: float64(s.Bytes)})
			}
		}
		if len(all) == 0 && len(by) == 0 {
			continue
		}
		drawn = true
		ls := backendLine(be, 2)
		for _, s := range []struct {
			c   *chart
			pts plotter.XYs
		}{{entries, all}, {bytes, by}} {
			if len(s.pts) > 0 {
				if err := seriesLine(s.c, s.pts, ls); err != nil {
					return fig, fmt.Errorf("plot state size %s: %w", be, err)
				}
			}
		}
		if len(mem) >= 2 {
			l, err := plotter.NewLine(mem)
			if err != nil {
				return fig, fmt.Errorf("plot set members %s: %w", be, err)
			}
			l.LineStyle = memberLine(be)
			entries.Add(l)
			members = true
		}
		keySeries(entries, be, all, lineSwatch(ls))
	}
	if members {
		entries.key("set members", "", lineSwatch(memberLine("")))
	}
	return b.finishSummary(fig, drawn, stateW, entries, bytes)
}

// memberLine draws a backend's set members (dotted); without a backend, the legend's sample.
func memberLine(backend string) draw.LineStyle {
	c := backendColour(backend)
	if backend == "" {
		c = eventKeyColour
	}
	return draw.LineStyle{Color: c, Width: vg.Points(1.5), Dashes: []vg.Length{vg.Points(1.5), vg.Points(2)}}
}
