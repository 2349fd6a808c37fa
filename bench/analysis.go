package bench

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"netpolbench/results"
)

// labelSetSizeBenchmark records the exact sizes of a label-set sweep point, whose pods count
// repeats across points and so cannot go into Sizes (keyed by backend and pods).
func labelSetSizeBenchmark(s results.Size, label string) results.Benchmark {
	ms := []results.Metric{{Unit: "identities", Exact: true, Samples: []float64{float64(s.Identities)}}}
	if len(s.Maps) > 0 {
		ms = append(ms, results.Metric{Unit: "entries", Exact: true, Samples: []float64{float64(s.TotalEntries())}},
			results.Metric{Unit: "policy-entries", Exact: true, Samples: []float64{float64(policyMapEntries(s))}})
	}
	if r := stateRules(s); r > 0 {
		ms = append(ms, results.Metric{Unit: "rules", Exact: true, Samples: []float64{r}})
	}
	return results.Benchmark{Name: fmt.Sprintf("BenchmarkSize/backend=%s/%s", s.Backend, label), Iters: 1, Metrics: ms}
}

// series is one metric of one backend over the sweep.
type series struct {
	metric, xLabel string
	y              func(p sizePoint) float64
	x              func(p sizePoint) float64
	// labelSweep selects the label-set sweep's points (pods fixed) instead of the pods sweep's.
	labelSweep bool
}

var fitSeries = []series{
	{metric: "rules", xLabel: "pods", y: func(p sizePoint) float64 { return stateRules(p.size) }},
	{metric: "restore bytes", xLabel: "pods", y: func(p sizePoint) float64 {
		if p.size.Iptables == nil {
			return 0
		}
		return float64(p.size.Iptables.RestoreBytes)
	}},
	{metric: "ipset members", xLabel: "pods", y: func(p sizePoint) float64 {
		if p.size.Iptables == nil {
			return 0
		}
		return float64(p.size.Iptables.IpsetMembers)
	}},
	{metric: "set elements", xLabel: "pods", y: func(p sizePoint) float64 {
		if p.size.Nftables == nil {
			return 0
		}
		return float64(p.size.Nftables.Elements)
	}},
	{metric: "kernel bytes", xLabel: "pods", y: func(p sizePoint) float64 {
		if p.size.KernelBytes == nil {
			return 0
		}
		return float64(*p.size.KernelBytes)
	}},
	{metric: "map entries", xLabel: "pods", y: func(p sizePoint) float64 { return float64(p.size.TotalEntries()) }},
	{metric: "map bytes", xLabel: "pods", y: func(p sizePoint) float64 { return float64(p.size.TotalMapBytes()) }},
	{metric: "policy entries", xLabel: "pods", y: func(p sizePoint) float64 { return float64(policyMapEntries(p.size)) }},
	{metric: "policy entries", xLabel: "identities", y: func(p sizePoint) float64 { return float64(policyMapEntries(p.size)) },
		x: func(p sizePoint) float64 { return float64(p.identities) }},
	{metric: "policy entries", xLabel: "identities", labelSweep: true, y: func(p sizePoint) float64 { return float64(policyMapEntries(p.size)) },
		x: func(p sizePoint) float64 { return float64(p.identities) }},
	{metric: "rules", xLabel: "identities", labelSweep: true, y: func(p sizePoint) float64 { return stateRules(p.size) },
		x: func(p sizePoint) float64 { return float64(p.identities) }},
	{metric: "full sync ns", xLabel: "pods", y: func(p sizePoint) float64 { return p.syncNS }},
	{metric: "pod-add apply ns", xLabel: "pods", y: func(p sizePoint) float64 { return p.podAddNS }},
}

// stateRules is the iptables or nftables rules of a size (0 for a backend without rules).
func stateRules(s results.Size) float64 {
	switch {
	case s.Iptables != nil:
		return float64(s.Iptables.Rules)
	case s.Nftables != nil:
		return float64(s.Nftables.Rules)
	}
	return 0
}

