// Package gate decides whether a run regressed against a baseline run.
//
// Two kinds of figure are gated, and nothing else:
//   - exact figures (metrics flagged Exact: rule counts, map entries, bytes, verified instructions)
//     are compared exactly: any growth regresses;
//   - timings, only as the same-run ratios the runs declare (results.Ratio: a timing over its floor,
//     or one backend over another), because a ratio cancels the speed of the machine, which differs
//     between the run that made the baseline and the run in CI. Ratios are compared with the
//     Mann-Whitney U test (benchmath, as benchstat) at Alpha, or, when both runs declare a
//     ratio Paired (sample i is the same event in both), with the exact Wilcoxon signed-rank
//     test on the per-sample log ratios; they regress only when the difference is also at
//     least MinEffect. Ratios are held only between runs of one machine kind (SameMachine).
//
// Raw timings are not gated: a baseline from another machine says nothing about them.
package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"golang.org/x/perf/benchmath"

	"netpolbench/results"
)

// Options are the gate's thresholds.
type Options struct {
	// Alpha is the significance level of the U test (0.05).
	Alpha float64
	// MinEffect is the smallest relative change of a ratio's median that counts (0.05 = 5%).
	MinEffect float64
}

// DefaultOptions are α = 0.05 and a 5% minimum effect.
func DefaultOptions() Options { return Options{Alpha: 0.05, MinEffect: 0.05} }

// Verdicts of a whole comparison.
const (
	VerdictClean     = "clean"
	VerdictRegressed = "regressed"
	VerdictUnusable  = "no usable baseline"
)

// Statuses of one row.
const (
	StatusSame      = "same"      // exact: equal; ratio: not significant or below MinEffect
	StatusRegressed = "regressed" // worse, significantly and by at least MinEffect
	StatusImproved  = "improved"  // better, significantly and by at least MinEffect
	StatusMissing   = "missing"   // in the baseline, absent from the current run
	StatusNew       = "new"       // in the current run only
	// StatusOtherMachine marks a ratio measured on another kind of machine than the baseline's:
	// a timing over its floor moves with the CPU (an empty BPF program took 28 ns on one model
	// and 5 ns on another), so it is shown but neither passes nor fails the gate.
	StatusOtherMachine = "other machine"
)

// Kinds of row.
const (
	KindExact = "exact"
	KindRatio = "ratio"
)

// ErrNoBaseline is wrapped by every error that means the baseline cannot be used (exit 2).
var ErrNoBaseline = errors.New("no usable baseline")

// Summary is a sample's centre: the exact value (mode) or the median.
type Summary struct {
	Center float64 `json:"center"`
	// Lo and Hi bound the 95% confidence interval of the median (ratios), or the range (exact, and
	// ratios with too few samples for an interval: RangeOnly).
	Lo        float64 `json:"lo"`
	Hi        float64 `json:"hi"`
	RangeOnly bool    `json:"range_only,omitempty"`
	N         int     `json:"n"`
}

// Row is the gate's finding for one figure.
type Row struct {
	// Name is the benchmark or ratio name.
	Name string `json:"name"`
	// Unit is the metric's unit, or "ratio".
	Unit string `json:"unit"`
	Kind string `json:"kind"`
	// Base and Cur summarize the two samples (zero when missing).
	Base Summary `json:"base"`
	Cur  Summary `json:"current"`
	// Delta is Cur.Center/Base.Center - 1 (+Inf when the baseline is 0 and the current is not).
	Delta float64 `json:"delta"`
	// P is the U test's p-value (ratios only; exact rows have P = 0 when they differ, 1 when equal).
	P      float64 `json:"p"`
	Status string  `json:"status"`
	// Warnings explain why a row could not reach a verdict, e.g. too few samples.
	Warnings []string `json:"warnings,omitempty"`
	// BaseSamples and CurSamples are the compared values, for plots.
	BaseSamples []float64 `json:"base_samples,omitempty"`
	CurSamples  []float64 `json:"current_samples,omitempty"`
}

// Result is the whole comparison.
type Result struct {
	Verdict   string  `json:"verdict"`
	Alpha     float64 `json:"alpha"`
	MinEffect float64 `json:"min_effect"`
	Rows      []Row   `json:"rows"`
	// Regressed, Improved and Compared count rows; Missing counts baseline figures the
	// current run lacks, which fail the gate too.
	Regressed int `json:"regressed"`
	Improved  int `json:"improved"`
	Compared  int `json:"compared"`
	Missing   int `json:"missing"`
	// Ungated counts timing metrics that no ratio covers (reported, never gated).
	Ungated int `json:"ungated_timings"`
	// Warnings are about the comparison as a whole (different seeds or workloads, too few samples).
	Warnings []string `json:"warnings,omitempty"`
}

