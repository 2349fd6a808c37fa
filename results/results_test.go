package results_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"netpolbench/results"
	"netpolbench/results/resultstest"
)

func TestSaveLoadRoundTripKeepsEveryField(t *testing.T) {
	run := resultstest.Run(resultstest.DefaultOptions())
	path := filepath.Join(t.TempDir(), "results.json")
	if err := results.Save(path, run); err != nil {
		t.Fatal(err)
	}
	got, err := results.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Compare through JSON text: RawMessage and time zones survive only as their encodings.
	var a, b bytes.Buffer
	for _, x := range []struct {
		r *results.Run
		w *bytes.Buffer
	}{{run, &a}, {got, &b}} {
		p := filepath.Join(t.TempDir(), "x.json")
		if err := results.Save(p, x.r); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		x.w.Write(data)
	}
	if a.String() != b.String() {
		t.Fatalf("round trip changed the run:\nwant %.400s\ngot  %.400s", a.String(), b.String())
	}
	if len(got.Latency) == 0 || len(got.Updates) == 0 || len(got.Churn) == 0 || len(got.Fits) == 0 || len(got.Sizes) == 0 {
		t.Fatalf("synthetic run lost sections: %d latency, %d updates, %d churn, %d fits, %d sizes",
			len(got.Latency), len(got.Updates), len(got.Churn), len(got.Fits), len(got.Sizes))
	}
}