// fits fits every series with at least two points of distinct x.
func (r *Runner) fits() {
	var names []string
	for n := range r.sizes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, b := range names {
		for _, s := range fitSeries {
			var pts []results.Point
			for _, p := range r.sizes[b] {
				if (p.labelSets > 0) != s.labelSweep {
					continue
				}
				x := float64(p.pods)
				if s.x != nil {
					x = s.x(p)
				}
				if y := s.y(p); y > 0 {
					pts = append(pts, results.Point{X: x, Y: y})
				}
			}
			metric := s.metric
			if s.labelSweep {
				metric += " (label-set sweep)"
			}
			r.addFit(b, metric, s.xLabel, pts)
		}
	}
	var pk []string
	for n := range r.pkt {
		pk = append(pk, n)
	}
	sort.Strings(pk)
	for _, key := range pk {
		var pts []results.Point
		for _, p := range r.pkt[key] {
			pts = append(pts, results.Point{X: float64(p.pods), Y: p.syncNS})
		}
		if backend, ok := strings.CutSuffix(key, "/testrun"); ok {
			r.addFit(backend, "test-run new-deny bpf ns (batch means)", "pods", pts)
		}
	}
	r.packetFits()
}

// packetPathMetric names the fit of one path of new flows: "per-packet p50 ns above floor,
// tcx/both".
func packetPathMetric(span, path string) string {
	return fmt.Sprintf("per-packet p50 ns above floor, %s/%s", span, path)
}

// packetFits fits, per backend and headline path of new flows, the p50 above the floor of the
// headline passes against pods (from the BenchmarkPacketPath benchmarks, so a resumed run fits
// every scale), each path apart: pooled over paths, a figure would follow the mix of paths as
// well as the scale. The exponent gets a 95% interval from resampling each scale's rounds (a
// backend round with its floor round), refitting, and shifting the exponent by the 2.5th and
// 97.5th percentiles of the refits' distance to the fit of all rounds.
func (r *Runner) packetFits() {
	type series struct {
		backend, span, path string
		pts                 []results.Point
		rounds              []roundView
	}
	var order []string
	byKey := map[string]*series{}
	for _, b := range r.run.Benchmarks {
		rest, ok := strings.CutPrefix(b.Name, packetPathBench)
		if !ok {
			continue
		}
		kv := nameKeys(rest)
		pods, err := strconv.Atoi(kv["pods"])
		if err != nil || len(kv) != 6 || kv["flow"] != results.FlowNew {
			// A variant (rate=sparse, flows=…, headroom=…) is not the sweep's curve.
			continue
		}
		y, above, floor := b.Metric("above-floor-ns"), b.Metric("round-above-floor-ns"), b.Metric("round-floor-ns")
		if y == nil || above == nil || floor == nil || len(y.Samples) != 1 || len(above.Samples) != len(floor.Samples) {
			continue
		}
		key := kv["backend"] + "/" + kv["span"] + "/" + kv["path"]
		s := byKey[key]
		if s == nil {
			s = &series{backend: kv["backend"], span: kv["span"], path: kv["path"]}
			byKey[key] = s
			order = append(order, key)
		}
		s.pts = append(s.pts, results.Point{X: float64(pods), Y: y.Samples[0]})
		s.rounds = append(s.rounds, roundView{above: above.Samples, floor: floor.Samples})
	}
	sort.Strings(order)
	for _, key := range order {
		s := byKey[key]
		f, err := results.FitPowerLaw(s.backend, packetPathMetric(s.span, s.path), "pods", s.pts)
		if err != nil {
			if !errors.Is(err, results.ErrTooFewPoints) {
				r.logf("bench: fit %s %s: %v", s.backend, key, err)
			}
			continue
		}
		f.ExponentLo, f.ExponentHi = exponentInterval(f, s.pts, s.rounds)
		r.run.Fits = append(r.run.Fits, f)
	}
}