// ExitCode is 0 clean, 1 regressed, 2 no usable baseline.
func (r *Result) ExitCode() int {
	switch r.Verdict {
	case VerdictClean:
		return 0
	case VerdictRegressed:
		return 1
	default:
		return 2
	}
}

// Load reads baseline and current runs; an unreadable or mismatched baseline (or current run) is an
// error wrapping ErrNoBaseline.
func Load(basePath, curPath string) (base, cur *results.Run, err error) {
	base, err = results.Load(basePath)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w (create one with `netpolbench bench` and commit it)", ErrNoBaseline, err)
	}
	cur, err = results.Load(curPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: current run: %w", ErrNoBaseline, err)
	}
	// A partial run lacks the figures of the phases it did not reach, which would read as
	// missing gated figures: say what it is instead.
	for _, r := range []struct {
		what, path string
		run        *results.Run
	}{{"baseline", basePath, base}, {"current run", curPath, cur}} {
		if r.run.Partial() {
			return nil, nil, fmt.Errorf("%w: %s %s is partial (%s): gate a complete run (finish it with `netpolbench bench --resume %s`)",
				ErrNoBaseline, r.what, r.path, stoppedAt(r.run), filepath.Dir(r.path))
		}
	}
	return base, cur, nil
}

// stoppedAt says where a partial run stopped, as far as its file knows.
func stoppedAt(run *results.Run) string {
	p := run.Progress
	switch {
	case p.Stopped != nil && p.Stopped.Phase != "":
		return fmt.Sprintf("stopped in %s: %s", p.Stopped.Phase, p.Stopped.Reason)
	case p.Stopped != nil:
		return "stopped: " + p.Stopped.Reason
	case len(p.Phases) > 0:
		return "last finished phase " + p.Phases[len(p.Phases)-1].ID
	}
	return "no phase finished"
}

// Compare gates cur against base. A comparison with nothing in common has Verdict VerdictUnusable.
func Compare(base, cur *results.Run, opt Options) *Result {
	if opt.Alpha <= 0 || opt.Alpha >= 1 {
		opt.Alpha = DefaultOptions().Alpha
	}
	res := &Result{Alpha: opt.Alpha, MinEffect: opt.MinEffect}
	if base.Seed != cur.Seed {
		res.Warnings = append(res.Warnings, fmt.Sprintf("seeds differ (baseline %d, current %d): exact figures describe different clusters", base.Seed, cur.Seed))
	}
	if !jsonEqual(base.Workload, cur.Workload) {
		res.Warnings = append(res.Warnings, "workload specs differ: exact figures describe different clusters")
	}

	res.Rows = append(res.Rows, compareExact(base, cur)...)
	ratioRows, ratioWarn := compareRatios(base, cur, opt)
	res.Rows = append(res.Rows, ratioRows...)
	res.Warnings = append(res.Warnings, ratioWarn...)
	res.Ungated = countUngated(cur)

	for _, r := range res.Rows {
		switch r.Status {
		case StatusRegressed:
			res.Regressed++
			res.Compared++
		case StatusImproved:
			res.Improved++
			res.Compared++
		case StatusSame:
			res.Compared++
		case StatusMissing:
			res.Missing++
		}
	}
	switch {
	case res.Compared == 0:
		res.Verdict = VerdictUnusable
		res.Warnings = append(res.Warnings, "nothing comparable: no exact figure or declared ratio is in both runs")
	case res.Regressed > 0:
		res.Verdict = VerdictRegressed
	case res.Missing > 0:
		// A figure the baseline gates and the current run lacks (a backend that crashed, was
		// capped or skipped) could hide any regression: it fails like one.
		res.Verdict = VerdictRegressed
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d gated figures of the baseline are missing from the current run", res.Missing))
	default:
		res.Verdict = VerdictClean
	}
	return res
}

func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	return reflect.DeepEqual(x, y)
}

type metricKey struct{ bench, unit string }

func exactMetrics(run *results.Run) (map[metricKey]results.Metric, []metricKey) {
	m := map[metricKey]results.Metric{}
	var order []metricKey
	for _, b := range run.AllBenchmarks() {
		for _, x := range b.Metrics {
			if x.Exact && len(x.Samples) > 0 {
				k := metricKey{b.Name, x.Unit}
				if _, dup := m[k]; !dup {
					order = append(order, k)
				}
				m[k] = x
			}
		}
	}
	return m, order
}

