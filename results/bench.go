package results

import (
	"fmt"
	"sort"
	"strings"
)

// Benchmark is one benchmark in Go's vocabulary, with repeated samples of each metric.
type Benchmark struct {
	// Name is the full benchmark name with its sub-benchmark keys, e.g.
	// "BenchmarkVerdict/backend=ebpf/pods=10000/path=new-deny". It starts with "Benchmark" and has
	// no spaces. Keys used across the suite: backend, pods, identities, path, event, verdict, flow.
	Name string `json:"name"`
	// Iters is the iteration count each sample was averaged over (the N column of `go test -bench`);
	// 1 for figures that are not per-iteration. 0 is written as 1.
	Iters int `json:"iters,omitempty"`
	// Metrics are the benchmark's measurements.
	Metrics []Metric `json:"metrics"`
}

// Metric is one unit of a benchmark with its repeated samples.
type Metric struct {
	// Unit is a Go benchmark unit without spaces: "ns/op", "bpf_ns/op", "rules", "entries", "bytes",
	// "insns", "ops", "lost/op", .... A unit means the same thing (and has the same Exact flag) in
	// every benchmark of a run.
	Unit string `json:"unit"`
	// Exact marks a deterministic figure (rule count, map entries, verified instructions, bytes):
	// compared exactly, written with `Unit <unit> assume=exact`. Timings are not exact.
	Exact bool `json:"exact,omitempty"`
	// HigherIsBetter is true for throughput-like units (e.g. "pps"); the default is lower is better.
	HigherIsBetter bool `json:"higher_is_better,omitempty"`
	// Samples are the values of the repeated runs, in the order they ran; sample i of every metric of
	// one benchmark comes from the same run. Exact metrics usually have one sample.
	Samples []float64 `json:"samples"`
}

// Ratio declares a same-run ratio the gate compares between runs: for each sample index i,
// Num.Samples[i] / Den.Samples[i] (index i of both comes from the same repetition, so machine speed
// cancels out). Use it for "metric over its floor" (e.g. the stamped enforcement cost over the
// stamping cost measured with an empty enforcement step) and for "backend over backend" (iptables
// over ebpf at the same scale). When the two sides have different sample counts, every pair
// (i, j) is used instead, so the ratio's sample is the set of all cross ratios.
type Ratio struct {
	// Name identifies the ratio across runs, in benchmark style, e.g.
	// "RatioAboveFloor/backend=ebpf/pods=1000/path=new-allow".
	Name string `json:"name"`
	// Num and Den name the two timings.
	Num MetricRef `json:"num"`
	Den MetricRef `json:"den"`
	// HigherIsBetter inverts the gate's direction; the default is that a growing ratio regresses.
	HigherIsBetter bool `json:"higher_is_better,omitempty"`
	// MinEffect, when above the gate's own minimum effect, is the smallest relative change of
	// this ratio that counts (0.75 = 75%): for ratios whose run-to-run noise is known to be
	// large, so the gate still catches gross regressions without failing on noise.
	MinEffect float64 `json:"min_effect,omitempty"`
	// Paired says that sample i of this ratio is the same thing in every run of one spec and
	// seed (event i of an identical event list): the gate then tests the change sample by
	// sample instead of comparing two unordered distributions.
	Paired bool `json:"paired,omitempty"`
}

// MetricRef names one metric of one benchmark of the same run.
type MetricRef struct {
	Benchmark string `json:"benchmark"`
	Unit      string `json:"unit"`
}

func (r MetricRef) String() string { return r.Benchmark + " " + r.Unit }

// Find returns the benchmark with the given full name, or nil.
func (run *Run) Find(name string) *Benchmark {
	for i := range run.Benchmarks {
		if run.Benchmarks[i].Name == name {
			return &run.Benchmarks[i]
		}
	}
	return nil
}

