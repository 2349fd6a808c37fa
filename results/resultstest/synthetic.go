// Package resultstest builds synthetic but plausible runs for tests of the report and the gate.
// The figures are generated from simple models (rules ∝ pods², entries ∝ identities², flat eBPF
// cost, iptables cost growing with rules, set-based backends in between), never measured:
// nothing here may be shown as a result.
package resultstest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"netpolbench/results"
)

// Options shape a synthetic run.
type Options struct {
	Seed    uint64
	Pods    []int
	Samples int
	// Slowdown multiplies every backend timing (not the floor), to simulate a regression.
	Slowdown float64
	// ExtraRules is added to every iptables rule count, to simulate a grown ruleset.
	ExtraRules int
	// Backends are the backends measured, in the sweep's order; nil means ebpf and iptables.
	// Known models: ebpf and ebpf-cilium (identity maps), iptables (per-IP rules), ipset (sets),
	// nftables (verdict maps and sets), compiled (the control: sizes and updates only). Any
	// other name gets the set model.
	Backends []string
	// Caps are recorded as given. A skipped cap leaves its backend out at its scale; a limited
	// one stops that backend's churn after the first four event kinds, as a churn phase that
	// ran out of time does.
	Caps []results.Cap
	// Cluster, when set, makes the run a benchmark of a user's cluster dump at that path (bench
	// --cluster): one scale, Pods[0], recorded the way the runner records such a run.
	Cluster string
	// EndToEnd are the scales of the end-to-end phase (churn through an API server at 20 and
	// 100 events a second), for every backend not skipped there; nil: none.
	EndToEnd []int
}

// DefaultOptions is a small sweep with enough samples for the U test to reach significance.
func DefaultOptions() Options {
	return Options{Seed: 1, Pods: []int{100, 1000, 10000}, Samples: 10, Slowdown: 1}
}

// SweepOptions mirrors the default `make bench` sweep: five scales, the control and five
// dataplanes, the iptables family skipped at 10k pods and beyond, iptables' churn cut short at
// 3k pods, and the end-to-end phase at 1k and 10k pods.
func SweepOptions() Options {
	o := Options{Seed: 1, Pods: []int{100, 1000, 3000, 10000, 100000}, Samples: 5, Slowdown: 1,
		Backends: []string{"compiled", "ebpf", "ebpf-cilium", "iptables", "ipset", "nftables"}, EndToEnd: []int{1000, 10000}}
	for _, b := range []string{"iptables", "ipset"} {
		for _, p := range []int{10000, 100000} {
			o.Caps = append(o.Caps, results.Cap{Backend: b, Pods: p, Skipped: true, Limit: "max 500000 per-IP rules or set members",
				Reason: "synthetic cap: the state expands to more per-IP rules than the run's budget"})
		}
	}
	o.Caps = append(o.Caps, results.Cap{Backend: "iptables", Pods: 3000, Limit: "60s per phase",
		Reason: "synthetic cap: churn stopped at scale-down event 1"})
	return o
}

// model is how one backend's synthetic figures grow.
type model struct {
	name    string
	control bool
	// packet is the stamped per-packet cost above the floor's centre at a scale, in ns.
	packet func(pods, rules int) float64
	// apply is one update's apply time and kernel operations.
	apply func(pods, rules int) (ns, ops float64)
	path  string
	unit  string
	size  func(pods, ids, rules int) results.Size
}

