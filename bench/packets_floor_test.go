package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"netpolbench/bench/stamp"
	"netpolbench/policy"
	"netpolbench/results"
)

func samplesOf(p stamp.Path, st stamp.State, deltas ...uint64) []PacketSample {
	out := make([]PacketSample, len(deltas))
	for i, d := range deltas {
		out[i] = PacketSample{Path: p, State: st, Delta: d}
	}
	return out
}

func joinSamples(parts ...[]PacketSample) []PacketSample {
	var out []PacketSample
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// testRounds is a measurement with two floor rounds and one backend round: the allowed
// path's floor is about 50 ns, the drop-at-source path's about 30 ns and the drop-at-destination
// path's about 80 ns.
func testRounds() *PacketResult {
	return &PacketResult{Rounds: []PacketRound{
		{Floor: true, Samples: joinSamples(
			samplesOf(stamp.PathTCXBoth, stamp.StateNew, 48, 50, 52),
			samplesOf(stamp.PathTCXBoth, stamp.StateReply, 49),
			samplesOf(stamp.PathTCXDropIngress, stamp.StateNew, 30, 31, 29),
			samplesOf(stamp.PathTCXDropEgress, stamp.StateNew, 80))},
		{Floor: false, Samples: joinSamples(
			samplesOf(stamp.PathTCXBoth, stamp.StateNew, 350, 150, 250),
			samplesOf(stamp.PathTCXBoth, stamp.StateReply, 60, 40),
			samplesOf(stamp.PathTCXDropIngress, stamp.StateNew, 130, 20),
			samplesOf(stamp.PathTCXDropEgress, stamp.StateNew, 180))},
		{Floor: true, Samples: joinSamples(
			samplesOf(stamp.PathTCXBoth, stamp.StateNew, 56, 58, 60, 54),
			samplesOf(stamp.PathTCXDropIngress, stamp.StateNew, 31),
			samplesOf(stamp.PathTCXDropEgress, stamp.StateNew, 84, 82))},
	}}
}

func TestFloorsArePerPathMediansWithTheirRoundsDrift(t *testing.T) {
	f := testRounds().Floors()
	both := f[stamp.PathTCXBoth]
	// Pooled: 48 49 50 52 54 56 58 60 → (52+54)/2; per round: 49.5 and 57.
	if both.Median != 53 || both.Samples != 8 || len(both.RoundMedians) != 2 || both.RoundMedians[0] != 49.5 || both.RoundMedians[1] != 57 {
		t.Errorf("both: %+v", both)
	}
	if both.Drift() != 7.5 {
		t.Errorf("both: drift %g, want 7.5", both.Drift())
	}
	if in := f[stamp.PathTCXDropIngress]; in.Median != 30.5 || in.Samples != 4 {
		t.Errorf("drop-ingress: %+v", in)
	}
	if eg := f[stamp.PathTCXDropEgress]; eg.Median != 82 || eg.Drift() != 3 {
		t.Errorf("drop-egress: %+v drift %g", eg, eg.Drift())
	}
	if _, ok := f[stamp.PathTCXEgressOnly]; ok {
		t.Error("a floor for a path no floor round took")
	}
}

func TestAboveFloorSubtractsItsOwnPathsFloorFromEverySample(t *testing.T) {
	pts, err := testRounds().AboveFloor()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*AbovePoint{}
	for _, p := range pts {
		got[p.PacketPoint.String()] = p
	}
	for _, c := range []struct {
		point         string
		floor         float64
		count         int64
		p50, max      int64
		clamped       int64
		stampedMedian int64
	}{
		// 350, 150, 250 minus 53: a percentile of the differences, not a difference of
		// percentiles.
		{"span=tcx/path=both/state=new", 53, 3, 197, 297, 0, 250},
		// 60 and 40 minus 53: 7, and -13 clamped to the minimum and counted.
		{"span=tcx/path=both/state=reply", 53, 2, 1, 7, 1, 40},
		// A drop at the source gets the drop-at-source floor, not the allowed one; 130 - 30.5
		// rounds to 100.
		{"span=tcx/path=drop-ingress/state=new", 30.5, 2, 1, 100, 1, 20},
		{"span=tcx/path=drop-egress/state=new", 82, 1, 98, 98, 0, 180},
	} {
		p := got[c.point]
		if p == nil {
			t.Errorf("%s: missing", c.point)
			continue
		}
		if p.Floor != c.floor || p.Above.TotalCount() != c.count || p.Above.ValueAtQuantile(50) != c.p50 ||
			p.Above.Max() != c.max || p.Clamped != c.clamped || p.Stamped.ValueAtQuantile(50) != c.stampedMedian {
			t.Errorf("%s: floor %g count %d p50 %d max %d clamped %d stamped p50 %d; want %g %d %d %d %d %d", c.point,
				p.Floor, p.Above.TotalCount(), p.Above.ValueAtQuantile(50), p.Above.Max(), p.Clamped, p.Stamped.ValueAtQuantile(50),
				c.floor, c.count, c.p50, c.max, c.clamped, c.stampedMedian)
		}
	}
	if len(pts) != 4 {
		t.Errorf("%d points, want 4", len(pts))
	}
}

func TestAboveFloorRefusesAPathWithoutAFloor(t *testing.T) {
	r := testRounds()
	r.Rounds[1].Samples = append(r.Rounds[1].Samples, samplesOf(stamp.PathTCXEgressOnly, stamp.StateNew, 70)...)
	_, err := r.AboveFloor()
	if err == nil || !strings.Contains(err.Error(), "tcx/egress-only (1 samples)") {
		t.Fatalf("err %v", err)
	}
}

func TestMarksTellTheStepsWhereTheReferenceDenies(t *testing.T) {
	for _, c := range []struct {
		f    stamp.ExpectedFlow
		want int
	}{
		{stamp.ExpectedFlow{Verdict: policy.Allow, DeniedAt: policy.Egress}, markPass},
		{stamp.ExpectedFlow{Verdict: policy.Deny, DeniedAt: policy.Egress}, markDropSource},
		{stamp.ExpectedFlow{Verdict: policy.Deny, DeniedAt: policy.Ingress}, markDropDest},
	} {
		if got := markOf(c.f); got != c.want {
			t.Errorf("%s: mark %d, want %d", c.f, got, c.want)
		}
	}
}

// TestRecordPacketsLinksEveryPointToItsOwnFloor records a measurement and reads it back as
// results.json would show it: every per-path point with its own floor and its percentiles
// above it, the headline pooled over paths, floors with their round medians, digests on all.
func TestRecordPacketsLinksEveryPointToItsOwnFloor(t *testing.T) {
	r := &Runner{run: results.New(), hists: NewHistograms(), Spec: Spec{Samples: 1}}
	res := testRounds()
	res.Attach, res.FlowDigest, res.Elapsed = attachTCX, "flows", time.Second
	if err := r.recordPackets("ebpf", 100, "", "state", res); err != nil {
		t.Fatal(err)
	}
	// The sparse pass of the same backend and scale keeps keys of its own.
	if err := r.recordPackets("ebpf", 100, "rate=sparse", "state", res); err != nil {
		t.Fatal(err)
	}
	hs, err := r.hists.Results("")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]results.Histogram{}
	for _, h := range hs {
		byName[h.Name] = h
		if h.StateDigest != "state" || h.FlowDigest != "flows" {
			t.Errorf("%s: digests %q %q", h.Name, h.StateDigest, h.FlowDigest)
		}
	}
	for name, want := range map[string]struct {
		floor   string
		p50     float64
		clamped int64
	}{
		"Latency/backend=ebpf/pods=100/attach=tcx/span=tcx/path=drop-ingress/verdict=deny/flow=new": {
			"Latency/backend=floor/pods=100/attach=tcx/for=ebpf/span=tcx/path=drop-ingress/verdict=deny", 1, 1},
		"Latency/backend=ebpf/pods=100/attach=tcx/span=tcx/path=both/verdict=allow/flow=new": {
			"Latency/backend=floor/pods=100/attach=tcx/for=ebpf/span=tcx/path=both/verdict=allow", 197, 0},
		// Pooled over drop-ingress and drop-egress, each minus its own floor.
		"Latency/backend=ebpf/pods=100/attach=tcx/verdict=deny/flow=new": {
			"Latency/backend=floor/pods=100/attach=tcx/for=ebpf/span=tcx/path=drop-ingress/verdict=deny", 98, 1},
		"Latency/backend=ebpf/pods=100/attach=tcx/rate=sparse/verdict=deny/flow=new": {
			"Latency/backend=floor/pods=100/attach=tcx/rate=sparse/for=ebpf/span=tcx/path=drop-ingress/verdict=deny", 98, 1},
	} {
		h, ok := byName[name]
		if !ok {
			t.Errorf("%s: missing", name)
			continue
		}
		if h.Floor != want.floor || h.AboveFloor == nil || h.AboveFloor.P50 != want.p50 || h.AboveFloorClamped != want.clamped {
			t.Errorf("%s: floor %s above %+v clamped %d; want %s p50 %g clamped %d", name, h.Floor, h.AboveFloor, h.AboveFloorClamped, want.floor, want.p50, want.clamped)
		}
		if _, ok := byName[h.Floor]; !ok {
			t.Errorf("%s: floor %s not in the run", name, h.Floor)
		}
	}
	var floorBench *results.Benchmark
	for i, b := range r.run.Benchmarks {
		if b.Name == "BenchmarkPacketFloor/backend=ebpf/pods=100/span=tcx/path=both" {
			floorBench = &r.run.Benchmarks[i]
		}
	}
	if floorBench == nil || fmt.Sprint(floorBench.Metrics[0].Samples) != "[49.5 57]" {
		t.Errorf("floor benchmark %+v, want the round medians 49.5 and 57", floorBench)
	}
}
