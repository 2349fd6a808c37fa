package reports

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"netpolbench/results"
)

// headlines computes the sentences at the top of a report from the data. Each sentence appears
// only when the run has the figures behind it.
func headlines(run *results.Run) []string {
	var out []string
	out = append(out, latencyHeadline(run)...)
	if s := fitHeadline(run); s != "" {
		out = append(out, s)
	}
	if s := updateHeadline(run, results.EventPodAdd); s != "" {
		out = append(out, s)
	}
	if s := churnHeadline(run); s != "" {
		out = append(out, s)
	}
	for _, c := range run.Caps {
		scope := "every scale"
		if c.Pods > 0 {
			scope = fmtCount(float64(c.Pods)) + " pods"
		}
		verb := "was limited at"
		if c.Skipped {
			verb = "was skipped at"
		}
		out = append(out, fmt.Sprintf("%s %s %s: %s.", c.Backend, verb, scope, strings.TrimSuffix(c.Reason, ".")))
	}
	if len(out) == 0 {
		out = append(out, "This run has no measurements to summarize yet; the sections below say what is missing.")
	}
	return out
}

// reference picks the backend others are compared with: ebpf when present, else the first.
func reference(backends []string) string {
	for _, b := range backends {
		if b == "ebpf" {
			return b
		}
	}
	if len(backends) == 0 {
		return ""
	}
	return backends[0]
}

// latencyHeadline compares backends at the largest scale that has per-packet stamp deltas for
// more than one backend, at p99 above the floor (or raw p99 when there is no floor).
func latencyHeadline(run *results.Run) []string {
	type key struct {
		pods    int
		verdict string
	}
	by := map[key]map[string]results.Histogram{}
	for _, h := range run.Latency {
		if h.Backend == results.BackendFloorName || h.Count == 0 || h.Kind != results.KindStampDelta || (h.Flow != "" && h.Flow != results.FlowNew) {
			continue
		}
		k := key{h.Pods, h.Verdict}
		if by[k] == nil {
			by[k] = map[string]results.Histogram{}
		}
		by[k][h.Backend] = h
	}
	var best *key
	for k, m := range by {
		if len(m) < 2 {
			continue
		}
		if best == nil || k.pods > best.pods || (k.pods == best.pods && k.verdict < best.verdict) {
			kk := k
			best = &kk
		}
	}
	if best == nil {
		return nil
	}
	m := by[*best]
	var backends []string
	for b := range m {
		backends = append(backends, b)
	}
	sort.Strings(backends)
	ref := reference(backends)
	r := m[ref]
	var out []string
	for _, b := range backends {
		if b == ref {
			continue
		}
		h := m[b]
		hv, rv, what := h.Percentiles.P99, r.Percentiles.P99, "per-packet time"
		if h.AboveFloor != nil && r.AboveFloor != nil {
			hv, rv, what = h.AboveFloor.P99, r.AboveFloor.P99, "per-packet cost above the stamping floor"
		}
		verdict := ""
		if best.verdict != "" {
			verdict = " for " + map[string]string{results.VerdictAllow: "allowed", results.VerdictDeny: "denied"}[best.verdict] + " new flows"
		}
		if rv <= 0 {
			out = append(out, fmt.Sprintf("At %s pods %s p99 %s is %s%s; %s is below the floor's resolution.",
				fmtCount(float64(best.pods)), possessive(b), what, fmtNS(hv), verdict, possessive(ref)))
			continue
		}
		out = append(out, fmt.Sprintf("At %s pods %s p99 %s is %s× %s%s (%s vs %s).",
			fmtCount(float64(best.pods)), possessive(b), what, ratioText(hv/rv), possessive(ref), verdict, fmtNS(hv), fmtNS(rv)))
	}
	return out
}

func ratioText(r float64) string {
	switch {
	case r >= 100:
		return trim(math.Round(r), 0)
	case r >= 10:
		return trim(r, 0)
	}
	return trim(r, 1)
}