func compareExact(base, cur *results.Run) []Row {
	bm, border := exactMetrics(base)
	cm, corder := exactMetrics(cur)
	var rows []Row
	for _, k := range border {
		b := bm[k]
		row := Row{Name: k.bench, Unit: k.unit, Kind: KindExact, BaseSamples: b.Samples}
		row.Base, row.Warnings = exactSummary(b.Samples, row.Warnings)
		c, ok := cm[k]
		if !ok {
			row.Status = StatusMissing
			rows = append(rows, row)
			continue
		}
		row.CurSamples = c.Samples
		row.Cur, row.Warnings = exactSummary(c.Samples, row.Warnings)
		row.Delta = delta(row.Base.Center, row.Cur.Center)
		worse := row.Cur.Center > row.Base.Center
		if c.HigherIsBetter {
			worse = row.Cur.Center < row.Base.Center
		}
		switch {
		case row.Cur.Center == row.Base.Center:
			row.Status, row.P = StatusSame, 1
		case worse:
			row.Status = StatusRegressed
		default:
			row.Status = StatusImproved
			row.Warnings = append(row.Warnings, "exact figure changed: update the baseline on purpose")
		}
		rows = append(rows, row)
	}
	for _, k := range corder {
		if _, ok := bm[k]; !ok {
			c := cm[k]
			row := Row{Name: k.bench, Unit: k.unit, Kind: KindExact, Status: StatusNew, CurSamples: c.Samples}
			row.Cur, row.Warnings = exactSummary(c.Samples, nil)
			rows = append(rows, row)
		}
	}
	return rows
}

func exactSummary(samples []float64, warn []string) (Summary, []string) {
	s := benchmath.NewSample(append([]float64(nil), samples...), &benchmath.DefaultThresholds)
	sum := benchmath.AssumeExact.Summary(s, 0.95)
	for _, w := range sum.Warnings {
		warn = append(warn, w.Error())
	}
	return Summary{Center: sum.Center, Lo: sum.Lo, Hi: sum.Hi, N: len(samples)}, warn
}

func delta(base, cur float64) float64 {
	switch {
	case base == cur:
		return 0
	case base == 0:
		return math.Inf(1)
	}
	return cur/base - 1
}

func compareRatios(base, cur *results.Run, opt Options) ([]Row, []string) {
	thr := &benchmath.Thresholds{CompareAlpha: opt.Alpha}
	decl := map[string]results.Ratio{}
	var names []string
	for _, r := range base.Ratios {
		if _, ok := decl[r.Name]; !ok {
			names = append(names, r.Name)
		}
		decl[r.Name] = r
	}
	curDecl := map[string]results.Ratio{}
	for _, r := range cur.Ratios {
		curDecl[r.Name] = r
	}
	var rows []Row
	underpowered := 0
	other := !SameMachine(base, cur)
	for _, name := range names {
		br := decl[name]
		cr, ok := curDecl[name]
		if !ok {
			cr = br // the current run may not declare it; its benchmarks may still be there
		}
		row := Row{Name: name, Unit: "ratio", Kind: KindRatio}
		bs, bok := base.RatioSamples(br)
		if !bok {
			row.Status = StatusMissing
			row.Warnings = append(row.Warnings, "baseline lacks the ratio's timings: "+br.Num.String()+" / "+br.Den.String())
			rows = append(rows, row)
			continue
		}
		row.BaseSamples = bs
		row.Base = medianSummary(bs, thr)
		cs, cok := cur.RatioSamples(cr)
		if !cok {
			row.Status = StatusMissing
			rows = append(rows, row)
			continue
		}
		row.CurSamples = cs
		row.Cur = medianSummary(cs, thr)
		row.Delta = delta(row.Base.Center, row.Cur.Center)
		if other {
			row.Status = StatusOtherMachine
			rows = append(rows, row)
			continue
		}
		if br.Paired && cr.Paired && len(bs) == len(cs) {
			// The same events in the same order: each event's change, tested together.
			row.P, row.Delta = signedRank(bs, cs)
			if row.P > opt.Alpha && minSignedRankP(len(bs)) > opt.Alpha {
				row.Warnings = append(row.Warnings, fmt.Sprintf("need at least 6 paired samples for significance at α=%v, have %d", opt.Alpha, len(bs)))
				underpowered++
			}
		} else {
			cmp := benchmath.AssumeNothing.Compare(
				benchmath.NewSample(append([]float64(nil), bs...), thr),
				benchmath.NewSample(append([]float64(nil), cs...), thr))
			row.P = cmp.P
			for _, w := range cmp.Warnings {
				row.Warnings = append(row.Warnings, w.Error())
				// benchmath's only sample-size warning; others (e.g. all values equal) are not about power.
				if strings.HasPrefix(w.Error(), "need ") {
					underpowered++
				}
			}
		}
		worse := row.Delta > 0
		if br.HigherIsBetter {
			worse = row.Delta < 0
		}
		minEffect := max(opt.MinEffect, br.MinEffect)
		switch {
		case row.P >= opt.Alpha || math.Abs(row.Delta) < minEffect:
			row.Status = StatusSame
		case worse:
			row.Status = StatusRegressed
		default:
			row.Status = StatusImproved
		}
		rows = append(rows, row)
	}
	for _, r := range cur.Ratios {
		if _, ok := decl[r.Name]; ok {
			continue
		}
		row := Row{Name: r.Name, Unit: "ratio", Kind: KindRatio, Status: StatusNew}
		if cs, ok := cur.RatioSamples(r); ok {
			row.CurSamples = cs
			row.Cur = medianSummary(cs, thr)
		}
		rows = append(rows, row)
	}
	var warn []string
	if other && len(names) > 0 {
		warn = append(warn, fmt.Sprintf("the baseline was measured on %s and this run on %s: its %d ratios are shown, not gated (gate against a baseline of this machine kind: see testdata/baseline/README.md)",
			machineKind(base), machineKind(cur), len(names)))
	}
	if underpowered > 0 {
		warn = append(warn, fmt.Sprintf("%d ratio(s) have too few samples to ever reach significance at α=%v: collect more samples (see each row)", underpowered, opt.Alpha))
	}
	return rows, warn
}

