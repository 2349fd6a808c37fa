package bench

import (
	"errors"
	"fmt"
	"sort"

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
		backend, metric := key, "per-packet p50 ns above floor"
		if len(key) > 8 && key[len(key)-8:] == "/testrun" {
			backend, metric = key[:len(key)-8], "test-run new-deny bpf ns (batch means)"
		}
		r.addFit(backend, metric, "pods", pts)
	}
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
// enough to tell quadratic from linear and flat from growing, and no finer.
const (
	quadraticMin = 1.5  // rules ∝ pods^a with a ≥ this reads as O(pods²)
	identQuadMax = 2.2  // policy entries ∝ identities^a with a ≤ this is within O(identities²)
	flatMax      = 0.15 // per-packet cost ∝ pods^a with a ≤ this is flat
	growingMin   = 0.2  // per-packet cost ∝ pods^a with a ≥ this grows
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

func (r *Runner) claimPerPacket() results.Claim {
	c := results.Claim{ID: "ebpf-flat", Statement: "per-packet enforcement cost stays flat with cluster size for eBPF and grows with rules for iptables",
		Status: results.ClaimNotMeasured, Figures: map[string]float64{}}
	eb := r.findFit("ebpf", "per-packet p50 ns above floor", "pods")
	tr := r.findFit("ebpf", "test-run new-deny bpf ns (batch means)", "pods")
	src := "in-kernel stamps on real packets"
	if eb == nil {
		eb, tr = tr, nil
		src = "BPF_PROG_TEST_RUN batch means"
	}
	ipt := r.findFit("iptables", "per-packet p50 ns above floor", "pods")
	var parts []string
	if tr != nil {
		// The hot-cache figure says what the program's logic costs; the stamps add what
		// real packets meet (cold maps and caches). The claim is judged on the stamps.
		c.Figures["ebpf_testrun_exponent"] = tr.Exponent
	}
	ok, measured := true, false
	if eb != nil {
		measured = true
		c.Figures["ebpf_exponent"] = eb.Exponent
		parts = append(parts, fmt.Sprintf("eBPF cost ∝ pods^%.2f (%s, %d scales; flat means ≤ %.2f)", eb.Exponent, src, len(eb.Points), flatMax))
		ok = ok && eb.Exponent <= flatMax
	} else {
		parts = append(parts, "eBPF per-packet cost not measured at two scales")
	}
	if ipt != nil {
		measured = true
		c.Figures["iptables_exponent"] = ipt.Exponent
		parts = append(parts, fmt.Sprintf("iptables cost ∝ pods^%.2f (in-kernel stamps, %d scales; growing means ≥ %.2f)", ipt.Exponent, len(ipt.Points), growingMin))
		ok = ok && ipt.Exponent >= growingMin
	} else {
		parts = append(parts, "iptables per-packet cost not measured at two scales")
	}
	switch {
	case !measured:
	case !ok:
		c.Status = results.ClaimRefuted
	case eb != nil && ipt != nil:
		c.Status = results.ClaimConfirmed
	}
	if tr != nil {
		parts = append(parts, fmt.Sprintf("for comparison, eBPF BPF_PROG_TEST_RUN batch means (hot cache) ∝ pods^%.2f", tr.Exponent))
	}
	c.Evidence = joinSentences(parts)
	return c
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
