package gate

import (
	"math"
	"sort"
)

// signedRank compares paired samples (cur[i] against base[i]) with the exact two-sided
// Wilcoxon signed-rank test on log(cur[i]/base[i]), and returns its p-value and the effect: the
// median of those log ratios as a relative change (0.3 = 30% higher). Pairs with a zero or
// negative value, or no change, carry no sign and are left out, as the test does with zero
// differences; tied magnitudes share their average rank.
func signedRank(base, cur []float64) (p, effect float64) {
	var d []float64
	var logs []float64
	for i := range base {
		if base[i] <= 0 || cur[i] <= 0 {
			continue
		}
		l := math.Log(cur[i] / base[i])
		logs = append(logs, l)
		if l != 0 {
			d = append(d, l)
		}
	}
	if len(logs) == 0 {
		return 1, 0
	}
	effect = math.Expm1(median(logs))
	n := len(d)
	if n == 0 {
		return 1, effect
	}
	// Doubled ranks of |d| (averages of ties stay integers), and W+ in those units.
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return math.Abs(d[idx[a]]) < math.Abs(d[idx[b]]) })
	rank2 := make([]int, n)
	for i := 0; i < n; {
		j := i
		for j+1 < n && math.Abs(d[idx[j+1]]) == math.Abs(d[idx[i]]) {
			j++
		}
		// Ranks i+1..j+1 averaged, doubled: (i+1 + j+1).
		for k := i; k <= j; k++ {
			rank2[idx[k]] = i + j + 2
		}
		i = j + 1
	}
	wplus := 0
	for i, r := range rank2 {
		if d[i] > 0 {
			wplus += r
		}
	}
	// The null distribution of W+: each rank's sign is a fair coin.
	total := 0
	for _, r := range rank2 {
		total += r
	}
	dist := make([]float64, total+1)
	dist[0] = 1
	for _, r := range rank2 {
		for s := total; s >= r; s-- {
			dist[s] += dist[s-r]
		}
	}
	all := math.Pow(2, float64(n))
	var lo, hi float64
	for s, c := range dist {
		if s <= wplus {
			lo += c
		}
		if s >= wplus {
			hi += c
		}
	}
	return min(1, 2*min(lo, hi)/all), effect
}

// minSignedRankP is the smallest two-sided p-value the signed-rank test can give n pairs: all
// signs alike.
func minSignedRankP(n int) float64 { return min(1, 2/math.Pow(2, float64(n))) }
