package gate

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// bruteSignedRank is the two-sided signed-rank p-value by enumerating every sign assignment.
func bruteSignedRank(d []float64) float64 {
	var nz []float64
	for _, x := range d {
		if x != 0 {
			nz = append(nz, x)
		}
	}
	n := len(nz)
	abs := make([]float64, n)
	for i, x := range nz {
		abs[i] = math.Abs(x)
	}
	sorted := append([]float64(nil), abs...)
	sort.Float64s(sorted)
	rank := func(v float64) float64 {
		lo, hi := sort.SearchFloat64s(sorted, v), sort.SearchFloat64s(sorted, math.Nextafter(v, math.Inf(1)))
		return float64(lo+1+hi) / 2
	}
	w := 0.0
	for i, x := range nz {
		if x > 0 {
			w += rank(abs[i])
		}
	}
	var le, ge int
	for mask := 0; mask < 1<<n; mask++ {
		s := 0.0
		for i := range n {
			if mask&(1<<i) != 0 {
				s += rank(abs[i])
			}
		}
		if s <= w+1e-9 {
			le++
		}
		if s >= w-1e-9 {
			ge++
		}
	}
	return math.Min(1, 2*float64(min(le, ge))/math.Pow(2, float64(n)))
}

func TestSignedRankMatchesEnumerationWithTiesAndZeros(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for c := range 200 {
		n := 1 + rng.IntN(12)
		base, cur := make([]float64, n), make([]float64, n)
		var d []float64
		for i := range n {
			base[i] = float64(1 + rng.IntN(4))
			// Few distinct factors, so magnitudes tie and some pairs do not change.
			cur[i] = base[i] * []float64{0.5, 0.8, 1, 1, 1.25, 2}[rng.IntN(6)]
			d = append(d, math.Log(cur[i]/base[i]))
		}
		p, _ := signedRank(base, cur)
		if want := bruteSignedRank(d); math.Abs(p-want) > 1e-12 {
			t.Fatalf("case %d: p %v, enumeration %v (base %v cur %v)", c, p, want, base, cur)
		}
	}
	if p, eff := signedRank([]float64{1, 2, 3, 4, 5, 6}, []float64{2, 4, 6, 8, 10, 12}); p != 2.0/64 || math.Abs(eff-1) > 1e-12 {
		t.Errorf("six pairs all doubled: p %v effect %v, want 1/32 and +100%%", p, eff)
	}
}
