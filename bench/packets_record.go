package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"netpolbench/bench/stamp"
	"netpolbench/datapath"
	"netpolbench/results"
)

// packetRounds is the number of floor and backend rounds each of a per-packet measurement in
// the sweep; variantRounds those of a variant pass (rate, flows, headroom), which is compared
// by its median and not gated: half as many switches between floor and backend.
const (
	packetRounds  = 8
	variantRounds = 4
)

// packetPlan sizes a measurement so each (verdict, flow state) point of the backend gets at
// least samples samples over the rounds: new-flow packets alternate allowed and denied flows;
// segments (established, when asked) get a tenth more, as TCP may carry two writes in one
// segment when it is short of window. New flows and segments go at rate (0: back to back).
func packetPlan(fl *stamp.FlowList, samples, rounds int, rate float64, established bool) PacketPlan {
	per := (samples + rounds - 1) / rounds
	p := PacketPlan{Flows: fl, Rounds: rounds, New: 2 * per, Rate: rate}
	if established {
		p.Established = per + per/10
	}
	return p
}

// headlineSpan is the span a backend's headline per-packet figures come from: the TCX chains
// for eBPF, the whole netfilter path (conntrack included, as the eBPF datapath's own) for
// iptables; the filter table alone is kept beside it.
func headlineSpan(attach string) stamp.Span {
	if attach == attachNetfilter {
		return stamp.SpanNetfilterPath
	}
	return stamp.SpanTCX
}

func verdictOf(p stamp.Path) string {
	if p.Dropped() {
		return results.VerdictDeny
	}
	return results.VerdictAllow
}

// Prefixes of the benchmarks a per-packet measurement records.
const (
	packetBench     = "BenchmarkPacket/"
	packetPathBench = "BenchmarkPacketPath/"
)

// recordPackets puts one measurement into the run: per path, the floor (a histogram of its
// samples and a benchmark of its round medians, whose spread is the drift); per path and flow
// state, the stamped samples with the percentiles above their path's floor; per verdict and
// flow state of the headline span, all paths pooled (each sample minus its own path's floor),
// as the histogram and the benchmark (one median a backend round) the report and the gate
// read; every one of them with its rounds (RoundStats: the rounds' medians, the floor's drift,
// a 95% interval of the p50, the rates) and the floor's jitter; per headline path of new flows,
// the benchmark the growth fits read; the rates and conntrack growth of every round; and,
// where the backend counts them, its verdicts and map operations over the new-flow traffic.
// Every histogram carries the state and flow-list digests. variant ("" or e.g. "rate=sparse")
// labels a measurement that is not the sweep's headline one.
func (r *Runner) recordPackets(name string, pods int, variant, stateDigest string, res *PacketResult) error {
	pts, err := res.AboveFloor()
	if err != nil {
		return err
	}
	floors := res.Floors()
	label := fmt.Sprintf("backend=%s/pods=%d", name, pods)
	extra := func(rest string) string {
		return strings.Trim(variant+"/"+rest, "/")
	}
	if variant != "" {
		label += "/" + variant
	}
	floorKey := map[stamp.Path]HistKey{}
	for _, p := range stamp.Paths() {
		f, ok := floors[p]
		if !ok {
			continue
		}
		fk := HistKey{Kind: results.KindStampDelta, Backend: results.BackendFloorName, Pods: pods, Attach: res.Attach,
			Verdict: verdictOf(p), Extra: extra(fmt.Sprintf("for=%s/span=%s/path=%s", name, p.Span(), p))}
		floorKey[p] = fk
		for _, rd := range res.Rounds {
			if !rd.Floor {
				continue
			}
			for _, s := range rd.Samples {
				if s.Path == p {
					if err := r.hists.Record(fk, int64(s.Delta)); err != nil {
						return err
					}
				}
			}
		}
		r.hists.SetDigests(fk, stateDigest, res.FlowDigest)
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name: fmt.Sprintf("BenchmarkPacketFloor/%s/span=%s/path=%s", label, p.Span(), p), Iters: f.Samples,
			Metrics: []results.Metric{{Unit: "floor-ns", Samples: f.RoundMedians}}})
	}
	span := headlineSpan(res.Attach)
	for _, p := range pts {
		k := HistKey{Kind: results.KindStampDelta, Backend: name, Pods: pods, Attach: res.Attach, Verdict: verdictOf(p.Path),
			Flow: p.State.String(), Extra: extra(fmt.Sprintf("span=%s/path=%s", p.Path.Span(), p.Path))}
		if err := r.hists.Merge(k, p.Stamped); err != nil {
			return err
		}
		keep := func(s PacketSample) bool { return s.Path == p.Path && s.State == p.State }
		p50 := float64(p.Above.ValueAtQuantile(50))
		rs := res.rounds(keep).stats(p50, res.Rate)
		jitter, err := res.floorJitter(keep)
		if err != nil {
			return err
		}
		r.hists.SetAbove(k, floorKey[p.Path], p.Above, p.Clamped)
		r.hists.SetRounds(k, rs, jitter, nil)
		r.hists.SetDigests(k, stateDigest, res.FlowDigest)
		if p.Path.Span() == span && p.State == stamp.StateNew {
			// The growth fits read each path of new flows apart: its p50 above the floor and
			// its rounds, to resample.
			r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
				Name:  fmt.Sprintf("%s%s/attach=%s/span=%s/path=%s/flow=new", packetPathBench, label, res.Attach, span, p.Path),
				Iters: int(p.Above.TotalCount()),
				Metrics: []results.Metric{{Unit: "above-floor-ns", Samples: []float64{p50}},
					{Unit: "round-above-floor-ns", Samples: rs.AboveP50}, {Unit: "round-floor-ns", Samples: rs.FloorP50}}})
		}
	}
	if err := r.recordHeadline(name, pods, variant, stateDigest, res, pts, floorKey); err != nil {
		return err
	}
	var rates, floorRates, ct, floorCT []float64
	for _, rd := range res.Rounds {
		if rd.Floor {
			floorRates = append(floorRates, rd.New.Rate())
			floorCT = append(floorCT, float64(rd.ConntrackGrowth))
		} else {
			rates = append(rates, rd.New.Rate())
			ct = append(ct, float64(rd.ConntrackGrowth))
		}
	}
	ms := []results.Metric{{Unit: "new-packets/s", Samples: rates}, {Unit: "floor-new-packets/s", Samples: floorRates},
		{Unit: "samples/s", Samples: []float64{float64(res.Check.Samples) / res.Elapsed.Seconds()}}}
	if len(res.Rounds) > 0 && res.Rounds[0].ConntrackKnown {
		ms = append(ms, results.Metric{Unit: "conntrack-growth", Samples: ct}, results.Metric{Unit: "floor-conntrack-growth", Samples: floorCT})
	}
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: "BenchmarkPacketRate/" + label, Iters: res.Check.Samples, Metrics: ms})
	if lk := res.Lookups(false); lk != nil {
		r.recordLookups(label, res, lk)
	}
	return nil
}