func TestLoadRejectsUnknownSchema(t *testing.T) {
	cases := map[string]string{
		"older version": `{"schema":"netpolbench.results/v0"}`,
		"no schema":     `{"start":"2026-01-01T00:00:00Z"}`,
		"other tool":    `{"schema":"benchstat/v1"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.json")
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := results.Load(path)
			if !errors.Is(err, results.ErrUnknownSchema) {
				t.Fatalf("Load = %v, want ErrUnknownSchema", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), results.SchemaVersion) {
				t.Errorf("error %q should name the file and the wanted schema", err)
			}
		})
	}
}

func TestLoadMissingFileFails(t *testing.T) {
	if _, err := results.Load(filepath.Join(t.TempDir(), "absent.json")); err == nil || errors.Is(err, results.ErrUnknownSchema) {
		t.Fatalf("Load of a missing file = %v, want a read error", err)
	}
}

func TestBenchfmtRoundTripPreservesSamplesAndExactness(t *testing.T) {
	run := resultstest.Run(resultstest.DefaultOptions())
	var buf bytes.Buffer
	if err := results.WriteBenchfmt(&buf, run); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, want := range []string{"Unit rules assume=exact", "Unit entries assume=exact", "goos: linux", "kernel: 6.18.0-synthetic"} {
		if !strings.Contains(text, want) {
			t.Errorf("benchfmt output lacks %q", want)
		}
	}
	if strings.Contains(text, "Unit ns/op assume=exact") {
		t.Error("timing unit ns/op declared exact")
	}
	// benchstat puts results of differing configuration in separate tables: the commit must not
	// be configuration, or an A/B comparison of two commits shows no deltas.
	if strings.Contains(text, "\ncommit:") || !strings.Contains(text, "# netpolbench "+results.SchemaVersion+" commit "+run.GitRevision) {
		t.Error("commit written as file configuration, or missing from the comment line")
	}
	got, err := results.ReadBenchfmt(strings.NewReader(text), "run.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := run.AllBenchmarks()
	if len(got) != len(want) {
		t.Fatalf("read back %d benchmarks, wrote %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.Name != w.Name {
			t.Fatalf("benchmark %d: name %q, want %q", i, g.Name, w.Name)
		}
		for _, wm := range w.Metrics {
			gm := g.Metric(wm.Unit)
			if gm == nil {
				t.Fatalf("%s: unit %s lost", w.Name, wm.Unit)
			}
			if gm.Exact != wm.Exact {
				t.Errorf("%s %s: exact=%v, want %v", w.Name, wm.Unit, gm.Exact, wm.Exact)
			}
			if !reflect.DeepEqual(gm.Samples, wm.Samples) {
				t.Errorf("%s %s: samples %v, want %v", w.Name, wm.Unit, gm.Samples, wm.Samples)
			}
		}
	}
}

func TestWriteBenchfmtRejectsUnitExactInOneBenchmarkOnly(t *testing.T) {
	run := results.New()
	run.Benchmarks = []results.Benchmark{
		{Name: "BenchmarkA", Metrics: []results.Metric{{Unit: "rules", Exact: true, Samples: []float64{1}}}},
		{Name: "BenchmarkB", Metrics: []results.Metric{{Unit: "rules", Samples: []float64{1}}}},
	}
	if err := results.WriteBenchfmt(&bytes.Buffer{}, run); err == nil {
		t.Fatal("WriteBenchfmt accepted a unit that is exact in one benchmark and not in another")
	}
}

func TestSizesBecomeExactBenchmarksUnlessReported(t *testing.T) {
	run := results.New()
	run.Sizes = []results.Size{{Backend: "iptables", Pods: 100, Iptables: &results.IptablesSize{Rules: 7, Chains: 2, RestoreBytes: 300}}}
	all := run.AllBenchmarks()
	if len(all) != 1 || all[0].Name != "BenchmarkSize/backend=iptables/pods=100" {
		t.Fatalf("derived benchmarks %+v", all)
	}
	if m := all[0].Metric("rules"); m == nil || !m.Exact || m.Samples[0] != 7 {
		t.Fatalf("rules metric %+v, want exact 7", m)
	}
	run.Benchmarks = []results.Benchmark{{Name: "BenchmarkSize/backend=iptables/pods=100", Metrics: []results.Metric{{Unit: "rules", Exact: true, Samples: []float64{9}}}}}
	all = run.AllBenchmarks()
	if len(all) != 1 || all[0].Metric("rules").Samples[0] != 9 {
		t.Fatalf("a reported metric should win over the derived one, got %+v", all)
	}
	if m := all[0].Metric("chains"); m == nil || m.Samples[0] != 2 {
		t.Fatalf("derived metrics the run did not report should be merged in, got %+v", all[0].Metrics)
	}
	if len(run.Benchmarks[0].Metrics) != 1 {
		t.Fatal("AllBenchmarks modified the run's own benchmarks")
	}
}

func TestNftablesSizesBecomeExactBenchmarks(t *testing.T) {
	run := results.New()
	kb := uint64(1 << 20)
	run.Sizes = []results.Size{{Backend: "nftables", Pods: 100, KernelBytes: &kb,
		Nftables: &results.NftablesSize{Rules: 44, Chains: 16, Sets: 18, Elements: 623, Commands: 328, Bytes: 26577}}}
	all := run.AllBenchmarks()
	if len(all) != 1 || all[0].Name != "BenchmarkSize/backend=nftables/pods=100" {
		t.Fatalf("derived benchmarks %+v", all)
	}
	for unit, want := range map[string]float64{"rules": 44, "chains": 16, "sets": 18, "set-elements": 623, "nft-bytes": 26577} {
		if m := all[0].Metric(unit); m == nil || !m.Exact || m.Samples[0] != want {
			t.Errorf("%s metric %+v, want exact %v", unit, m, want)
		}
	}
	// Kernel memory depends on the kernel's allocators: not a figure the gate compares exactly.
	for _, m := range all[0].Metrics {
		if strings.Contains(m.Unit, "kernel") {
			t.Errorf("kernel memory became benchmark metric %q", m.Unit)
		}
	}
	if err := results.WriteBenchfmt(&bytes.Buffer{}, run); err != nil {
		t.Fatal(err)
	}
}

// TestKernelBytesIsNullUnlessMeasured: a size without a kernel measurement says null, one that
// measured 0 says 0, and a run written before the field existed loads with null.
func TestKernelBytesIsNullUnlessMeasured(t *testing.T) {
	zero := uint64(0)
	run := results.New()
	run.Sizes = []results.Size{{Backend: "compiled", Pods: 1, KernelNote: "no kernel state"}, {Backend: "ebpf", Pods: 1, KernelBytes: &zero}}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := results.Save(path, run); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"kernel_bytes": null`)) || !bytes.Contains(data, []byte(`"kernel_bytes": 0`)) {
		t.Fatalf("want one null and one 0 kernel_bytes in\n%s", data)
	}
	got, err := results.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sizes[0].KernelBytes != nil || got.Sizes[1].KernelBytes == nil || *got.Sizes[1].KernelBytes != 0 {
		t.Fatalf("loaded kernel bytes %v, %v", got.Sizes[0].KernelBytes, got.Sizes[1].KernelBytes)
	}
	old := `{"schema":"` + results.SchemaVersion + `","start":"2026-01-01T00:00:00Z","sizes":[{"backend":"iptables","pods":100,"iptables":{"rules":7,"chains":2,"restore_bytes":300}}]}`
	r, err := results.Decode([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sizes) != 1 || r.Sizes[0].KernelBytes != nil || r.Sizes[0].Nftables != nil || r.Sizes[0].Iptables.Rules != 7 {
		t.Fatalf("an older run loaded as %+v", r.Sizes)
	}
}