// exponentInterval is the 95% interval of f's exponent from resampling each point's rounds
// (points with fewer than two rounds stay where they are).
func exponentInterval(f results.Fit, pts []results.Point, rounds []roundView) (lo, hi float64) {
	centers := make([]float64, len(rounds))
	idx := make([][]int, len(rounds))
	for i, v := range rounds {
		idx[i] = make([]int, len(v.above))
		for j := range idx[i] {
			idx[i][j] = j
		}
		if len(v.above) > 0 {
			centers[i] = v.estimate(idx[i])
		}
	}
	rng := newBootstrap()
	devs := make([]float64, 0, bootstrapReps)
	re := make([]results.Point, len(pts))
	for range bootstrapReps {
		for i, v := range rounds {
			re[i] = pts[i]
			if len(v.above) < 2 {
				continue
			}
			resample(rng, idx[i])
			// The point moves as far as its resampled rounds move the estimate; a cost at or
			// below the floor is the histograms' 1 ns.
			re[i].Y = max(pts[i].Y+v.estimate(idx[i])-centers[i], histMin)
		}
		g, err := results.FitPowerLaw(f.Backend, f.Metric, f.XLabel, re)
		if err == nil {
			devs = append(devs, g.Exponent-f.Exponent)
		}
	}
	if len(devs) == 0 {
		return f.Exponent, f.Exponent
	}
	slices.Sort(devs)
	return f.Exponent + quantileSorted(devs, 0.025), f.Exponent + quantileSorted(devs, 0.975)
}

// nameKeys reads the key=value parts of a benchmark name.
func nameKeys(name string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(name, "/") {
		if k, v, ok := strings.Cut(part, "="); ok {
			out[k] = v
		}
	}
	return out
}

func (r *Runner) addFit(backend, metric, xLabel string, pts []results.Point) {
	f, err := results.FitPowerLaw(backend, metric, xLabel, pts)
	if errors.Is(err, results.ErrTooFewPoints) {
		return
	}
	if err != nil {
		r.logf("bench: fit %s %s: %v", backend, metric, err)
		return
	}
	r.run.Fits = append(r.run.Fits, f)
}

func (r *Runner) findFit(backend, metric, xLabel string) *results.Fit {
	for i := range r.run.Fits {
		f := &r.run.Fits[i]
		if f.Backend == backend && f.Metric == metric && f.XLabel == xLabel {
			return f
		}
	}
	return nil
}

// Thresholds of the claims. Exponents from a handful of scales are rough; the bands are wide
// enough to tell quadratic from linear, and no finer. The per-packet claim is judged on each
// exponent's interval, not on the exponent alone.
const (
	quadraticMin = 1.5 // rules ∝ pods^a with a ≥ this reads as O(pods²)
	identQuadMax = 2.2 // policy entries ∝ identities^a with a ≤ this is within O(identities²)
	// flatMax: per-packet cost ∝ pods^a is flat when a's interval ends at or below this, a
	// growth under 1.41× over 1,000 times the pods (100 to 100,000).
	flatMax = 0.05
	// growingMin: it grows with the rules when a's interval starts at or above this, 4× or
	// more over 1,000 times the pods.
	growingMin = 0.2
)

func (r *Runner) claims() {
	r.run.Claims = append(r.run.Claims, r.claimRules(), r.claimPerPacket(), r.claimPodAdd())
}

func (r *Runner) mapBackend() string {
	for _, b := range []string{"ebpf", "compiled"} {
		if len(r.sizes[b]) > 0 {
			return b
		}
	}
	return ""
}