func modelOf(name string) model {
	ebpfSize := func(pods, ids, _ int) results.Size {
		return results.Size{Identities: ids,
			Maps: []results.MapSize{
				{Name: "policy", Type: "Hash", Entries: uint64(ids * ids / 4), MaxEntries: 1 << 20, KeyBytes: 16, ValueBytes: 8, MemlockBytes: uint64(ids*ids/4*24 + 4096)},
				{Name: "ipcache", Type: "LPMTrie", Entries: uint64(pods + 8), MaxEntries: 1 << 20, KeyBytes: 8, ValueBytes: 8},
			},
			Programs: []results.ProgramSize{{Name: "policy_ingress", Insns: 412, JitedBytes: 2311}}}
	}
	switch name {
	case "ebpf", "ebpf-cilium":
		slower := map[string]float64{"ebpf": 1, "ebpf-cilium": 1.25}[name]
		return model{name: name, path: "map-diff", unit: "map ops", size: ebpfSize,
			packet: func(int, int) float64 { return 90 * slower },
			apply:  func(int, int) (float64, float64) { return 20e3 * slower, 3 }}
	case "iptables":
		return model{name: name, path: "full-restore", unit: "restore lines",
			packet: func(_, rules int) float64 { return 80 + 0.02*float64(rules) },
			apply:  func(_, rules int) (float64, float64) { return 2e6 + 400*float64(rules), float64(rules) },
			size: func(pods, ids, rules int) results.Size {
				return results.Size{Identities: ids, Iptables: &results.IptablesSize{Rules: uint64(rules), Chains: uint64(pods/10 + 5),
					RestoreBytes: uint64(rules * 96), RestoreLines: uint64(rules + pods/10 + 10)}}
			}}
	case "nftables":
		// Verdict maps and shared peer sets: rules with the rule sets, elements a little faster
		// than pods, cost flat but above eBPF's.
		return model{name: name, path: "partial-transaction", unit: "nft commands",
			packet: func(pods, _ int) float64 { return 110 + 2*math.Log(float64(pods)) },
			apply:  func(pods, _ int) (float64, float64) { return 2e6 + 20*float64(pods), 4 },
			size: func(pods, ids, _ int) results.Size {
				elements := uint64(math.Pow(float64(pods), 1.3)) + uint64(3*pods)
				kernel := 90 * elements
				return results.Size{Identities: ids, Nftables: &results.NftablesSize{Rules: uint64(pods/4 + 5), Chains: uint64(pods/10 + 1),
					Sets: uint64(pods/10 + 3), Elements: elements, SelfElements: uint64(pods), DispatchElements: uint64(2 * pods),
					PodElements: elements - uint64(3*pods), Commands: elements/1000 + uint64(pods/2), Bytes: elements * 14},
					KernelBytes: &kernel, KernelNote: "synthetic"}
			}}
	case "compiled":
		return model{name: name, control: true, path: "state-lookup", unit: "map ops",
			apply: func(pods, _ int) (float64, float64) { return 2e3 + float64(pods), 3 },
			size: func(pods, ids, _ int) results.Size {
				return results.Size{Identities: ids, Maps: []results.MapSize{
					{Name: "rulesets", Type: "state", Entries: uint64(ids * ids / 4)}, {Name: "endpoints", Type: "state", Entries: uint64(pods)}}}
			}}
	}
	// Sets: rules grow with pods, members a little faster, cost with the log of the sets.
	return model{name: name, path: "partial-restore", unit: "restore lines",
		packet: func(pods, _ int) float64 { return 85 + 12*math.Log(float64(pods)) },
		apply:  func(pods, _ int) (float64, float64) { return 1e6 + 60*float64(pods), float64(pods / 4) },
		size: func(pods, ids, _ int) results.Size {
			members := uint64(math.Pow(float64(pods), 1.3))
			return results.Size{Identities: ids, Iptables: &results.IptablesSize{Rules: uint64(4*pods + 50), Chains: uint64(pods/10 + 5),
				RestoreBytes: uint64((4*pods + 50) * 60), RestoreLines: uint64(4*pods + pods/10 + 60), IpsetSets: uint64(ids), IpsetMembers: members}}
		}}
}

