package gate_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netpolbench/gate"
	"netpolbench/results"
	"netpolbench/results/resultstest"
)

func synth(mod func(*resultstest.Options)) *results.Run {
	o := resultstest.DefaultOptions()
	if mod != nil {
		mod(&o)
	}
	return resultstest.Run(o)
}

func TestGateVerdicts(t *testing.T) {
	cases := []struct {
		name       string
		cur        func(*resultstest.Options)
		wantExit   int
		wantStatus map[string]string // row name+unit substring → status
	}{
		{name: "identical runs are clean", cur: nil, wantExit: 0},
		{name: "rule count grown by one regresses", cur: func(o *resultstest.Options) { o.ExtraRules = 1 }, wantExit: 1,
			wantStatus: map[string]string{"BenchmarkSize/backend=iptables/pods=100 rules": gate.StatusRegressed}},
		{name: "ratio to floor slowed by 30% regresses", cur: func(o *resultstest.Options) { o.Seed = 7; o.Slowdown = 1.3 }, wantExit: 1,
			wantStatus: map[string]string{"RatioAboveFloor/backend=ebpf/pods=1000/path=new-allow ratio": gate.StatusRegressed}},
		{name: "ratio 30% faster improves and stays clean", cur: func(o *resultstest.Options) { o.Seed = 7; o.Slowdown = 0.7 }, wantExit: 0,
			wantStatus: map[string]string{"RatioAboveFloor/backend=iptables/pods=100/path=new-allow ratio": gate.StatusImproved}},
		{name: "noise and a 1% shift within the effect size are clean", cur: func(o *resultstest.Options) { o.Seed = 9; o.Slowdown = 1.01 }, wantExit: 0},
		{name: "clear slowdown with three samples cannot reach significance", cur: func(o *resultstest.Options) { o.Seed = 7; o.Slowdown = 2; o.Samples = 3 }, wantExit: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := synth(nil)
			if c.name == "clear slowdown with three samples cannot reach significance" {
				base = synth(func(o *resultstest.Options) { o.Samples = 3 })
			}
			res := gate.Compare(base, synth(c.cur), gate.DefaultOptions())
			var table bytes.Buffer
			if err := gate.WriteTable(&table, res, false); err != nil {
				t.Fatal(err)
			}
			if got := res.ExitCode(); got != c.wantExit {
				t.Fatalf("exit %d, want %d; table:\n%s", got, c.wantExit, table.String())
			}
			for key, want := range c.wantStatus {
				found := false
				for _, row := range res.Rows {
					if row.Name+" "+row.Unit == key {
						found = true
						if row.Status != want {
							t.Errorf("%s: status %s, want %s", key, row.Status, want)
						}
					}
				}
				if !found {
					t.Errorf("no row %s; table:\n%s", key, table.String())
				}
			}
		})
	}
}

func TestGateWarnsWhenSamplesCannotReachSignificance(t *testing.T) {
	few := func(o *resultstest.Options) { o.Samples = 3 }
	res := gate.Compare(synth(few), synth(func(o *resultstest.Options) { few(o); o.Slowdown = 3 }), gate.DefaultOptions())
	if res.Regressed != 0 {
		t.Fatalf("3+3 samples flagged %d regressions; the U test cannot reach p<0.05 with them", res.Regressed)
	}
	joined := strings.Join(res.Warnings, "\n")
	if !strings.Contains(joined, "too few samples") {
		t.Fatalf("no too-few-samples warning in %q", joined)
	}
	rowWarned := false
	for _, r := range res.Rows {
		for _, w := range r.Warnings {
			rowWarned = rowWarned || strings.Contains(w, "samples to detect a difference")
		}
	}
	if !rowWarned {
		t.Error("no row carries benchmath's minimum-sample warning")
	}
}

func TestGateExactShrinkIsImprovementNotRegression(t *testing.T) {
	base := synth(func(o *resultstest.Options) { o.ExtraRules = 5 })
	res := gate.Compare(base, synth(nil), gate.DefaultOptions())
	if res.ExitCode() != 0 || res.Improved == 0 {
		t.Fatalf("exit %d with %d improved, want 0 and some improved", res.ExitCode(), res.Improved)
	}
}

func TestGateNothingComparableIsUnusable(t *testing.T) {
	empty := results.New()
	res := gate.Compare(empty, synth(nil), gate.DefaultOptions())
	if res.ExitCode() != 2 || res.Verdict != gate.VerdictUnusable {
		t.Fatalf("empty baseline: verdict %q exit %d, want %q and 2", res.Verdict, res.ExitCode(), gate.VerdictUnusable)
	}
}

