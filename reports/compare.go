package reports

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"netpolbench/gate"
	"netpolbench/results"
)

// maxOverlays bounds the number of overlay plots per section so a large sweep stays readable; the
// table still lists every figure.
const maxOverlays = 36

// RenderCompare writes an HTML page comparing cur against base: the gate's verdict per metric,
// old-vs-new overlays of the gated ratios and of the latency distributions both runs have, and
// both runs' environments.
func RenderCompare(w io.Writer, base, cur *results.Run, g *gate.Result) error {
	b := newBuilder(cur)
	pg := page{
		Title:     "netpolbench comparison",
		Subtitle:  "baseline: " + subtitle(base) + "  →  current: " + subtitle(cur),
		Gate:      fmt.Sprintf("gate: %s (%d compared, %d regressed, %d improved)", g.Verdict, g.Compared, g.Regressed, g.Improved),
		GateOK:    g.Verdict == gate.VerdictClean,
		Headlines: compareHeadlines(g),
	}
	for _, f := range []func() (Section, error){
		func() (Section, error) { return gateTable(g), nil },
		func() (Section, error) { return b.ratioOverlays(g) },
		func() (Section, error) { return b.latencyOverlays(base, cur) },
		func() (Section, error) { return updateCompare(base, cur), nil },
		func() (Section, error) { return envCompare(base, cur), nil },
	} {
		s, err := f()
		if err != nil {
			return err
		}
		s.setDigest()
		pg.Sections = append(pg.Sections, s)
	}
	js, err := embedJSON(map[string]any{"baseline": base, "current": cur, "gate": gateForJSON(g)})
	if err != nil {
		return err
	}
	pg.JSON = js
	return execute(w, pg)
}

// gateForJSON replaces infinities, which JSON cannot hold.
func gateForJSON(g *gate.Result) *gate.Result {
	out := *g
	out.Rows = append([]gate.Row(nil), g.Rows...)
	for i := range out.Rows {
		if math.IsInf(out.Rows[i].Delta, 0) {
			out.Rows[i].Delta = math.Copysign(math.MaxFloat64, out.Rows[i].Delta)
		}
	}
	return &out
}

func compareHeadlines(g *gate.Result) []string {
	var out []string
	rows := append([]gate.Row(nil), g.Rows...)
	gate.SortRows(rows)
	n := 0
	for _, r := range rows {
		if r.Status != gate.StatusRegressed && r.Status != gate.StatusImproved {
			continue
		}
		if n == 5 {
			out = append(out, fmt.Sprintf("… and %d more changed figures in the table below.", g.Regressed+g.Improved-n))
			break
		}
		n++
		what := "grew"
		if r.Delta < 0 {
			what = "shrank"
		}
		p := ""
		if r.Kind == gate.KindRatio {
			p = fmt.Sprintf(", p=%.2g", r.P)
		}
		out = append(out, fmt.Sprintf("%s: %s %s %s by %s (%s → %s%s).", r.Status, r.Name, r.Unit, what, strings.TrimPrefix(gate.FormatDelta(r), "+"),
			gate.FormatSummary(r.Base, gate.KindExact), gate.FormatSummary(r.Cur, gate.KindExact), p))
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("No figure changed significantly: %d compared at α=%g with a %s%% minimum effect.", g.Compared, g.Alpha, trim(100*g.MinEffect, 1)))
	}
	out = append(out, g.Warnings...)
	return out
}

func gateTable(g *gate.Result) Section {
	s := Section{ID: "gate", Title: "Gate verdict per metric",
		Intro: "Exact figures are compared exactly; timings only as same-run ratios, with a Mann-Whitney U test and a minimum effect. '~' marks a difference that is not significant or smaller than the minimum effect."}
	if len(g.Rows) == 0 {
		s.Empty = "Nothing to compare: neither run has exact figures or declared ratios."
		return s
	}
	rows := append([]gate.Row(nil), g.Rows...)
	gate.SortRows(rows)
	head := []string{"Status", "Kind", "Name", "Unit", "Baseline", "Current", "Delta", "p", "Notes"}
	// Changed figures stay in view; unchanged ones go in a second table that folds when long.
	changed := Table{Caption: "Changed, missing or new", Head: head, Open: true}
	same := Table{Caption: "Unchanged", Head: head}
	for _, r := range rows {
		t := &changed
		if r.Status == gate.StatusSame {
			t = &same
		}
		class := map[string]string{gate.StatusRegressed: "bad", gate.StatusImproved: "good", gate.StatusSame: "muted", gate.StatusOtherMachine: "muted"}[r.Status]
		p := ""
		if r.Kind == gate.KindRatio && r.Base.N > 0 && r.Cur.N > 0 {
			p = fmt.Sprintf("%.3g", r.P)
		}
		t.Rows = append(t.Rows, []Cell{cls(r.Status, class), txt(r.Kind), txt(r.Name), txt(r.Unit), num(gate.FormatSummary(r.Base, r.Kind)),
			num(gate.FormatSummary(r.Cur, r.Kind)), num(gate.FormatDelta(r)), num(p), txt(strings.Join(r.Warnings, "; "))})
	}
	for _, t := range []Table{changed, same} {
		if len(t.Rows) > 0 {
			s.Tables = append(s.Tables, t)
		}
	}
	return s
}

