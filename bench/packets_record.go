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
// the sweep.
const packetRounds = 3

// packetPlan sizes a measurement so each (verdict, flow state) point of the backend gets at
// least samples samples over the rounds: new-flow packets alternate allowed and denied flows;
// segments get a tenth more, as TCP may carry two writes in one segment when it is short of
// window.
func packetPlan(fl *stamp.FlowList, samples int, rate float64) PacketPlan {
	per := (samples + packetRounds - 1) / packetRounds
	return PacketPlan{Flows: fl, Rounds: packetRounds, New: 2 * per, Established: per + per/10, Rate: rate}
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

// packetLookups is implemented by a backend in force whose programs count their map
// operations (the eBPF datapath).
type packetLookups interface {
	Lookups() (map[datapath.MetricKey]datapath.Lookups, error)
}

// recordPackets puts one measurement into the run: per path, the floor (a histogram of its
// samples and a benchmark of its round medians, whose spread is the drift); per path and flow
// state, the stamped samples with the percentiles above their path's floor; per verdict and
// flow state of the headline span, all paths pooled (each sample minus its own path's floor),
// as the histogram and the benchmark the report and the gate read; the achieved rates; and,
// where the backend counts them, its map operations per verdict path. Every histogram carries
// the state and flow-list digests. variant ("" or e.g. "rate=sparse") labels a measurement
// that is not the sweep's dense one. It returns the p50 of denied new flows above the floor.
func (r *Runner) recordPackets(name string, pods int, variant, stateDigest string, res *PacketResult, lk packetLookups) (float64, error) {
	pts, err := res.AboveFloor()
	if err != nil {
		return 0, err
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
						return 0, err
					}
				}
			}
		}
		r.hists.SetDigests(fk, stateDigest, res.FlowDigest)
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name: fmt.Sprintf("BenchmarkPacketFloor/%s/span=%s/path=%s", label, p.Span(), p), Iters: f.Samples,
			Metrics: []results.Metric{{Unit: "floor-ns", Samples: f.RoundMedians}}})
	}
	for _, p := range pts {
		k := HistKey{Kind: results.KindStampDelta, Backend: name, Pods: pods, Attach: res.Attach, Verdict: verdictOf(p.Path),
			Flow: p.State.String(), Extra: extra(fmt.Sprintf("span=%s/path=%s", p.Path.Span(), p.Path))}
		if err := r.hists.Merge(k, p.Stamped); err != nil {
			return 0, err
		}
		r.hists.SetAbove(k, floorKey[p.Path], p.Above, p.Clamped)
		r.hists.SetDigests(k, stateDigest, res.FlowDigest)
	}
	denyNew, err := r.recordHeadline(name, pods, variant, stateDigest, res, pts, floorKey)
	if err != nil {
		return 0, err
	}
	var rates []float64
	for _, rd := range res.Rounds {
		rates = append(rates, rd.New.Rate())
	}
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: "BenchmarkPacketRate/" + label, Iters: res.Check.Samples,
		Metrics: []results.Metric{{Unit: "new-packets/s", Samples: rates}, {Unit: "samples/s", Samples: []float64{float64(res.Check.Samples) / res.Elapsed.Seconds()}}}})
	if lk != nil {
		if err := r.recordLookups(label, lk); err != nil {
			return 0, err
		}
	}
	return denyNew, nil
}

// recordHeadline pools the headline span's points by verdict and flow state. The pooled
// histogram's floor link names the floor of its most frequent path (each sample had its own
// path's floor subtracted).
func (r *Runner) recordHeadline(name string, pods int, variant, stateDigest string, res *PacketResult, pts []*AbovePoint, floorKey map[stamp.Path]HistKey) (float64, error) {
	type pool struct {
		stamped, above *hdrhistogram.Histogram
		clamped        int64
		floor          HistKey
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
		if n := p.Above.TotalCount(); n > pl.most {
			pl.most, pl.floor = n, floorKey[p.Path]
		}
	}
	var denyNew float64
	for _, k := range order {
		pl := pools[k]
		if err := r.hists.Merge(k, pl.stamped); err != nil {
			return 0, err
		}
		r.hists.SetAbove(k, pl.floor, pl.above, pl.clamped)
		r.hists.SetDigests(k, stateDigest, res.FlowDigest)
		if k.Verdict == results.VerdictDeny && k.Flow == results.FlowNew {
			denyNew = float64(pl.above.ValueAtQuantile(50))
		}
		// For the gate: medians of consecutive chunks of the backend samples above their
		// floors, in arrival order, as repeated samples.
		verdict, state := k.Verdict, k.Flow
		vals := res.aboveValues(func(s PacketSample) bool {
			return s.Path.Span() == span && verdictOf(s.Path) == verdict && s.State.String() == state
		})
		chunks := max(r.Spec.Samples, 8)
		if len(vals) < 2*chunks {
			continue
		}
		per := len(vals) / chunks
		var meds []float64
		for i := range chunks {
			meds = append(meds, median(vals[i*per:(i+1)*per]))
		}
		bn := fmt.Sprintf("BenchmarkPacket/backend=%s/pods=%d/attach=%s", name, pods, k.Attach)
		if variant != "" {
			bn += "/" + variant
		}
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name:    fmt.Sprintf("%s/verdict=%s/flow=%s", bn, k.Verdict, k.Flow),
			Iters:   per,
			Metrics: []results.Metric{{Unit: "above-floor-ns/op", Samples: meds}}})
	}
	return denyNew, nil
}

// aboveValues are the backend rounds' samples that keep selects, each minus its path's floor
// median, in arrival order (ns; not clamped).
func (r *PacketResult) aboveValues(keep func(PacketSample) bool) []float64 {
	floors := r.Floors()
	var out []float64
	for _, rd := range r.Rounds {
		if rd.Floor {
			continue
		}
		for _, s := range rd.Samples {
			if f, ok := floors[s.Path]; ok && keep(s) {
				out = append(out, math.Round(float64(s.Delta)-f.Median))
			}
		}
	}
	return out
}

// recordLookups records each verdict path's map operations per packet, from the programs'
// own counters (backend rounds only: the programs are out of the path in floor rounds).
func (r *Runner) recordLookups(label string, lk packetLookups) error {
	ls, err := lk.Lookups()
	if err != nil {
		return err
	}
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
	for _, k := range keys {
		l := ls[k]
		ms := []results.Metric{{Unit: "packets", Samples: []float64{float64(l.Packets)}},
			{Unit: "map-ops/packet", Samples: []float64{float64(l.Total()) / float64(l.Packets)}}}
		for _, m := range datapath.LookupMaps() {
			ms = append(ms, results.Metric{Unit: m.String() + "-ops/packet", Samples: []float64{l.PerPacket(m)}})
		}
		reason := strings.ReplaceAll(strings.ToLower(k.Reason.String()), " ", "-")
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
			Name: fmt.Sprintf("BenchmarkPacketLookups/%s/reason=%s/dir=%s", label, reason, k.Dir), Iters: int(l.Packets), Metrics: ms})
	}
	return nil
}