// Run returns a synthetic run with every section filled.
func Run(o Options) *results.Run {
	if o.Slowdown == 0 {
		o.Slowdown = 1
	}
	if o.Backends == nil {
		o.Backends = []string{"ebpf", "iptables"}
	}
	if o.Cluster != "" {
		o.Pods = o.Pods[:1]
	}
	var models, measured []model // measured: every backend but the controls
	for _, b := range o.Backends {
		m := modelOf(b)
		models = append(models, m)
		if !m.control {
			measured = append(measured, m)
		}
	}
	skipped := func(b string, pods int) bool {
		return slices.ContainsFunc(o.Caps, func(c results.Cap) bool { return c.Backend == b && c.Pods == pods && c.Skipped })
	}
	churnCut := func(b string, pods int) bool {
		return slices.ContainsFunc(o.Caps, func(c results.Cap) bool { return c.Backend == b && c.Pods == pods && !c.Skipped })
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
	run.Config = results.Config{Backends: o.Backends, Pods: o.Pods, Duration: 5 * time.Second, Samples: o.Samples}
	if o.Cluster != "" {
		// What bench records for --cluster: the dump's path and pod count, nothing more.
		run.Workload, _ = json.Marshal(map[string]any{"cluster": o.Cluster, "pods": o.Pods[0]})
		run.Config.Extra = map[string]string{"cluster": o.Cluster}
	}
	run.Caps = append([]results.Cap{{Backend: "iptables", Pods: 100000, Skipped: true, Reason: "synthetic cap: restore would exceed the time budget", Limit: "max 10000 pods"}}, o.Caps...)
	run.PeakRSSBytes = 512 << 20
	run.Notes = []string{"synthetic data for tests"}

	for _, pods := range o.Pods {
		ids := 20 + pods/100
		rules := pods*pods/50 + o.ExtraRules
		floor := 60.0
		base := fmt.Sprintf("/pods=%d/path=new-allow", pods)
		mk := func(center float64, slow float64) []float64 {
			s := make([]float64, o.Samples)
			for i := range s {
				s[i] = noise(center * slow)
			}
			return s
		}
		run.Benchmarks = append(run.Benchmarks,
			results.Benchmark{Name: "BenchmarkVerdict/backend=floor" + base, Iters: 10000, Metrics: []results.Metric{{Unit: "ns/op", Samples: mk(floor, 1)}}})
		for _, m := range measured {
			if skipped(m.name, pods) {
				continue
			}
			run.Benchmarks = append(run.Benchmarks,
				results.Benchmark{Name: "BenchmarkVerdict/backend=" + m.name + base, Iters: 10000, Metrics: []results.Metric{{Unit: "ns/op", Samples: mk(m.packet(pods, rules), o.Slowdown)}}})
		}
		for _, m := range measured {
			if skipped(m.name, pods) {
				continue
			}
			run.Ratios = append(run.Ratios, results.Ratio{
				Name: "RatioAboveFloor/backend=" + m.name + base,
				Num:  results.MetricRef{Benchmark: "BenchmarkVerdict/backend=" + m.name + base, Unit: "ns/op"},
				Den:  results.MetricRef{Benchmark: "BenchmarkVerdict/backend=floor" + base, Unit: "ns/op"},
			})
		}
		for _, m := range models {
			if skipped(m.name, pods) {
				continue
			}
			s := m.size(pods, ids, rules)
			s.Backend, s.Pods = m.name, pods
			run.Sizes = append(run.Sizes, s)
		}
		for _, m := range append([]model{{name: "floor"}}, measured...) {
			if skipped(m.name, pods) {
				continue
			}
			center := floor
			if m.name != "floor" {
				center = floor + m.packet(pods, rules) - 50
			}
			for _, verdict := range []string{results.VerdictAllow, results.VerdictDeny} {
				h := hdrhistogram.New(1, 10_000_000, 3)
				for range 5000 {
					v := center * math.Exp(0.25*rng.NormFloat64())
					if m.name != "floor" {
						v *= o.Slowdown
					}
					if err := h.RecordValue(int64(v)); err != nil {
						panic(err)
					}
				}
				name := fmt.Sprintf("Latency/backend=%s/pods=%d/verdict=%s/flow=new", m.name, pods, verdict)
				hist, err := results.FromHdr(name, h)
				if err != nil {
					panic(err)
				}
				hist.Backend, hist.Pods, hist.Verdict, hist.Flow, hist.Kind = m.name, pods, verdict, results.FlowNew, results.KindStampDelta
				hist.HgrmPath = fmt.Sprintf("hgrm/%s-%d-%s.hgrm", m.name, pods, verdict)
				if m.name != "floor" {
					hist.SetFloor(run.FindLatency(fmt.Sprintf("Latency/backend=floor/pods=%d/verdict=%s/flow=new", pods, verdict)))
				}
				run.Latency = append(run.Latency, hist)
			}
		}
		for i, ev := range results.EventTypes {
			for _, m := range models {
				if skipped(m.name, pods) {
					continue
				}
				if i > 4 && churnCut(m.name, pods) {
					continue // churn stopped after scale-up
				}
				apply, ops := m.apply(pods, rules)
				u := results.Update{Backend: m.name, Pods: pods, Event: ev, Path: m.path, OpsUnit: m.unit}
				if ev == results.EventFullSync && m.name != "ebpf" && m.name != "iptables" {
					apply *= 20 // a full sync installs everything (the default models keep their figures)
				}
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
	for _, m := range measured {
		if skipped(m.name, largest) {
			continue
		}
		tl := results.ChurnTimeline{Backend: m.name, Pods: largest, IntervalMS: 100, RatePPS: 10000}
		for i := range 50 {
			p := results.ChurnPoint{TMS: float64(i) * 100, Sent: 1000, P50US: noise(40), P99US: noise(90)}
			p.MaxUS = p.P99US * 1.5
			if m.name == "iptables" && i%10 == 5 {
				p.Lost, p.P99US, p.MaxUS = 37, 2500, 9000
			}
			tl.Points = append(tl.Points, p)
		}
		for i := 5; i < 50; i += 10 {
			tl.Events = append(tl.Events, results.ChurnMark{TMS: float64(i)*100 + 10, Event: results.EventRelabel, DurationMS: 40, Detail: "relabel 10 pods"})
		}
		run.Churn = append(run.Churn, tl)
	}
	for _, pods := range o.EndToEnd {
		for _, m := range models {
			if skipped(m.name, pods) {
				continue
			}
			apply, _ := m.apply(pods, 0)
			for _, qps := range []float64{20, 100} {
				e := results.EndToEnd{Backend: m.name, Pods: pods, QPS: qps, APIServer: results.APIServerEmbedded, Events: int(qps * 5),
					Writes: int(qps * 5), Samples: int(qps * 5), DurationNS: int64(5 * time.Second), LagNS: 1e6, DrainNS: 2e5, AgentStartNS: int64(pods) * 1e4,
					Probe: "real packets in the testbed", Probed: int(qps * 2), Requests: map[string]int64{"POST pods": int64(qps * 2), "PUT pods/status": int64(qps * 2), "DELETE pods": int64(qps)},
					WatchEvents: map[string]int64{"pods": int64(qps * 10), "networkpolicies": int64(qps)}}
				if m.control {
					e.Probe, e.Probed = "not measured: compiled carries no real packets", 0
				}
				run.EndToEnd = append(run.EndToEnd, e)
				// Stages from the write's start: the API and the watch take milliseconds, the
				// backend its apply time, the first packet a millisecond more.
				at := map[string]float64{results.StageAck: 4e6, results.StageWatch: 4.2e6, results.StageDequeue: 4.25e6, results.StageCompute: 4.3e6}
				at[results.StageApply] = at[results.StageCompute] + apply*o.Slowdown
				at[results.StageAgent] = at[results.StageApply] - at[results.StageWatch]
				if !m.control {
					at[results.StageProbe] = at[results.StageApply] + 1e6
					at[results.StageReachability] = at[results.StageProbe] - at[results.StageAck]
					at[results.StageEnforcement] = at[results.StageProbe] - at[results.StageAck]
				}
				for _, st := range []string{results.StageAck, results.StageWatch, results.StageDequeue, results.StageCompute, results.StageApply,
					results.StageProbe, results.StageAgent, results.StageReachability, results.StageEnforcement} {
					centre, ok := at[st]
					if !ok {
						continue
					}
					h := hdrhistogram.New(1, 60_000_000_000, 3)
					for range e.Samples {
						if err := h.RecordValue(int64(centre * math.Exp(0.4*rng.NormFloat64()))); err != nil {
							panic(err)
						}
					}
					labels := map[string]string{"stage": st, "qps": fmt.Sprint(qps)}
					name := fmt.Sprintf("Hist/backend=%s/pods=%d/stage=%s/qps=%g", m.name, pods, st, qps)
					switch st {
					case results.StageReachability:
						labels["event"], name = "pod-add", name+"/event=pod-add"
					case results.StageEnforcement:
						labels["event"], name = "policy", name+"/event=policy"
					}
					hist, err := results.FromHdr(name, h)
					if err != nil {
						panic(err)
					}
					hist.Backend, hist.Pods, hist.Kind, hist.Labels = m.name, pods, results.KindEnforcement, labels
					run.Latency = append(run.Latency, hist)
				}
			}
		}
	}
	run.Fits = append(run.Fits, fits(run, o.Backends)...)
	run.Claims = []results.Claim{
		{ID: "rules-quadratic", Statement: "iptables rules grow as O(pods²)", Status: results.ClaimConfirmed, Evidence: "synthetic", Figures: map[string]float64{"exponent": 2}},
		{ID: "pod-add-no-map-change", Statement: "adding a pod with an existing label set changes no policy map entry", Status: results.ClaimNotMeasured},
	}
	return run
}

// fits fits rules (per-IP backends) and map entries (map backends) over the sweep, and eBPF's
// p99 above the floor.
func fits(run *results.Run, backends []string) []results.Fit {
	type series struct {
		be, metric, x string
		pts           []results.Point
	}
	var ss []series
	for _, kind := range []string{"rules", "entries"} {
		for _, be := range backends {
			if be == "compiled" {
				continue
			}
			s := series{be: be, metric: kind, x: map[string]string{"rules": "pods", "entries": "identities"}[kind]}
			for _, sz := range run.Sizes {
				switch {
				case sz.Backend != be:
				case kind == "rules" && sz.Iptables != nil:
					s.pts = append(s.pts, results.Point{X: float64(sz.Pods), Y: float64(sz.Iptables.Rules)})
				case kind == "entries" && len(sz.Maps) > 0:
					s.pts = append(s.pts, results.Point{X: float64(sz.Identities), Y: float64(sz.Maps[0].Entries)})
				}
			}
			if len(s.pts) > 0 {
				ss = append(ss, s)
			}
		}
	}
	p99 := series{be: "ebpf", metric: "p99 ns above floor", x: "pods"}
	for _, h := range run.Latency {
		if h.Backend == "ebpf" && h.Verdict == results.VerdictAllow {
			p99.pts = append(p99.pts, results.Point{X: float64(h.Pods), Y: h.AboveFloor.P99})
		}
	}
	ss = append(ss, p99)
	var out []results.Fit
	for _, s := range ss {
		if fit, err := results.FitPowerLaw(s.be, s.metric, s.x, s.pts); err == nil {
			out = append(out, fit)
		}
	}
	return out
}