func TestGateLoadFailsWithoutUsableBaseline(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := results.Save(good, synth(nil)); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "old.json")
	if err := os.WriteFile(old, []byte(`{"schema":"netpolbench.results/v0","benchmarks":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	partialRun := synth(nil)
	partialRun.Complete = false
	partialRun.Progress = &results.Progress{Phases: []results.Phase{{ID: "pods=100/workload"}},
		Stopped: &results.Stop{Phase: "pods=100/backend=ebpf/sync", Reason: "interrupted by SIGINT"}}
	partial := filepath.Join(dir, "partial.json")
	if err := results.Save(partial, partialRun); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ base, cur string }{
		"missing baseline file":      {filepath.Join(dir, "absent.json"), good},
		"baseline of another schema": {old, good},
		"current of another schema":  {good, old},
		"partial current run":        {good, partial},
		"partial baseline":           {partial, good},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := gate.Load(c.base, c.cur)
			if !errors.Is(err, gate.ErrNoBaseline) {
				t.Fatalf("Load = %v, want ErrNoBaseline", err)
			}
		})
	}
	if _, _, err := gate.Load(good, good); err != nil {
		t.Fatalf("Load of a good pair: %v", err)
	}
}

func TestGateJSONIsMachineReadable(t *testing.T) {
	t.Run("too few samples for an interval", func(t *testing.T) {
		few := func(o *resultstest.Options) { o.Samples = 3 }
		res := gate.Compare(synth(few), synth(few), gate.DefaultOptions())
		var buf bytes.Buffer
		if err := gate.WriteJSON(&buf, res); err != nil {
			t.Fatalf("JSON of a 3-sample comparison: %v", err)
		}
	})
	res := gate.Compare(synth(nil), synth(func(o *resultstest.Options) { o.ExtraRules = 1 }), gate.DefaultOptions())
	var buf bytes.Buffer
	if err := gate.WriteJSON(&buf, res); err != nil {
		t.Fatal(err)
	}
	var back gate.Result
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("gate JSON does not parse: %v", err)
	}
	if back.Verdict != gate.VerdictRegressed || back.Regressed != res.Regressed || len(back.Rows) != len(res.Rows) {
		t.Fatalf("JSON verdict %q regressed %d rows %d, want %q %d %d", back.Verdict, back.Regressed, len(back.Rows), res.Verdict, res.Regressed, len(res.Rows))
	}
}

func TestBaselineDropsEncodingsButStillGatesClean(t *testing.T) {
	run := synth(nil)
	b := gate.Baseline(run)
	for _, h := range b.Latency {
		if h.Encoded != "" || h.HgrmPath != "" {
			t.Fatalf("baseline keeps histogram encoding of %s", h.Name)
		}
	}
	if run.Latency[0].Encoded == "" {
		t.Fatal("Baseline modified the run it was given")
	}
	path := filepath.Join(t.TempDir(), "ci.json")
	if err := results.Save(path, b); err != nil {
		t.Fatal(err)
	}
	loaded, err := results.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if res := gate.Compare(loaded, run, gate.DefaultOptions()); res.ExitCode() != 0 || res.Compared == 0 {
		t.Fatalf("run against its own baseline: %s, %d compared", res.Verdict, res.Compared)
	}
}

// TestGateFailsWhenAGatedFigureIsMissing: a backend that stopped producing its figures (it
// crashed, was capped or skipped) must not pass the gate as clean.
func TestGateFailsWhenAGatedFigureIsMissing(t *testing.T) {
	base, cur := synth(nil), synth(nil)
	var kept []results.Benchmark
	for _, b := range cur.Benchmarks {
		if !strings.Contains(b.Name, "backend=iptables") {
			kept = append(kept, b)
		}
	}
	if len(kept) == len(cur.Benchmarks) {
		t.Fatal("synthetic run has no iptables benchmark to drop")
	}
	cur.Benchmarks = kept
	res := gate.Compare(base, cur, gate.DefaultOptions())
	if res.ExitCode() != 1 || res.Missing == 0 {
		t.Fatalf("exit %d with %d missing, want 1 and some missing", res.ExitCode(), res.Missing)
	}
}

// TestGateRatioMinEffectOverridesTheDefault: a ratio declared noisy counts only past its own
// minimum effect.
func TestGateRatioMinEffectOverridesTheDefault(t *testing.T) {
	base := synth(nil)
	for i := range base.Ratios {
		base.Ratios[i].MinEffect = 0.5
	}
	res := gate.Compare(base, synth(func(o *resultstest.Options) { o.Seed = 7; o.Slowdown = 1.3 }), gate.DefaultOptions())
	if res.ExitCode() != 0 {
		t.Fatalf("30%% slowdown under a 50%% minimum effect: exit %d, want 0", res.ExitCode())
	}
	res = gate.Compare(base, synth(func(o *resultstest.Options) { o.Seed = 7; o.Slowdown = 2 }), gate.DefaultOptions())
	if res.ExitCode() != 1 {
		t.Fatalf("100%% slowdown over a 50%% minimum effect: exit %d, want 1", res.ExitCode())
	}
}

// ratioRun is a run declaring one ratio whose numerator's samples are num and denominator's
// all 1, with one exact figure, measured on cpu.
func ratioRun(cpu string, exact float64, num ...float64) *results.Run {
	run := results.New()
	run.Machine = results.Machine{CPUModel: cpu, Cores: 2}
	den := make([]float64, len(num))
	for i := range den {
		den[i] = 1
	}
	run.Benchmarks = []results.Benchmark{
		{Name: "BenchmarkA", Iters: 1, Metrics: []results.Metric{{Unit: "ns/op", Samples: num}}},
		{Name: "BenchmarkFloor", Iters: 1, Metrics: []results.Metric{{Unit: "ns/op", Samples: den}}},
		{Name: "BenchmarkSize", Iters: 1, Metrics: []results.Metric{{Unit: "entries", Exact: true, Samples: []float64{exact}}}},
	}
	run.Ratios = []results.Ratio{{Name: "RatioA", Num: results.MetricRef{Benchmark: "BenchmarkA", Unit: "ns/op"},
		Den: results.MetricRef{Benchmark: "BenchmarkFloor", Unit: "ns/op"}}}
	return run
}

func TestGateHoldsRatiosOnlyAgainstABaselineOfTheSameMachineKind(t *testing.T) {
	base := ratioRun("CPU A", 10, 10, 10, 10, 10, 10, 10, 10, 10)
	slower := ratioRun("CPU A", 10, 30, 30, 30, 30, 30, 30, 30, 30)
	if res := gate.Compare(base, slower, gate.DefaultOptions()); res.ExitCode() != 1 {
		t.Fatalf("same machine, ratio tripled: exit %d, want 1", res.ExitCode())
	}
	elsewhere := ratioRun("CPU B", 10, 30, 30, 30, 30, 30, 30, 30, 30)
	res := gate.Compare(base, elsewhere, gate.DefaultOptions())
	if res.ExitCode() != 0 || res.Compared != 1 {
		t.Fatalf("another machine: exit %d with %d compared, want 0 with the exact figure compared", res.ExitCode(), res.Compared)
	}
	var status string
	for _, r := range res.Rows {
		if r.Name == "RatioA" {
			status = r.Status
		}
	}
	if status != gate.StatusOtherMachine || len(res.Warnings) == 0 {
		t.Errorf("ratio status %q, warnings %q: want %q and a warning naming both machines", status, res.Warnings, gate.StatusOtherMachine)
	}
	// Exact figures are held on every machine.
	if res := gate.Compare(base, ratioRun("CPU B", 11, 10, 10, 10, 10, 10, 10, 10, 10), gate.DefaultOptions()); res.ExitCode() != 1 {
		t.Errorf("another machine, exact figure grew: exit %d, want 1", res.ExitCode())
	}
}

func TestSpreadGatesOnlyTheRatiosThatHoldStillBetweenRuns(t *testing.T) {
	steady := func(v float64) *results.Run {
		run := ratioRun("CPU A", 10, v, v, v)
		// A second ratio that swings between runs.
		run.Benchmarks = append(run.Benchmarks, results.Benchmark{Name: "BenchmarkB", Iters: 1,
			Metrics: []results.Metric{{Unit: "ns/op", Samples: []float64{v * v, v * v, v * v}}}})
		run.Ratios = append(run.Ratios, results.Ratio{Name: "RatioB", Num: results.MetricRef{Benchmark: "BenchmarkB", Unit: "ns/op"},
			Den: results.MetricRef{Benchmark: "BenchmarkFloor", Unit: "ns/op"}})
		return run
	}
	runs := []*results.Run{steady(10), steady(10.5), steady(11)}
	rows, unequal, err := gate.Spread(runs, 0.25)
	if err != nil {
		t.Fatal(err)
	}
	if len(unequal) != 0 || len(rows) != 2 {
		t.Fatalf("rows %+v, unequal exact %v", rows, unequal)
	}
	// RatioA: 10, 10.5, 11 → spread 1/10.5 = 10 %, 10 % from the first run; RatioB: 100,
	// 110.25, 121 → spread 21/110.25 = 19 %, under the 25 % minimum effect, but 21 % from the
	// first run, over the half of it the gate needs as room.
	if a, b := rows[0], rows[1]; !a.Stable || b.Stable || math.Abs(a.Spread-1/10.5) > 1e-9 || math.Abs(b.Spread-21/110.25) > 1e-9 || math.Abs(b.FromFirst-0.21) > 1e-9 {
		t.Fatalf("rows %+v: want RatioA stable, RatioB not", rows)
	}
	base := gate.StableBaseline(runs[0], rows)
	if len(base.Ratios) != 1 || base.Ratios[0].Name != "RatioA" {
		t.Errorf("baseline gates %+v, want RatioA only", base.Ratios)
	}
	var buf bytes.Buffer
	if err := gate.WriteSpreadTable(&buf, rows, 0.25); err != nil || !strings.Contains(buf.String(), "| RatioB | 100 | 110.25 | 121 | 19 % | 21 % | no |") {
		t.Errorf("table:\n%s(err %v)", buf.String(), err)
	}
	// Runs that agree with each other but not with the first one, which becomes the baseline:
	// 9.5, 12, 12 spread by 21 %, yet lie 26 % from the baseline, which the gate would see.
	apart := []*results.Run{ratioRun("CPU A", 10, 9.5, 9.5, 9.5), ratioRun("CPU A", 10, 12, 12, 12), ratioRun("CPU A", 10, 12, 12, 12)}
	if rows, _, err := gate.Spread(apart, 0.25); err != nil || rows[0].Stable || rows[0].Spread >= 0.25 || math.Abs(rows[0].FromFirst-(12/9.5-1)) > 1e-9 {
		t.Errorf("rows %+v (err %v): want unstable, 26 %% from the first run despite a 21 %% spread", rows, err)
	}
	// An exact figure that moves between runs of one binary is reported.
	runs[2].Benchmarks[2].Metrics[0].Samples = []float64{11}
	if _, unequal, _ := gate.Spread(runs, 0.25); len(unequal) != 1 {
		t.Errorf("unequal exact figures %v, want BenchmarkSize", unequal)
	}
	if _, _, err := gate.Spread([]*results.Run{runs[0], ratioRun("CPU B", 10, 1)}, 0.25); err == nil {
		t.Error("spread over two machine kinds: no error")
	}
}

// pairedRun is ratioRun with its ratio declared paired.
func pairedRun(num ...float64) *results.Run {
	run := ratioRun("CPU A", 10, num...)
	run.Ratios[0].Paired = true
	return run
}

// TestGateTestsPairedRatiosEventByEvent: eight event kinds with ratios from 1 to 128, the same
// events in both runs. Every event 30% slower is a regression the unordered comparison cannot
// see (the two spreads overlap almost entirely) and the paired one must; the same events with
// ±5% noise and no shift are not.
func TestGateTestsPairedRatiosEventByEvent(t *testing.T) {
	var base, slower, noisy []float64
	for i := range 16 {
		v := math.Pow(2, float64(i%8))
		base = append(base, v)
		slower = append(slower, 1.3*v)
		noisy = append(noisy, v*(1+0.05*float64(i%3-1)))
	}
	status := func(res *gate.Result) string {
		for _, r := range res.Rows {
			if r.Name == "RatioA" {
				return r.Status
			}
		}
		return ""
	}
	opt := gate.DefaultOptions()
	opt.MinEffect = 0.25
	if s := status(gate.Compare(ratioRun("CPU A", 10, base...), ratioRun("CPU A", 10, slower...), opt)); s == gate.StatusRegressed {
		t.Fatalf("unordered comparison already finds the shift (%s): the case does not tell the tests apart", s)
	}
	if s := status(gate.Compare(pairedRun(base...), pairedRun(slower...), opt)); s != gate.StatusRegressed {
		t.Errorf("paired, every event 30%% slower: %s, want %s", s, gate.StatusRegressed)
	}
	if s := status(gate.Compare(pairedRun(base...), pairedRun(noisy...), opt)); s != gate.StatusSame {
		t.Errorf("paired, ±5%% noise: %s, want %s", s, gate.StatusSame)
	}
}
