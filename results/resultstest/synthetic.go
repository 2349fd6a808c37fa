// Package resultstest builds synthetic but plausible runs for tests of the report and the gate.
// The figures are generated from simple models (rules ∝ pods², entries ∝ identities², flat eBPF
// cost, iptables cost growing with rules), never measured: nothing here may be shown as a result.
package resultstest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"netpolbench/results"
)

// Options shape a synthetic run.
type Options struct {
	Seed    uint64
	Pods    []int
	Samples int
	// Slowdown multiplies every iptables and ebpf timing (not the floor), to simulate a regression.
	Slowdown float64
	// ExtraRules is added to every iptables rule count, to simulate a grown ruleset.
	ExtraRules int
}

// DefaultOptions is a small sweep with enough samples for the U test to reach significance.
func DefaultOptions() Options {
	return Options{Seed: 1, Pods: []int{100, 1000, 10000}, Samples: 10, Slowdown: 1}
}

// Run returns a synthetic run with every section filled.
func Run(o Options) *results.Run {
	if o.Slowdown == 0 {
		o.Slowdown = 1
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	noise := func(v float64) float64 { return v * (1 + 0.02*rng.NormFloat64()) }
	run := results.New()
	run.Start = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	run.Duration = 7 * time.Minute
	run.Machine = results.Machine{CPUModel: "Synthetic CPU @ 2.0GHz", Cores: 2, MemoryBytes: 24 << 30}
	run.Kernel = "6.18.0-synthetic"
	run.Tools = results.Tools{Go: "go1.26.0", Clang: "clang version 19.1.7", Iptables: "iptables v1.8.9 (nf_tables)",
		Ipset: "ipset v7.17", Bpftool: "bpftool v7.5.0"}
	run.GitRevision = "0123456789ab"
	run.Seed = int64(o.Seed)
	run.Workload = json.RawMessage(`{"namespaces":10,"label_sets":20,"policies_per_namespace":3}`)
	run.Config = results.Config{Backends: []string{"ebpf", "iptables"}, Pods: o.Pods, Duration: 5 * time.Second, Samples: o.Samples}
	run.Caps = []results.Cap{{Backend: "iptables", Pods: 100000, Skipped: true, Reason: "synthetic cap: restore would exceed the time budget", Limit: "max 10000 pods"}}
	run.PeakRSSBytes = 512 << 20
	run.Notes = []string{"synthetic data for tests"}

	for _, pods := range o.Pods {
		ids := 20 + pods/100
		rules := pods*pods/50 + o.ExtraRules
		floor := 60.0
		ebpf := 90.0
		ipt := 80 + 0.02*float64(rules)
		base := fmt.Sprintf("/pods=%d/path=new-allow", pods)
		mk := func(center float64, slow float64) []float64 {
			s := make([]float64, o.Samples)
			for i := range s {
				s[i] = noise(center * slow)
			}
			return s
		}
		run.Benchmarks = append(run.Benchmarks,
			results.Benchmark{Name: "BenchmarkVerdict/backend=floor" + base, Iters: 10000, Metrics: []results.Metric{{Unit: "ns/op", Samples: mk(floor, 1)}}},
			results.Benchmark{Name: "BenchmarkVerdict/backend=ebpf" + base, Iters: 10000, Metrics: []results.Metric{{Unit: "ns/op", Samples: mk(ebpf, o.Slowdown)}}},
			results.Benchmark{Name: "BenchmarkVerdict/backend=iptables" + base, Iters: 10000, Metrics: []results.Metric{{Unit: "ns/op", Samples: mk(ipt, o.Slowdown)}}},
		)
		for _, be := range []string{"ebpf", "iptables"} {
			run.Ratios = append(run.Ratios, results.Ratio{
				Name: "RatioAboveFloor/backend=" + be + base,
				Num:  results.MetricRef{Benchmark: "BenchmarkVerdict/backend=" + be + base, Unit: "ns/op"},
				Den:  results.MetricRef{Benchmark: "BenchmarkVerdict/backend=floor" + base, Unit: "ns/op"},
			})
		}
		run.Sizes = append(run.Sizes,
			results.Size{Backend: "ebpf", Pods: pods, Identities: ids,
				Maps: []results.MapSize{
					{Name: "policy", Type: "Hash", Entries: uint64(ids * ids / 4), MaxEntries: 1 << 20, KeyBytes: 16, ValueBytes: 8, MemlockBytes: uint64(ids*ids/4*24 + 4096)},
					{Name: "ipcache", Type: "LPMTrie", Entries: uint64(pods + 8), MaxEntries: 1 << 20, KeyBytes: 8, ValueBytes: 8},
				},
				Programs: []results.ProgramSize{{Name: "policy_ingress", Insns: 412, JitedBytes: 2311}}},
			results.Size{Backend: "iptables", Pods: pods, Identities: ids,
				Iptables: &results.IptablesSize{Rules: uint64(rules), Chains: uint64(pods/10 + 5), RestoreBytes: uint64(rules * 96), RestoreLines: uint64(rules + pods/10 + 10)}},
		)
		for bi, be := range []string{"floor", "ebpf", "iptables"} {
			center := []float64{floor, floor + ebpf - 50, floor + ipt - 50}[bi]
			for _, verdict := range []string{results.VerdictAllow, results.VerdictDeny} {
				h := hdrhistogram.New(1, 10_000_000, 3)
				for range 5000 {
					v := center * math.Exp(0.25*rng.NormFloat64())
					if be != "floor" {
						v *= o.Slowdown
					}
					if err := h.RecordValue(int64(v)); err != nil {
						panic(err)
					}
				}
				name := fmt.Sprintf("Latency/backend=%s/pods=%d/verdict=%s/flow=new", be, pods, verdict)
				hist, err := results.FromHdr(name, h)
				if err != nil {
					panic(err)
				}
				hist.Backend, hist.Pods, hist.Verdict, hist.Flow, hist.Kind = be, pods, verdict, results.FlowNew, results.KindStampDelta
				hist.HgrmPath = fmt.Sprintf("hgrm/%s-%d-%s.hgrm", be, pods, verdict)
				if be != "floor" {
					hist.SetFloor(run.FindLatency(fmt.Sprintf("Latency/backend=floor/pods=%d/verdict=%s/flow=new", pods, verdict)))
				}
				run.Latency = append(run.Latency, hist)
			}
		}
		for _, ev := range results.EventTypes {
			for _, be := range []string{"ebpf", "iptables"} {
				apply := 20e3 // 20 µs of map updates
				ops := 3.0
				if be == "iptables" {
					apply = 2e6 + 400*float64(rules)
					ops = float64(rules)
				}
				u := results.Update{Backend: be, Pods: pods, Event: ev, Path: map[string]string{"ebpf": "map-diff", "iptables": "full-restore"}[be],
					OpsUnit: map[string]string{"ebpf": "map ops", "iptables": "restore lines"}[be]}
				for range o.Samples {
					u.ApplyNS = append(u.ApplyNS, noise(apply))
					u.KernelOps = append(u.KernelOps, ops)
					u.ConvergenceNS = append(u.ConvergenceNS, noise(apply*1.5))
				}
				run.Updates = append(run.Updates, u)
			}
		}
	}
	largest := o.Pods[len(o.Pods)-1]
	for _, be := range []string{"ebpf", "iptables"} {
		tl := results.ChurnTimeline{Backend: be, Pods: largest, IntervalMS: 100, RatePPS: 10000}
		for i := range 50 {
			p := results.ChurnPoint{TMS: float64(i) * 100, Sent: 1000, P50US: noise(40), P99US: noise(90)}
			p.MaxUS = p.P99US * 1.5
			if be == "iptables" && i%10 == 5 {
				p.Lost, p.P99US, p.MaxUS = 37, 2500, 9000
			}
			tl.Points = append(tl.Points, p)
		}
		for i := 5; i < 50; i += 10 {
			tl.Events = append(tl.Events, results.ChurnMark{TMS: float64(i)*100 + 10, Event: results.EventRelabel, DurationMS: 40, Detail: "relabel 10 pods"})
		}
		run.Churn = append(run.Churn, tl)
	}
	var rulePts, entryPts, p99Pts []results.Point
	for _, s := range run.Sizes {
		switch {
		case s.Iptables != nil:
			rulePts = append(rulePts, results.Point{X: float64(s.Pods), Y: float64(s.Iptables.Rules)})
		case len(s.Maps) > 0:
			entryPts = append(entryPts, results.Point{X: float64(s.Identities), Y: float64(s.Maps[0].Entries)})
		}
	}
	for _, h := range run.Latency {
		if h.Backend == "ebpf" && h.Verdict == results.VerdictAllow {
			p99Pts = append(p99Pts, results.Point{X: float64(h.Pods), Y: h.AboveFloor.P99})
		}
	}
	for _, f := range []struct {
		be, metric, x string
		pts           []results.Point
	}{{"iptables", "rules", "pods", rulePts}, {"ebpf", "entries", "identities", entryPts}, {"ebpf", "p99 ns above floor", "pods", p99Pts}} {
		fit, err := results.FitPowerLaw(f.be, f.metric, f.x, f.pts)
		if err == nil {
			run.Fits = append(run.Fits, fit)
		}
	}
	run.Claims = []results.Claim{
		{ID: "rules-quadratic", Statement: "iptables rules grow as O(pods²)", Status: results.ClaimConfirmed, Evidence: "synthetic", Figures: map[string]float64{"exponent": 2}},
		{ID: "pod-add-no-map-change", Statement: "adding a pod with an existing label set changes no policy map entry", Status: results.ClaimNotMeasured},
	}
	return run
}