func medianSummary(s []float64, thr *benchmath.Thresholds) Summary {
	sample := benchmath.NewSample(append([]float64(nil), s...), thr)
	sum := benchmath.AssumeNothing.Summary(sample, 0.95)
	out := Summary{Center: sum.Center, Lo: sum.Lo, Hi: sum.Hi, N: len(s)}
	if math.IsInf(out.Lo, 0) || math.IsInf(out.Hi, 0) {
		// Too few samples for a 95% interval of the median: report the range instead (JSON has
		// no infinity) and say so.
		out.Lo, out.Hi, out.RangeOnly = sample.Values[0], sample.Values[len(sample.Values)-1], true
	}
	return out
}

// countUngated counts timing metrics of run that no declared ratio reads.
func countUngated(run *results.Run) int {
	covered := map[metricKey]bool{}
	for _, r := range run.Ratios {
		covered[metricKey{r.Num.Benchmark, r.Num.Unit}] = true
		covered[metricKey{r.Den.Benchmark, r.Den.Unit}] = true
	}
	n := 0
	for _, b := range run.Benchmarks {
		for _, m := range b.Metrics {
			if !m.Exact && !covered[metricKey{b.Name, m.Unit}] {
				n++
			}
		}
	}
	return n
}

// SameMachine reports whether two runs were measured on the same kind of machine (CPU model and
// cores), so that their same-run ratios of timings can be compared. A run that does not say
// (an old file) counts as the same.
func SameMachine(a, b *results.Run) bool {
	if a.Machine.CPUModel == "" || b.Machine.CPUModel == "" {
		return true
	}
	return a.Machine.CPUModel == b.Machine.CPUModel && a.Machine.Cores == b.Machine.Cores
}

func machineKind(run *results.Run) string {
	return fmt.Sprintf("%q with %d cores", run.Machine.CPUModel, run.Machine.Cores)
}

// SortRows orders rows worst first (regressed, improved, missing, new, same), then by name.
func SortRows(rows []Row) {
	rank := map[string]int{StatusRegressed: 0, StatusImproved: 1, StatusMissing: 2, StatusNew: 3, StatusOtherMachine: 4, StatusSame: 5}
	sort.SliceStable(rows, func(i, j int) bool {
		if rank[rows[i].Status] != rank[rows[j].Status] {
			return rank[rows[i].Status] < rank[rows[j].Status]
		}
		return rows[i].Name < rows[j].Name
	})
}

// Baseline returns a copy of run fit to commit as a baseline: everything the gate and the
// comparison page read, without the histogram encodings and .hgrm paths (large, and the files do
// not travel with it). Comparison pages re-plot a baseline's distributions from its percentiles.
func Baseline(run *results.Run) *results.Run {
	out := *run
	out.Latency = append([]results.Histogram(nil), run.Latency...)
	for i := range out.Latency {
		out.Latency[i].Encoded = ""
		out.Latency[i].HgrmPath = ""
	}
	return &out
}
