package gate

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"

	"netpolbench/results"
)

// SpreadRow is one declared ratio's run-to-run spread over repeated runs of one binary.
type SpreadRow struct {
	Name string `json:"name"`
	// Medians are the ratio's median in each run, in the order the runs were given; NaN where
	// a run lacks it.
	Medians []float64 `json:"medians"`
	// Spread is (largest median − smallest) / median of the medians: how far two runs of the same
	// binary moved this ratio apart. +Inf where a run lacks it.
	Spread float64 `json:"spread"`
	// FromFirst is the largest relative distance of any run's median from the first run's:
	// the first run is the one written as the baseline, so this is how far the gate would have
	// seen the others move from it. +Inf where a run lacks it.
	FromFirst float64 `json:"from_first"`
	// Stable is set when Spread is under the minimum effect and FromFirst under half of it: the
	// gate can hold this ratio against the first run without failing on noise. The largest
	// distance a handful of runs show understates what the next run may do, hence the margin.
	Stable bool `json:"stable"`
}

// Spread measures how much each ratio declared by the first run moves across runs of the same
// binary on the same machine, and marks as stable those whose spread is under minEffect and
// whose distance from the first run is under half of it. It
// also returns the exact figures that differ between runs (a deterministic figure that is not
// deterministic is a bug of its own, and cannot be gated either).
func Spread(runs []*results.Run, minEffect float64) (rows []SpreadRow, unequalExact []string, err error) {
	if len(runs) < 2 {
		return nil, nil, errors.New("spread: need at least two runs of the same binary")
	}
	for i, r := range runs[1:] {
		if !SameMachine(runs[0], r) {
			return nil, nil, fmt.Errorf("spread: run %d was measured on %s, run 1 on %s: spread is a property of one machine kind", i+2, machineKind(r), machineKind(runs[0]))
		}
		if r.Seed != runs[0].Seed || !jsonEqual(r.Workload, runs[0].Workload) {
			return nil, nil, fmt.Errorf("spread: run %d has another seed or workload than run 1", i+2)
		}
	}
	for _, ratio := range runs[0].Ratios {
		row := SpreadRow{Name: ratio.Name}
		var present []float64
		for _, run := range runs {
			m := math.NaN()
			if s, ok := run.RatioSamples(ratioIn(run, ratio)); ok {
				m = median(s)
				present = append(present, m)
			}
			row.Medians = append(row.Medians, m)
		}
		row.Spread, row.FromFirst = math.Inf(1), math.Inf(1)
		if len(present) == len(runs) {
			mid := median(present)
			if mid > 0 {
				row.Spread = (slices.Max(present) - slices.Min(present)) / mid
			}
			if first := present[0]; first > 0 {
				row.FromFirst = max(slices.Max(present)/first-1, 1-slices.Min(present)/first)
			}
		}
		row.Stable = row.Spread < minEffect && row.FromFirst < minEffect/2
		rows = append(rows, row)
	}
	first, keys := exactMetrics(runs[0])
	for _, k := range keys {
		for _, run := range runs[1:] {
			other, _ := exactMetrics(run)
			m, ok := other[k]
			if !ok || !slices.Equal(m.Samples, first[k].Samples) {
				unequalExact = append(unequalExact, k.bench+" "+k.unit)
				break
			}
		}
	}
	return rows, unequalExact, nil
}

// ratioIn is run's own declaration of r (its benchmarks may be named the same but the run is
// what says how), or r itself.
func ratioIn(run *results.Run, r results.Ratio) results.Ratio {
	for _, x := range run.Ratios {
		if x.Name == r.Name {
			return x
		}
	}
	return r
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// StableBaseline is Baseline(run) gating only the ratios rows mark stable.
func StableBaseline(run *results.Run, rows []SpreadRow) *results.Run {
	stable := map[string]bool{}
	for _, r := range rows {
		stable[r.Name] = r.Stable
	}
	out := Baseline(run)
	out.Ratios = slices.DeleteFunc(slices.Clone(run.Ratios), func(r results.Ratio) bool { return !stable[r.Name] })
	return out
}

// WriteSpreadTable writes rows as a Markdown table: each ratio's median per run, its spread, its
// largest distance from run 1 (the baseline) and whether it is gated.
func WriteSpreadTable(w io.Writer, rows []SpreadRow, minEffect float64) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "(no ratio declared)")
		return err
	}
	n := len(rows[0].Medians)
	head := "| ratio |"
	rule := "|---|"
	for i := range n {
		head += fmt.Sprintf(" run %d |", i+1)
		rule += "---:|"
	}
	head += fmt.Sprintf(" spread | from run 1 | gated (spread < %.0f %%, from run 1 < %.1f %%) |", 100*minEffect, 50*minEffect)
	rule += "---:|---:|---|"
	if _, err := fmt.Fprintf(w, "%s\n%s\n", head, rule); err != nil {
		return err
	}
	for _, r := range rows {
		line := "| " + r.Name + " |"
		for _, m := range r.Medians {
			if math.IsNaN(m) {
				line += " – |"
			} else {
				line += " " + trimFloat(m) + " |"
			}
		}
		spread, from := "missing in a run", "–"
		if !math.IsInf(r.Spread, 1) {
			spread = fmt.Sprintf("%.0f %%", 100*r.Spread)
		}
		if !math.IsInf(r.FromFirst, 1) {
			from = fmt.Sprintf("%.0f %%", 100*r.FromFirst)
		}
		gated := "no"
		if r.Stable {
			gated = "yes"
		}
		line += " " + spread + " | " + from + " | " + gated + " |"
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}