// recordHeadline pools the headline span's points by verdict and flow state. The pooled
// histogram names every floor it subtracted; its Floor is that of its most frequent path.
func (r *Runner) recordHeadline(name string, pods int, variant, stateDigest string, res *PacketResult, pts []*AbovePoint, floorKey map[stamp.Path]HistKey) error {
	type pool struct {
		stamped, above *hdrhistogram.Histogram
		clamped        int64
		floor          HistKey
		floors         []HistKey
		most           int64
	}
	span := headlineSpan(res.Attach)
	pools := map[HistKey]*pool{}
	var order []HistKey
	for _, p := range pts {
		if p.Path.Span() != span {
			continue
		}
		k := HistKey{Kind: results.KindStampDelta, Backend: name, Pods: pods, Attach: res.Attach, Verdict: verdictOf(p.Path), Flow: p.State.String(), Extra: variant}
		pl := pools[k]
		if pl == nil {
			pl = &pool{stamped: hdrhistogram.New(histMin, histMax, histDigits), above: hdrhistogram.New(histMin, histMax, histDigits)}
			pools[k] = pl
			order = append(order, k)
		}
		pl.stamped.Merge(p.Stamped)
		pl.above.Merge(p.Above)
		pl.clamped += p.Clamped
		pl.floors = append(pl.floors, floorKey[p.Path])
		if n := p.Above.TotalCount(); n > pl.most {
			pl.most, pl.floor = n, floorKey[p.Path]
		}
	}
	for _, k := range order {
		pl := pools[k]
		if err := r.hists.Merge(k, pl.stamped); err != nil {
			return err
		}
		verdict, state := k.Verdict, k.Flow
		keep := func(s PacketSample) bool {
			return s.Path.Span() == span && verdictOf(s.Path) == verdict && s.State.String() == state
		}
		rs := res.rounds(keep).stats(float64(pl.above.ValueAtQuantile(50)), res.Rate)
		jitter, err := res.floorJitter(keep)
		if err != nil {
			return err
		}
		r.hists.SetAbove(k, pl.floor, pl.above, pl.clamped)
		r.hists.SetRounds(k, rs, jitter, pl.floors)
		r.hists.SetDigests(k, stateDigest, res.FlowDigest)
		if len(rs.AboveP50) < 2 {
			continue
		}
		// For the gate: one sample a backend round, its median above the floor, clamped at
		// the histograms' 1 ns like every value above the floor (a round below its floor
		// costs nothing measurable; a negative sample would make a ratio meaningless).
		meds := make([]float64, len(rs.AboveP50))
		for i, m := range rs.AboveP50 {
			meds[i] = max(math.Round(m), histMin)
		}
		bn := fmt.Sprintf("%sbackend=%s/pods=%d/attach=%s", packetBench, name, pods, k.Attach)
		if variant != "" {
			bn += "/" + variant
		}
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name:    fmt.Sprintf("%s/verdict=%s/flow=%s", bn, k.Verdict, k.Flow),
			Iters:   int(pl.above.TotalCount()) / len(meds),
			Metrics: []results.Metric{{Unit: "above-floor-ns/op", Samples: meds}}})
	}
	return nil
}