func (r *Runner) claimRules() results.Claim {
	c := results.Claim{ID: "rules-quadratic", Statement: "iptables rules grow as O(pods²); identity-based policy map entries grow as O(identities²), not with pods",
		Status: results.ClaimNotMeasured, Figures: map[string]float64{}}
	ipt := r.findFit("iptables", "rules", "pods")
	mb := r.mapBackend()
	var ent *results.Fit
	if mb != "" {
		ent = r.findFit(mb, "policy entries (label-set sweep)", "identities")
		if ent == nil {
			ent = r.findFit(mb, "policy entries", "identities")
		}
	}
	if ipt == nil || ent == nil {
		c.Evidence = "needs iptables rules and policy map entries at two or more scales"
		return c
	}
	c.Figures["iptables_rules_exponent_pods"] = ipt.Exponent
	c.Figures["policy_entries_exponent_identities"] = ent.Exponent
	if pe := r.findFit(mb, "policy entries", "pods"); pe != nil {
		c.Figures["policy_entries_exponent_pods"] = pe.Exponent
	}
	if ipt.Exponent >= quadraticMin && ent.Exponent <= identQuadMax {
		c.Status = results.ClaimConfirmed
	} else {
		c.Status = results.ClaimRefuted
	}
	c.Evidence = fmt.Sprintf("iptables rules ∝ pods^%.2f (R² %.2f, %d scales); %s policy entries ∝ identities^%.2f (R² %.2f); thresholds: rules exponent ≥ %.1f, entries exponent ≤ %.1f",
		ipt.Exponent, ipt.R2, len(ipt.Points), mb, ent.Exponent, ent.R2, quadraticMin, identQuadMax)
	return c
}

// claimPaths are the paths of new flows the per-packet claim is judged on, per backend: a
// pod-to-pod flow allowed, denied at its source's point and denied at its destination's.
var claimPaths = map[string][][2]string{
	"ebpf":     {{"tcx", "both"}, {"tcx", "drop-ingress"}, {"tcx", "drop-egress"}},
	"iptables": {{"nf-path", "pass"}, {"nf-path", "drop"}},
	"nftables": {{"nf-path", "pass"}, {"nf-path", "drop"}},
}

// pathWords says what a path of new flows is, in the claim's evidence.
var pathWords = map[string]string{
	"both": "allowed", "drop-ingress": "denied at the source", "drop-egress": "denied at the destination",
	"pass": "allowed", "drop": "denied",
}

// claimPerPacket judges "flat for eBPF, growing for iptables" path by path, on the interval of
// each path's exponent: flat when every eBPF path's interval ends at or below flatMax, growing
// when every iptables path's starts at or above growingMin; refuted when an eBPF interval
// starts above flatMax or an iptables one ends below growingMin; inconclusive when the
// intervals straddle the thresholds. The evidence gives every exponent with its interval and
// the growth it means over the measured range.
func (r *Runner) claimPerPacket() results.Claim {
	c := results.Claim{ID: "ebpf-flat", Statement: fmt.Sprintf("per-packet enforcement cost of a new flow stays flat with cluster size for eBPF "+
		"(cost ∝ pods^a with a ≤ %.2f: under %.2f× over 1,000× the pods) and grows with the rules for iptables (a ≥ %.1f), on every path",
		flatMax, math.Pow(1000, flatMax), growingMin),
		Status: results.ClaimNotMeasured, Figures: map[string]float64{}}
	var parts []string
	flat, growing := map[string]bool{}, map[string]bool{}
	refuted := false
	// nftables is evidence beside the claim, which speaks of eBPF and iptables only.
	for _, backend := range []string{"ebpf", "iptables", "nftables"} {
		var fits []string
		all := true
		for _, sp := range claimPaths[backend] {
			f := r.findFit(backend, packetPathMetric(sp[0], sp[1]), "pods")
			if f == nil {
				all = false
				continue
			}
			key := fmt.Sprintf("%s_%s_exponent", backend, strings.ReplaceAll(sp[1], "-", "_"))
			c.Figures[key], c.Figures[key+"_lo"], c.Figures[key+"_hi"] = f.Exponent, f.ExponentLo, f.ExponentHi
			fits = append(fits, fmt.Sprintf("%s ∝ pods^%.2f [%.2f, %.2f] (×%s over %s–%s pods)", pathWords[sp[1]], f.Exponent, f.ExponentLo, f.ExponentHi,
				trimFloat(f.Growth(f.Exponent)), fmtPods(f.Points[0].X), fmtPods(f.Points[len(f.Points)-1].X)))
			switch backend {
			case "ebpf":
				all = all && f.ExponentHi <= flatMax
				refuted = refuted || f.ExponentLo > flatMax
			case "iptables":
				all = all && f.ExponentLo >= growingMin
				refuted = refuted || f.ExponentHi < growingMin
			}
		}
		name := map[string]string{"ebpf": "eBPF", "iptables": "iptables", "nftables": "for comparison, nftables"}[backend]
		if len(fits) == 0 {
			if backend != "nftables" {
				parts = append(parts, name+" per-packet cost not measured at two scales")
			}
			continue
		}
		parts = append(parts, fmt.Sprintf("%s new flows above the floor (in-kernel stamps at one rate, exponent with its 95%% interval over the rounds): %s", name, strings.Join(fits, ", ")))
		switch backend {
		case "ebpf":
			flat[backend] = all
		case "iptables":
			growing[backend] = all
		}
	}
	if tr := r.findFit("ebpf", "test-run new-deny bpf ns (batch means)", "pods"); tr != nil {
		// The hot-cache figure says what the program's logic costs; the stamps add what
		// real packets meet (cold maps and caches). The claim is judged on the stamps.
		c.Figures["ebpf_testrun_exponent"] = tr.Exponent
		parts = append(parts, fmt.Sprintf("for comparison, eBPF BPF_PROG_TEST_RUN batch means (hot cache) ∝ pods^%.2f", tr.Exponent))
	}
	_, ebpfMeasured := flat["ebpf"]
	_, iptMeasured := growing["iptables"]
	switch {
	case refuted:
		c.Status = results.ClaimRefuted
	case ebpfMeasured && iptMeasured && flat["ebpf"] && growing["iptables"]:
		c.Status = results.ClaimConfirmed
	case ebpfMeasured && iptMeasured:
		c.Status = results.ClaimInconclusive
	}
	c.Evidence = joinSentences(parts)
	return c
}