// Metric returns the metric of b with the given unit, or nil.
func (b *Benchmark) Metric(unit string) *Metric {
	for i := range b.Metrics {
		if b.Metrics[i].Unit == unit {
			return &b.Metrics[i]
		}
	}
	return nil
}

// Lookup returns the metric ref points at, or nil.
func (run *Run) Lookup(ref MetricRef) *Metric {
	b := run.Find(ref.Benchmark)
	if b == nil {
		return nil
	}
	return b.Metric(ref.Unit)
}

// RatioSamples computes the samples of ratio r in run; ok is false when either side is missing
// or has no usable (non-zero denominator) sample.
func (run *Run) RatioSamples(r Ratio) (samples []float64, ok bool) {
	num, den := run.Lookup(r.Num), run.Lookup(r.Den)
	if num == nil || den == nil || len(num.Samples) == 0 || len(den.Samples) == 0 {
		return nil, false
	}
	if len(num.Samples) == len(den.Samples) {
		for i := range num.Samples {
			if den.Samples[i] != 0 {
				samples = append(samples, num.Samples[i]/den.Samples[i])
			}
		}
	} else {
		for _, n := range num.Samples {
			for _, d := range den.Samples {
				if d != 0 {
					samples = append(samples, n/d)
				}
			}
		}
	}
	return samples, len(samples) > 0
}

// AllBenchmarks returns the run's benchmarks plus exact size metrics derived from Sizes
// (BenchmarkSize/backend=…/pods=…[/map=…|/prog=…]) that the run did not already report under the
// same benchmark name and unit. WriteBenchfmt and the gate use it, so a size recorded only in
// Sizes is still gated.
func (run *Run) AllBenchmarks() []Benchmark {
	out := make([]Benchmark, len(run.Benchmarks))
	idx := map[string]int{}
	for i, b := range run.Benchmarks {
		b.Metrics = append([]Metric(nil), b.Metrics...)
		out[i] = b
		if _, dup := idx[b.Name]; !dup {
			idx[b.Name] = i
		}
	}
	for _, b := range sizeBenchmarks(run.Sizes) {
		i, ok := idx[b.Name]
		if !ok {
			idx[b.Name] = len(out)
			out = append(out, b)
			continue
		}
		for _, m := range b.Metrics {
			if out[i].Metric(m.Unit) == nil {
				out[i].Metrics = append(out[i].Metrics, m)
			}
		}
	}
	return out
}

// Validate checks what WriteBenchfmt and the gate rely on: names start with "Benchmark" and have
// no spaces, units have no spaces and keep one Exact flag across the run, ratios point at
// existing metrics, and a recorded progress names each phase once.
func (run *Run) Validate() error {
	var errs []string
	exact := map[string]bool{}
	for _, b := range run.AllBenchmarks() {
		if !strings.HasPrefix(b.Name, "Benchmark") || strings.ContainsAny(b.Name, " \t\n") || len(b.Name) == len("Benchmark") {
			errs = append(errs, fmt.Sprintf("benchmark %q: name must start with Benchmark and have no spaces", b.Name))
		}
		for _, m := range b.Metrics {
			if m.Unit == "" || strings.ContainsAny(m.Unit, " \t\n") {
				errs = append(errs, fmt.Sprintf("benchmark %s: unit %q must be non-empty without spaces", b.Name, m.Unit))
			}
			if e, seen := exact[m.Unit]; seen && e != m.Exact {
				errs = append(errs, fmt.Sprintf("benchmark %s: unit %s is exact in one benchmark and not in another", b.Name, m.Unit))
			}
			exact[m.Unit] = m.Exact
		}
	}
	errs = append(errs, run.validateProgress()...)
	for _, r := range run.Ratios {
		for _, ref := range []MetricRef{r.Num, r.Den} {
			if run.Lookup(ref) == nil {
				errs = append(errs, fmt.Sprintf("ratio %s: no metric %s", r.Name, ref))
			}
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("invalid results: %s", strings.Join(errs, "; "))
	}
	return nil
}
