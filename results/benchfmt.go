package results

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchunit"
)

// WriteBenchfmt writes the run's benchmarks (AllBenchmarks) in Go's benchmark format, which
// benchstat reads unchanged: a comment naming the schema and commit, file configuration lines
// (goos, pkg, cpu, kernel, seed), one `Unit <unit> assume=exact` line per exact unit (and `better=higher` where it
// applies), then one line per benchmark and sample index with every metric that has that sample.
// benchstat groups the lines of one name as repeated runs (like -count).
func WriteBenchfmt(w io.Writer, run *Run) error {
	if err := run.Validate(); err != nil {
		return fmt.Errorf("write benchfmt: %w", err)
	}
	bw := benchfmt.NewWriter(w)
	benches := run.AllBenchmarks()

	written := map[benchfmt.UnitMetadataKey]bool{}
	for _, b := range benches {
		for _, m := range b.Metrics {
			_, tidy := benchunit.Tidy(1, m.Unit)
			var meta []benchfmt.UnitMetadata
			if m.Exact {
				meta = append(meta, benchfmt.UnitMetadata{UnitMetadataKey: benchfmt.UnitMetadataKey{Unit: tidy, Key: "assume"}, OrigUnit: m.Unit, Value: "exact"})
			}
			if m.HigherIsBetter {
				meta = append(meta, benchfmt.UnitMetadata{UnitMetadataKey: benchfmt.UnitMetadataKey{Unit: tidy, Key: "better"}, OrigUnit: m.Unit, Value: "higher"})
			}
			for i := range meta {
				if written[meta[i].UnitMetadataKey] {
					continue
				}
				written[meta[i].UnitMetadataKey] = true
				if err := bw.Write(&meta[i]); err != nil {
					return fmt.Errorf("write benchfmt: %w", err)
				}
			}
		}
	}

	cfg := []benchfmt.Config{
		{Key: "goos", Value: []byte("linux"), File: true},
		{Key: "pkg", Value: []byte("netpolbench/bench"), File: true},
	}
	add := func(k, v string) {
		if v != "" {
			cfg = append(cfg, benchfmt.Config{Key: k, Value: []byte(v), File: true})
		}
	}
	add("cpu", run.Machine.CPUModel)
	add("kernel", run.Kernel)
	add("seed", strconv.FormatInt(run.Seed, 10))
	// The commit and schema go in a comment line, not in file configuration: benchstat splits
	// results whose configuration differs into separate tables, and an A/B comparison is between
	// two commits by definition.
	if _, err := fmt.Fprintf(w, "# netpolbench %s commit %s\n", run.Schema, orUnknown(run.GitRevision)); err != nil {
		return fmt.Errorf("write benchfmt: %w", err)
	}

	for _, b := range benches {
		n := 0
		for _, m := range b.Metrics {
			n = max(n, len(m.Samples))
		}
		iters := max(b.Iters, 1)
		for i := 0; i < n; i++ {
			res := &benchfmt.Result{Config: cfg, Name: benchfmt.Name(strings.TrimPrefix(b.Name, "Benchmark")), Iters: iters}
			for _, m := range b.Metrics {
				if i < len(m.Samples) {
					res.Values = append(res.Values, benchfmt.Value{Value: m.Samples[i], Unit: m.Unit})
				}
			}
			if err := bw.Write(res); err != nil {
				return fmt.Errorf("write benchfmt: %w", err)
			}
		}
	}
	return nil
}

// ReadBenchfmt reads Go benchmark-format text back into benchmarks: lines of one name become
// samples in file order, units keep their original spelling (ns/op stays ns/op), and units
// declared `assume=exact` are marked Exact.
func ReadBenchfmt(r io.Reader, fileName string) ([]Benchmark, error) {
	br := benchfmt.NewReader(r, fileName)
	var out []Benchmark
	idx := map[string]int{}
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.SyntaxError:
			return nil, fmt.Errorf("read benchfmt: %w", rec)
		case *benchfmt.Result:
			name := "Benchmark" + rec.Name.String()
			i, ok := idx[name]
			if !ok {
				i = len(out)
				idx[name] = i
				out = append(out, Benchmark{Name: name, Iters: rec.Iters})
			}
			b := &out[i]
			for _, v := range rec.Values {
				unit, val := v.Unit, v.Value
				if v.OrigUnit != "" {
					unit, val = v.OrigUnit, v.OrigValue
				}
				m := b.Metric(unit)
				if m == nil {
					b.Metrics = append(b.Metrics, Metric{Unit: unit})
					m = &b.Metrics[len(b.Metrics)-1]
				}
				m.Samples = append(m.Samples, val)
			}
		}
	}
	if err := br.Err(); err != nil {
		return nil, fmt.Errorf("read benchfmt: %w", err)
	}
	units := br.Units()
	for i := range out {
		for j := range out[i].Metrics {
			m := &out[i].Metrics[j]
			if u := units.Get(m.Unit, "assume"); u != nil && u.Value == "exact" {
				m.Exact = true
			}
			if u := units.Get(m.Unit, "better"); u != nil && u.Value == "higher" {
				m.HigherIsBetter = true
			}
		}
	}
	return out, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