// fmtPods prints a pod count as the evidence does: 100, 10k, 100k.
func fmtPods(n float64) string {
	if n >= 1000 && math.Mod(n, 1000) == 0 {
		return fmt.Sprintf("%gk", n/1000)
	}
	return fmt.Sprintf("%g", n)
}

// trimFloat prints a growth factor to two significant digits, or whole above 10: 1.3, 12, 340.
func trimFloat(v float64) string {
	if v >= 10 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

func (r *Runner) claimPodAdd() results.Claim {
	c := results.Claim{ID: "pod-add-no-map-change", Statement: "adding a pod with an existing label set changes no policy map entry",
		Status: results.ClaimNotMeasured, Figures: map[string]float64{}}
	mb := ""
	for _, b := range []string{"ebpf", "compiled"} {
		if r.podAdd[b] != nil && r.podAdd[b].events > 0 {
			mb = b
			break
		}
	}
	if mb == "" {
		c.Evidence = "no pod-add event was applied to an identity-based backend"
		return c
	}
	chk := r.podAdd[mb]
	c.Figures["events"] = float64(chk.events)
	c.Figures["rule_entries_changed"] = float64(chk.entriesChanged)
	changed := chk.entriesChanged != 0
	ev := fmt.Sprintf("%d pod adds with existing label sets on %s: %d rule-set entries changed in the compiled deltas", chk.events, mb, chk.entriesChanged)
	if chk.measured {
		c.Figures["policy_map_entries_before"] = float64(chk.policyEntriesBefore)
		c.Figures["policy_map_entries_after"] = float64(chk.policyEntriesAfter)
		ev += fmt.Sprintf("; policy map entries summed over the events %d before, %d after", chk.policyEntriesBefore, chk.policyEntriesAfter)
		changed = changed || chk.policyEntriesBefore != chk.policyEntriesAfter
	}
	if changed {
		c.Status = results.ClaimRefuted
	} else {
		c.Status = results.ClaimConfirmed
	}
	c.Evidence = ev
	return c
}

func joinSentences(parts []string) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += "; "
		}
		s += p
	}
	return s
}
