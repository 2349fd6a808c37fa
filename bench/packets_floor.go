package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"netpolbench/bench/stamp"
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