// floorJitter is the distribution of the floor rounds' samples that keep selects, each minus
// its path's floor median, a value at or below it recorded at 1 ns: how far the floor's own
// tail lies above the constant subtracted.
func (r *PacketResult) floorJitter(keep func(PacketSample) bool) (*hdrhistogram.Histogram, error) {
	floors := r.Floors()
	h := hdrhistogram.New(histMin, histMax, histDigits)
	for _, rd := range r.Rounds {
		if !rd.Floor {
			continue
		}
		for _, s := range rd.Samples {
			f, ok := floors[s.Path]
			if !ok || !keep(s) {
				continue
			}
			v := min(max(int64(math.Round(float64(s.Delta)-f.Median)), histMin), histMax)
			if err := h.RecordValue(v); err != nil {
				return nil, fmt.Errorf("record floor jitter %d ns: %w", v, err)
			}
		}
	}
	return h, nil
}

// recordLookups records the backend's verdicts and map operations over the backend rounds'
// new-flow traffic, from the programs' own counters (floor rounds have the programs out of the
// path): per verdict path (reason and direction, one program) the operations per packet, and
// per new-flow packet the operations of every program it crossed, summed (a pod-to-pod packet
// runs from_container and to_container), over the flow list's mix of paths.
func (r *Runner) recordLookups(label string, res *PacketResult, ls map[datapath.MetricKey]datapath.Lookups) {
	keys := make([]datapath.MetricKey, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b datapath.MetricKey) int {
		if a.Reason != b.Reason {
			return int(a.Reason) - int(b.Reason)
		}
		return int(a.Dir) - int(b.Dir)
	})
	perMap := func(l datapath.Lookups, packets uint64) []results.Metric {
		ms := []results.Metric{{Unit: "packets", Samples: []float64{float64(packets)}},
			{Unit: "map-ops/packet", Samples: []float64{float64(l.Total()) / float64(packets)}}}
		for _, m := range datapath.LookupMaps() {
			ms = append(ms, results.Metric{Unit: m.String() + "-ops/packet", Samples: []float64{float64(l.Ops[m]) / float64(packets)}})
		}
		return ms
	}
	var opened datapath.Lookups
	for _, k := range keys {
		l := ls[k]
		reason := strings.ReplaceAll(strings.ToLower(k.Reason.String()), " ", "-")
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name: fmt.Sprintf("BenchmarkPacketLookups/%s/reason=%s/dir=%s", label, reason, k.Dir), Iters: int(l.Packets), Metrics: perMap(l, l.Packets)})
		if k.Reason != datapath.ReasonAllowEstablished && k.Reason != datapath.ReasonAllowReply {
			opened = opened.Add(l)
		}
	}
	var packets uint64
	for _, rd := range res.Rounds {
		if rd.Floor {
			continue
		}
		for _, s := range rd.Samples[:rd.NewEnd] {
			if s.State == stamp.StateNew {
				packets++
			}
		}
	}
	if packets > 0 {
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name: fmt.Sprintf("BenchmarkPacketLookups/%s/flow=new", label), Iters: int(packets), Metrics: perMap(opened, packets)})
	}
}