func TestFitPowerLawRecoversExponent(t *testing.T) {
	cases := []struct {
		name string
		a    float64
	}{{"quadratic", 2}, {"flat", 0}, {"linear", 1}, {"sqrt", 0.5}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var pts []results.Point
			for _, x := range []float64{100, 1000, 10000, 100000} {
				pts = append(pts, results.Point{X: x, Y: 3 * math.Pow(x, c.a)})
			}
			f, err := results.FitPowerLaw("b", "m", "pods", pts)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(f.Exponent-c.a) > 1e-9 || math.Abs(f.R2-1) > 1e-9 {
				t.Fatalf("exponent %v R² %v, want %v and 1", f.Exponent, f.R2, c.a)
			}
		})
	}
	if _, err := results.FitPowerLaw("b", "m", "pods", []results.Point{{X: 10, Y: 1}, {X: 10, Y: 2}}); !errors.Is(err, results.ErrTooFewPoints) {
		t.Fatalf("fit over one distinct x = %v, want ErrTooFewPoints", err)
	}
}

func TestHistogramEncodingReplotsAndHgrmHasPercentiles(t *testing.T) {
	h := hdrhistogram.New(1, 1_000_000, 3)
	for v := int64(1); v <= 1000; v++ {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := results.FromHdr("Latency/backend=x", h)
	if err != nil {
		t.Fatal(err)
	}
	if hist.Count != 1000 || hist.Percentiles.P50 < 495 || hist.Percentiles.P50 > 505 || hist.Max < 999 {
		t.Fatalf("summary %+v", hist)
	}
	back, err := hist.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if back.TotalCount() != 1000 || back.ValueAtQuantile(99) != h.ValueAtQuantile(99) {
		t.Fatalf("decoded histogram differs: count %d p99 %d", back.TotalCount(), back.ValueAtQuantile(99))
	}
	floor := results.Histogram{Name: "floor", Percentiles: results.Percentiles{P50: 600, P90: 10, P99: 10, P999: 10}}
	hist.SetFloor(&floor)
	if hist.AboveFloor.P50 != 0 || hist.AboveFloor.P99 != hist.Percentiles.P99-10 {
		t.Fatalf("above floor %+v", hist.AboveFloor)
	}
	var buf bytes.Buffer
	if err := results.WriteHgrm(&buf, h); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Percentile") || strings.Count(buf.String(), "\n") < 10 {
		t.Fatalf("hgrm output too short:\n%s", buf.String())
	}
}

