package bench

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"netpolbench/bench/stamp"
	"netpolbench/results"
)

// PacketFloor is the floor of one path in one measurement: what the stamps and the empty step
// cost on that path, from the measurement's floor rounds.
type PacketFloor struct {
	Path stamp.Path
	// Median is the median of every floor sample of the path, ns: the one constant
	// subtracted from each of the backend's samples of the path.
	Median float64
	// RoundMedians are the medians of the path's samples in each floor round, ns, in round
	// order: their spread is the drift.
	RoundMedians []float64
	// Samples is the number of floor samples of the path.
	Samples int
}

// Drift is the spread of the round medians (max - min), ns.
func (f PacketFloor) Drift() float64 {
	if len(f.RoundMedians) == 0 {
		return 0
	}
	return slices.Max(f.RoundMedians) - slices.Min(f.RoundMedians)
}

// Floors computes the floor of every path the floor rounds took.
func (r *PacketResult) Floors() map[stamp.Path]PacketFloor {
	all := map[stamp.Path][]uint64{}
	out := map[stamp.Path]PacketFloor{}
	for _, rd := range r.Rounds {
		if !rd.Floor {
			continue
		}
		byPath := map[stamp.Path][]uint64{}
		for _, s := range rd.Samples {
			byPath[s.Path] = append(byPath[s.Path], s.Delta)
		}
		for p, ds := range byPath {
			f := out[p]
			f.Path = p
			f.RoundMedians = append(f.RoundMedians, medianU64(ds))
			out[p] = f
			all[p] = append(all[p], ds...)
		}
	}
	for p, ds := range all {
		f := out[p]
		f.Median, f.Samples = medianU64(ds), len(ds)
		out[p] = f
	}
	return out
}

// medianU64 sorts ds in place and returns its median.
func medianU64(ds []uint64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return float64(ds[n/2])
	}
	return (float64(ds[n/2-1]) + float64(ds[n/2])) / 2
}

// PacketPoint names one distribution of a measurement: a path (which says the verdict) and a
// flow state.
type PacketPoint struct {
	Path  stamp.Path
	State stamp.State
}

func (p PacketPoint) String() string {
	return fmt.Sprintf("span=%s/path=%s/state=%s", p.Path.Span(), p.Path, p.State)
}

// AbovePoint is one point's backend samples with their path's floor subtracted.
type AbovePoint struct {
	PacketPoint
	// Floor is the constant subtracted from every sample, ns.
	Floor float64
	// Above holds sample − Floor for every sample, ns; a difference below the histogram's
	// minimum (1 ns) is recorded as the minimum and counted in Clamped.
	Above *hdrhistogram.Histogram
	// Stamped holds the samples as stamped, ns.
	Stamped *hdrhistogram.Histogram
	Clamped int64
}

// AboveFloor takes the backend rounds' samples of r and subtracts from each one constant, the
// median of its path's floor (Floors), then puts the differences into one histogram per point,
// so a percentile of Above is a percentile of per-packet costs above the floor (not a
// percentile minus a percentile). A path the floor rounds never took has no floor: its samples
// make the call fail rather than be compared with another path's floor.
func (r *PacketResult) AboveFloor() ([]*AbovePoint, error) {
	floors := r.Floors()
	points := map[PacketPoint]*AbovePoint{}
	missing := map[stamp.Path]int{}
	for _, rd := range r.Rounds {
		if rd.Floor {
			continue
		}
		for _, s := range rd.Samples {
			f, ok := floors[s.Path]
			if !ok {
				missing[s.Path]++
				continue
			}
			k := PacketPoint{s.Path, s.State}
			pt := points[k]
			if pt == nil {
				pt = &AbovePoint{PacketPoint: k, Floor: f.Median,
					Above: hdrhistogram.New(histMin, histMax, histDigits), Stamped: hdrhistogram.New(histMin, histMax, histDigits)}
				points[k] = pt
			}
			if err := pt.record(s.Delta); err != nil {
				return nil, err
			}
		}
	}
	if len(missing) > 0 {
		var parts []string
		for p, n := range missing {
			parts = append(parts, fmt.Sprintf("%s/%s (%d samples)", p.Span(), p, n))
		}
		slices.Sort(parts)
		return nil, fmt.Errorf("no floor for path %s: the floor rounds never took it", strings.Join(parts, ", "))
	}
	out := make([]*AbovePoint, 0, len(points))
	for _, p := range points {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *AbovePoint) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.State, b.State))
	})
	return out, nil
}