func (b *builder) ratioOverlays(g *gate.Result) (Section, error) {
	s := Section{ID: "ratios", Title: "Same-run ratios: baseline vs current",
		Intro: "Each plot shows the samples of one ratio in the baseline (grey) and the current run (blue, with the samples as dots), with the gate's verdict in the title. Changed ratios come first."}
	rows := append([]gate.Row(nil), g.Rows...)
	gate.SortRows(rows)
	drawn := 0
	for _, r := range rows {
		if r.Kind != gate.KindRatio || len(r.BaseSamples) == 0 || len(r.CurSamples) == 0 {
			continue
		}
		if drawn == maxOverlays {
			s.Intro += fmt.Sprintf(" Only the first %d are drawn; the table above lists all.", maxOverlays)
			break
		}
		// The name goes into the caption: plot titles do not wrap.
		p := newChart(fmt.Sprintf("%s %s", r.Status, gate.FormatDelta(r)), "", "ratio")
		for i, side := range []struct {
			vals []float64
			col  int
		}{{r.BaseSamples, -1}, {r.CurSamples, 0}} {
			bp, err := plotter.NewBoxPlot(vg.Points(28), float64(i), plotter.Values(side.vals))
			if err != nil {
				return s, fmt.Errorf("plot ratio %s: %w", r.Name, err)
			}
			if side.col < 0 {
				bp.FillColor = grey
			} else {
				bp.FillColor = accent
			}
			p.Add(bp)
			pts := make(plotter.XYs, len(side.vals))
			for j, v := range side.vals {
				pts[j] = plotter.XY{X: float64(i) + 0.25, Y: v}
			}
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return s, fmt.Errorf("plot ratio %s: %w", r.Name, err)
			}
			sc.Radius = vg.Points(1.5)
			p.Add(sc)
		}
		p.NominalX(fmt.Sprintf("baseline n=%d", len(r.BaseSamples)), fmt.Sprintf("current n=%d", len(r.CurSamples)))
		p.key("baseline", "", boxSwatch(grey))
		p.key("current", "", boxSwatch(accent))
		f, err := b.fig(p, r.Name, fmt.Sprintf("%s: %s, delta %s, p=%.3g.", r.Name, r.Status, gate.FormatDelta(r), r.P), 9*vg.Centimeter, 7*vg.Centimeter)
		if err != nil {
			return s, err
		}
		s.Figures = append(s.Figures, f)
		drawn++
	}
	if drawn == 0 {
		s.Empty = "No ratio has samples in both runs."
	}
	return s, nil
}

