package bench

import (
	"slices"
	"strings"
	"testing"

	"netpolbench/results"
)

func mkPacketBench(backend, attach, rest string, samples ...float64) results.Benchmark {
	return results.Benchmark{Name: "BenchmarkPacket/backend=" + backend + "/pods=1000/attach=" + attach + "/" + rest, Iters: 1,
		Metrics: []results.Metric{{Unit: "above-floor-ns/op", Samples: samples}}}
}

func churnUpdates(backend, digest string, capped string, apply ...float64) []results.Update {
	var out []results.Update
	for i, kind := range churnKinds[:2] {
		u := results.Update{Backend: backend, Pods: 1000, Event: kind, EventsDigest: digest, ApplyNS: apply[2*i : 2*i+2]}
		u.Capped = kind == capped
		out = append(out, u)
	}
	return out
}

func ratioNames(run *results.Run) []string {
	var out []string
	for _, r := range run.Ratios {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

func TestBackendRatiosPairLikeWithLikeOnly(t *testing.T) {
	r := &Runner{run: results.New()}
	r.run.Ratios = []results.Ratio{{Name: "RatioAboveFloor/backend=ebpf/pods=1000/path=new-allow"}}
	r.run.Benchmarks = []results.Benchmark{
		mkPacketBench("ebpf", "tcx", "verdict=allow/flow=new", 1, 2, 3),
		mkPacketBench("iptables", "netfilter", "verdict=allow/flow=new", 10, 20, 30),
		// Another flow state than the reference has: no pair.
		mkPacketBench("iptables", "netfilter", "verdict=deny/flow=new", 10, 20, 30),
		// As many chunks as the reference has, or no pair.
		mkPacketBench("ebpf", "tcx", "verdict=deny/flow=new", 1, 2),
		mkPacketBench("ipset", "netfilter", "verdict=deny/flow=new", 1, 2, 3),
		// Established packets cost the floor's noise and more: never paired.
		mkPacketBench("ebpf", "tcx", "verdict=allow/flow=established", 1, 2, 3),
		mkPacketBench("ipset", "netfilter", "verdict=allow/flow=established", 10, 20, 30),
	}
	r.run.Updates = slices.Concat(
		churnUpdates("ebpf", "d1", "", 1, 2, 3, 4),
		churnUpdates("ipset", "d1", "", 10, 20, 30, 40),
		// Stopped within the list: its apply times are not the same events.
		churnUpdates("iptables", "d1", churnKinds[1], 10, 20, 30, 40),
		// Another list altogether.
		churnUpdates("nftables", "d2", "", 10, 20, 30, 40),
	)
	r.declareBackendRatios()
	// Declaring twice (a resumed run finishes again) adds nothing.
	r.declareBackendRatios()
	want := []string{
		"RatioAboveFloor/backend=ebpf/pods=1000/path=new-allow",
		"RatioPacket/backend=iptables/vs=ebpf/pods=1000/verdict=allow/flow=new",
		"RatioUpdate/backend=ipset/vs=ebpf/pods=1000",
	}
	if got := ratioNames(r.run); !slices.Equal(got, want) {
		t.Fatalf("ratios %q, want %q", got, want)
	}
	for _, ratio := range r.run.Ratios[1:] {
		s, ok := r.run.RatioSamples(ratio)
		if !ok || len(s) < 3 || slices.ContainsFunc(s, func(v float64) bool { return v != 10 }) {
			t.Errorf("%s: samples %v, want each backend's figure over the reference's, paired (all 10)", ratio.Name, s)
		}
		// Churn ratios are event by event, the same events in every run: the gate pairs them.
		if want := strings.HasPrefix(ratio.Name, ratioUpdatePrefix); ratio.Paired != want {
			t.Errorf("%s: paired %v, want %v", ratio.Name, ratio.Paired, want)
		}
	}
}
