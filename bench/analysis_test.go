package bench

import (
	"math"
	"testing"

	"netpolbench/results"
)

// TestNftablesGrowthIsFittedLikeTheOthers: nftables' rules, set elements and every backend's
// kernel memory get growth exponents over the sweep; a size without kernel memory (null) adds
// no point.
func TestNftablesGrowthIsFittedLikeTheOthers(t *testing.T) {
	r := &Runner{run: results.New(), sizes: map[string][]sizePoint{}, pkt: map[string][]sizePoint{}}
	for _, n := range []int{100, 1000, 10000} {
		x := float64(n)
		kb := uint64(80 * x * math.Sqrt(x))
		r.sizes["nftables"] = append(r.sizes["nftables"], sizePoint{pods: n, identities: n / 10,
			size: results.Size{KernelBytes: &kb, Nftables: &results.NftablesSize{Rules: uint64(x / 4), Elements: uint64(3 * x * x)}}})
		r.sizes["compiled"] = append(r.sizes["compiled"], sizePoint{pods: n, size: results.Size{Maps: []results.MapSize{{Name: "rulesets", Entries: uint64(n)}}}})
	}
	r.fits()
	for _, c := range []struct {
		metric string
		want   float64
	}{{"rules", 1}, {"set elements", 2}, {"kernel bytes", 1.5}} {
		f := r.findFit("nftables", c.metric, "pods")
		if f == nil {
			t.Errorf("no fit for nftables %s", c.metric)
			continue
		}
		if math.Abs(f.Exponent-c.want) > 0.05 {
			t.Errorf("nftables %s: exponent %.3f, want %.1f", c.metric, f.Exponent, c.want)
		}
	}
	if f := r.findFit("compiled", "kernel bytes", "pods"); f != nil {
		t.Errorf("fitted kernel memory of a backend that has none: %+v", f)
	}
}