// fitHeadline names the growth orders a reader looks for first: rules, policy map entries and
// per-packet cost; the scaling section lists every fit.
func fitHeadline(run *results.Run) string {
	categories := []struct {
		match func(results.Fit) bool
	}{
		{func(f results.Fit) bool {
			return strings.Contains(f.Metric, "rules") && !strings.Contains(f.Metric, "bytes")
		}},
		{func(f results.Fit) bool {
			return strings.Contains(f.Metric, "entries") && f.XLabel == "identities"
		}},
		{func(f results.Fit) bool {
			return strings.Contains(f.Metric, "per-packet") || strings.Contains(f.Metric, "above floor")
		}},
	}
	var parts []string
	used := map[int]bool{}
	for _, c := range categories {
		for i, f := range run.Fits {
			if !used[i] && len(f.Points) >= 2 && c.match(f) {
				used[i] = true
				parts = append(parts, fmt.Sprintf("%s %s grow as %s^%s", f.Backend, f.Metric, f.XLabel, trim(f.Exponent, 2)))
			}
		}
	}
	if len(parts) == 0 {
		for _, f := range run.Fits {
			if len(f.Points) >= 2 && len(parts) < 3 {
				parts = append(parts, fmt.Sprintf("%s %s grow as %s^%s", f.Backend, f.Metric, f.XLabel, trim(f.Exponent, 2)))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "Growth: " + strings.Join(parts, "; ") + "."
}

// possessive is "iptables'" or "ebpf's".
func possessive(name string) string {
	if strings.HasSuffix(name, "s") {
		return name + "'"
	}
	return name + "'s"
}

func updateHeadline(run *results.Run, event string) string {
	maxPods := map[string]int{}
	for _, u := range run.Updates {
		if u.Event == event && len(u.ApplyNS) > 0 {
			maxPods[u.Backend] = max(maxPods[u.Backend], u.Pods)
		}
	}
	// The largest scale every backend reached.
	pods := math.MaxInt
	for _, p := range maxPods {
		pods = min(pods, p)
	}
	if len(maxPods) == 0 {
		return ""
	}
	var parts []string
	var backends []string
	for b := range maxPods {
		backends = append(backends, b)
	}
	sort.Strings(backends)
	for _, b := range backends {
		for _, u := range run.Updates {
			if u.Event == event && u.Backend == b && u.Pods == pods && len(u.ApplyNS) > 0 {
				s := fmt.Sprintf("%s with %s", fmtNS(median(u.ApplyNS)), b)
				if len(u.KernelOps) > 0 && u.OpsUnit != "" {
					s += fmt.Sprintf(" (%s %s)", fmtCount(median(u.KernelOps)), u.OpsUnit)
				}
				parts = append(parts, s)
				break
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	name := strings.ReplaceAll(event, "-", " ")
	return fmt.Sprintf("At %s pods a %s costs %s (median apply time).", fmtCount(float64(pods)), name, strings.Join(parts, " vs "))
}

func churnHeadline(run *results.Run) string {
	// Only each backend's largest scale: the table in the churn section has the rest.
	largest := map[string]int{}
	for _, tl := range run.Churn {
		largest[tl.Backend] = max(largest[tl.Backend], tl.Pods)
	}
	var parts []string
	for _, tl := range run.Churn {
		if tl.Pods != largest[tl.Backend] {
			continue
		}
		var sent, lost int64
		worst := 0.0
		for _, p := range tl.Points {
			sent, lost = sent+p.Sent, lost+p.Lost
			worst = math.Max(worst, p.P99US)
		}
		if sent == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s lost %s of %s packets (worst interval p99 %s) at %s pods",
			tl.Backend, fmtCount(float64(lost)), fmtCount(float64(sent)), fmtNS(worst*1e3), fmtCount(float64(tl.Pods))))
	}
	if len(parts) == 0 {
		return ""
	}
	return "Under churn, " + strings.Join(parts, "; ") + "."
}