func (b *builder) latencyOverlays(base, cur *results.Run) (Section, error) {
	s := Section{ID: "overlays", Title: "Latency distributions: baseline vs current",
		Intro: "Percentile curves of each distribution both runs recorded: baseline dashed grey, current solid. Raw timings are not gated (machines differ); read them with the ratios above."}
	var names []string
	for _, h := range cur.Latency {
		if bh := base.FindLatency(h.Name); bh != nil && bh.Count > 0 && h.Count > 0 {
			names = append(names, h.Name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		s.Empty = "No latency distribution is in both runs."
		return s, nil
	}
	if len(names) > maxOverlays {
		s.Intro += fmt.Sprintf(" Only the first %d of %d are drawn.", maxOverlays, len(names))
		names = names[:maxOverlays]
	}
	for _, n := range names {
		bh, ch := base.FindLatency(n), cur.FindLatency(n)
		p := newChart(shortName(n), "percentile", yLabelOf(ch.Kind))
		p.Title.TextStyle.Font.Size = 10
		logAxis(&p.Y, fmtNS)
		logAxis(&p.X, percentileTickLabel)
		for i, h := range []*results.Histogram{bh, ch} {
			xy, err := curveOf(*h)
			if err != nil {
				return s, err
			}
			if len(xy) < 2 {
				continue
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return s, fmt.Errorf("plot overlay %s: %w", n, err)
			}
			l.Width = vg.Points(1.5)
			if i == 0 {
				l.Color = grey
				dashed(l)
				p.key("baseline", "p99 "+fmtTail(h.Count, 99, h.Percentiles.P99), lineSwatch(l.LineStyle))
			} else {
				l.Color = backendColour(h.Backend)
				p.key("current", "p99 "+fmtTail(h.Count, 99, h.Percentiles.P99), lineSwatch(l.LineStyle))
			}
			p.Add(l)
		}
		p.X.Min, p.X.Max = 1, 10000
		fixLogRange(&p.Y)
		f, err := b.fig(p, n, "Baseline vs current percentile curve of "+n+".", 11*vg.Centimeter, 8*vg.Centimeter)
		if err != nil {
			return s, err
		}
		s.Figures = append(s.Figures, f)
	}
	return s, nil
}

func envCompare(base, cur *results.Run) Section {
	s := Section{ID: "environment", Title: "Machines, kernels and versions"}
	t := Table{Head: []string{"", "Baseline", "Current"}}
	add := func(k, a, c string) {
		if a == "" && c == "" {
			return
		}
		class := ""
		if a != c {
			class = "bad"
		}
		t.Rows = append(t.Rows, []Cell{txt(k), txt(a), cls(c, class)})
	}
	add("Schema", base.Schema, cur.Schema)
	add("Started", base.Start.UTC().Format("2006-01-02 15:04 MST"), cur.Start.UTC().Format("2006-01-02 15:04 MST"))
	add("CPU", base.Machine.CPUModel, cur.Machine.CPUModel)
	add("Cores", fmt.Sprint(base.Machine.Cores), fmt.Sprint(cur.Machine.Cores))
	add("Kernel", base.Kernel, cur.Kernel)
	add("Go", base.Tools.Go, cur.Tools.Go)
	add("clang", base.Tools.Clang, cur.Tools.Clang)
	add("iptables", base.Tools.Iptables, cur.Tools.Iptables)
	add("ipset", base.Tools.Ipset, cur.Tools.Ipset)
	add("bpftool", base.Tools.Bpftool, cur.Tools.Bpftool)
	add("Git revision", base.GitRevision, cur.GitRevision)
	add("Seed", fmt.Sprint(base.Seed), fmt.Sprint(cur.Seed))
	add("Backends", strings.Join(base.Config.Backends, ", "), strings.Join(cur.Config.Backends, ", "))
	add("Samples per timing", fmt.Sprint(base.Config.Samples), fmt.Sprint(cur.Config.Samples))
	add("Workload", string(base.Workload), string(cur.Workload))
	s.Tables = append(s.Tables, t)
	return s
}

// shortName turns "Latency/backend=ebpf/pods=100/verdict=allow" into "ebpf 100 allow": plot titles
// do not wrap, and the caption carries the full name.
func shortName(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) > 1 {
		parts = parts[1:]
	}
	for i, p := range parts {
		if _, v, ok := strings.Cut(p, "="); ok {
			parts[i] = v
		}
	}
	return strings.Join(parts, " ")
}

// updateCompare tabulates median apply and convergence times of both runs. Raw timings: they
// compare only when both runs used the same machine, which the environment section shows.
func updateCompare(base, cur *results.Run) Section {
	s := Section{ID: "updates", Title: "Update times: baseline vs current",
		Intro: "Median apply and convergence times per backend, scale and event in both runs. These are raw timings, not gated: compare them only when both runs ran on the same machine."}
	type key struct {
		backend, event, path string
		pods                 int
	}
	bu := map[key]results.Update{}
	for _, u := range base.Updates {
		bu[key{u.Backend, u.Event, u.Path, u.Pods}] = u
	}
	t := Table{Head: []string{"Backend", "Pods", "Event", "Apply baseline", "Apply current", "Current/baseline", "Convergence baseline", "Convergence current"}}
	for _, u := range cur.Updates {
		b, ok := bu[key{u.Backend, u.Event, u.Path, u.Pods}]
		if !ok || len(b.ApplyNS) == 0 || len(u.ApplyNS) == 0 {
			continue
		}
		mb, mc := median(b.ApplyNS), median(u.ApplyNS)
		ratio := "–"
		class := "num"
		if mb > 0 {
			r := mc / mb
			ratio = trim(r, 2) + "×"
			switch {
			case r > 1.5:
				class = "bad num"
			case r < 1/1.5:
				class = "good num"
			}
		}
		conv := func(xs []float64) string {
			if len(xs) == 0 {
				return "–"
			}
			return fmtNS(median(xs))
		}
		t.Rows = append(t.Rows, []Cell{txt(u.Backend), num(fmtCount(float64(u.Pods))), txt(u.Event), num(fmtNS(mb)), num(fmtNS(mc)), cls(ratio, class),
			num(conv(b.ConvergenceNS)), num(conv(u.ConvergenceNS))})
	}
	if len(t.Rows) == 0 {
		s.Empty = "No update timings are in both runs."
		return s
	}
	s.Tables = append(s.Tables, t)
	return s
}