func TestDeclareRatiosPairsSiblingsByBackend(t *testing.T) {
	run := results.New()
	timing := func(name string) results.Benchmark {
		return results.Benchmark{Name: name, Metrics: []results.Metric{{Unit: "ns/op", Samples: []float64{2, 4}}, {Unit: "insns", Exact: true, Samples: []float64{10}}}}
	}
	run.Benchmarks = []results.Benchmark{
		timing("BenchmarkVerdict/backend=floor/pods=100"),
		timing("BenchmarkVerdict/backend=ebpf/pods=100"),
		timing("BenchmarkVerdict/backend=iptables/pods=100"),
		timing("BenchmarkVerdict/backend=iptables/pods=1000"), // no floor or ebpf sibling
	}
	if n := run.DeclareFloorRatios(); n != 2 {
		t.Fatalf("declared %d floor ratios, want 2 (ebpf and iptables at 100 pods): %+v", n, run.Ratios)
	}
	if n := run.DeclareBackendRatios("ebpf"); n != 1 {
		t.Fatalf("declared %d backend ratios, want 1 (iptables over ebpf at 100 pods)", n)
	}
	if n := run.DeclareFloorRatios(); n != 0 {
		t.Fatalf("declaring again added %d ratios", n)
	}
	want := map[string]string{
		"RatioToFloor/Verdict/backend=ebpf/pods=100/unit=ns-per-op":               "BenchmarkVerdict/backend=floor/pods=100",
		"RatioToFloor/Verdict/backend=iptables/pods=100/unit=ns-per-op":           "BenchmarkVerdict/backend=floor/pods=100",
		"RatioBackend/Verdict/backend=iptables-over-ebpf/pods=100/unit=ns-per-op": "BenchmarkVerdict/backend=ebpf/pods=100",
	}
	for _, r := range run.Ratios {
		den, ok := want[r.Name]
		if !ok || r.Den.Benchmark != den || r.Num.Unit != "ns/op" {
			t.Errorf("unexpected ratio %+v", r)
		}
		if s, ok := run.RatioSamples(r); !ok || len(s) != 2 || s[0] != 1 {
			t.Errorf("ratio %s samples %v", r.Name, s)
		}
	}
	if err := run.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTailPercentilesNeedTenSamplesBeyondThem(t *testing.T) {
	for _, c := range []struct {
		count          int64
		p90, p99, p999 bool
	}{
		{99, false, false, false},
		{100, true, false, false},
		{999, true, false, false},
		{1000, true, true, false},
		{10000, true, true, true},
	} {
		h := hdrhistogram.New(1, 1_000_000, 3)
		for v := int64(1); v <= c.count; v++ {
			if err := h.RecordValue(v); err != nil {
				t.Fatal(err)
			}
		}
		p := results.PercentilesOf(h)
		if !p.Has(50) || p.Has(90) != c.p90 || p.Has(99) != c.p99 || p.Has(99.9) != c.p999 {
			t.Errorf("%d values: %+v, want p90 %v p99 %v p99.9 %v", c.count, p, c.p90, c.p99, c.p999)
		}
	}
	// Above a floor, a percentile either side lacks is left out, not read as the other's value.
	h := results.Histogram{Percentiles: results.Percentiles{P50: 500, P90: 900, P99: 990}}
	h.SetFloor(&results.Histogram{Name: "floor", Percentiles: results.Percentiles{P50: 100, P90: 200}})
	if got := *h.AboveFloor; got != (results.Percentiles{P50: 400, P90: 700}) {
		t.Errorf("above floor %+v, want p50 400 and p90 700 only", got)
	}
}

func TestFitGrowthIsTheRangeOfXToTheExponent(t *testing.T) {
	f := results.Fit{Points: []results.Point{{X: 100, Y: 1}, {X: 1000, Y: 2}, {X: 100000, Y: 3}, {X: 0, Y: 5}}}
	if g := f.Growth(0.1); math.Abs(g-math.Pow(1000, 0.1)) > 1e-9 {
		t.Errorf("growth %g, want %g (1,000× the x at exponent 0.1)", g, math.Pow(1000, 0.1))
	}
	if f.HasInterval() {
		t.Error("a fit without bounds says it has an interval")
	}
	f.ExponentLo, f.ExponentHi = -0.1, 0.2
	if !f.HasInterval() {
		t.Error("a fit with bounds says it has none")
	}
}