func (p *AbovePoint) record(delta uint64) error {
	d := min(int64(delta), histMax)
	if err := p.Stamped.RecordValue(max(d, histMin)); err != nil {
		return fmt.Errorf("record %d ns at %s: %w", delta, p.PacketPoint, err)
	}
	v := int64(math.Round(float64(d) - p.Floor))
	if v < histMin {
		v = histMin
		p.Clamped++
	}
	if err := p.Above.RecordValue(v); err != nil {
		return fmt.Errorf("record %d ns above the floor at %s: %w", v, p.PacketPoint, err)
	}
	return nil
}

// roundView is one figure of a measurement round by round: the median above the floor of its
// samples in each backend round, and of the same selection of floor samples in each floor
// round (each sample minus its path's floor median, so a floor that held still gives 0).
// Index i of both is one floor round and the backend round after it.
type roundView struct {
	above, floor []float64
	// rate and floorRate are the achieved new-flow rates of the backend and floor rounds,
	// packets per second.
	rate, floorRate []float64
}

// rounds is keep's view of r round by round. A round without a sample of the selection gives
// no median; the backend and floor rounds are then paired as far as both have one.
func (r *PacketResult) rounds(keep func(PacketSample) bool) roundView {
	floors := r.Floors()
	var v roundView
	var fl []float64
	for _, rd := range r.Rounds {
		var ds []float64
		for _, s := range rd.Samples {
			if f, ok := floors[s.Path]; ok && keep(s) {
				ds = append(ds, float64(s.Delta)-f.Median)
			}
		}
		if rd.Floor {
			v.floorRate = append(v.floorRate, rd.New.Rate())
			if len(ds) > 0 {
				fl = append(fl, median(ds))
			}
			continue
		}
		v.rate = append(v.rate, rd.New.Rate())
		if len(ds) > 0 {
			v.above = append(v.above, median(ds))
		}
	}
	n := min(len(v.above), len(fl))
	v.above, v.floor = v.above[:n], fl[:n]
	return v
}

// bootstrapReps is the number of resamples behind an interval: enough that its 2.5 and 97.5
// percentiles move by less than the rounds' own resolution.
const bootstrapReps = 2000

// newBootstrap returns the random source of every resample: fixed, so a run's intervals are
// reproduced exactly by the same figures.
func newBootstrap() *rand.Rand { return rand.New(rand.NewPCG(0x626f6f74, 0x7374726170)) }

// resample draws n indexes 0..n-1 with replacement into idx.
func resample(rng *rand.Rand, idx []int) {
	for i := range idx {
		idx[i] = rng.IntN(len(idx))
	}
}

// estimate is the median above the floor of the rounds idx pick: the median of their backend
// rounds' medians minus the median of their floor rounds'.
func (v roundView) estimate(idx []int) float64 {
	a := make([]float64, len(idx))
	f := make([]float64, len(idx))
	for i, j := range idx {
		a[i], f[i] = v.above[j], v.floor[j]
	}
	return median(a) - median(f)
}

// stats fills a figure's RoundStats: the rounds' medians and their spread, the floor's drift,
// the rates, and a 95% interval of p50 (the figure's p50 above the floor from all its samples)
// from resampling rounds with replacement, a backend round together with the floor round
// before it: the interval is p50 shifted by the 2.5th and 97.5th percentiles of how far the
// resampled estimate lies from the estimate of all rounds.
func (v roundView) stats(p50, rateAsked float64) *results.RoundStats {
	n := len(v.above)
	st := &results.RoundStats{Rounds: n, AboveP50: v.above, FloorP50: v.floor, RateAsked: rateAsked,
		Rate: mean(v.rate), FloorRate: mean(v.floorRate), P50Lo: p50, P50Hi: p50}
	if n == 0 {
		return st
	}
	st.Spread = slices.Max(v.above) - slices.Min(v.above)
	st.FloorDrift = slices.Max(v.floor) - slices.Min(v.floor)
	st.Noisy = p50 > 0 && st.FloorDrift >= results.NoisyShare*p50
	if n < 2 {
		return st
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	center := v.estimate(all)
	rng := newBootstrap()
	idx := make([]int, n)
	devs := make([]float64, bootstrapReps)
	for b := range devs {
		resample(rng, idx)
		devs[b] = v.estimate(idx) - center
	}
	slices.Sort(devs)
	st.P50Lo = max(p50+quantileSorted(devs, 0.025), 0)
	st.P50Hi = max(p50+quantileSorted(devs, 0.975), 0)
	return st
}

// quantileSorted is the q quantile (0..1) of sorted values, by the nearest rank.
func quantileSorted(s []float64, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
