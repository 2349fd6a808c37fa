package reports

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"netpolbench/results"
)

// ciliumEnforceNS is Cilium's published figure the end-to-end latencies are held against: at
// 1,000 nodes and 50,000 pods, after 250 policies, no endpoint took more than 600 ms to
// enforce (the performance anchors).
const ciliumEnforceNS = 600e6

// e2eRun is one end-to-end run with the percentiles of its stages.
type e2eRun struct {
	results.EndToEnd
	// stages holds the run's enforcement histograms by stage label; reach and enforce the
	// two ClusterLoader2 latencies.
	stages         map[string]*results.Histogram
	reach, enforce *results.Histogram
}

// e2eRuns pairs every end-to-end run with its histograms, ordered by scale, backend and rate.
func e2eRuns(run *results.Run) []e2eRun {
	var out []e2eRun
	for _, e := range run.EndToEnd {
		r := e2eRun{EndToEnd: e, stages: map[string]*results.Histogram{}}
		qps := strconv.FormatFloat(e.QPS, 'g', -1, 64)
		for i := range run.Latency {
			h := &run.Latency[i]
			if h.Kind != results.KindEnforcement || h.Backend != e.Backend || h.Pods != e.Pods || h.Labels["qps"] != qps {
				continue
			}
			switch st := h.Labels["stage"]; {
			case st == results.StageReachability:
				r.reach = h
			case st == results.StageEnforcement:
				r.enforce = h
			case h.Labels["event"] == "":
				r.stages[st] = h
			}
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Pods != b.Pods {
			return a.Pods < b.Pods
		}
		if a.Backend != b.Backend {
			return a.Backend < b.Backend
		}
		return a.QPS < b.QPS
	})
	return out
}

// enforced is the stage that says when the run's events were enforced: the first packet with
// the new verdict where the run probed, else the backend's acknowledgement.
func (r e2eRun) enforced() (*results.Histogram, string) {
	if h := r.stages[results.StageProbe]; h != nil && h.Count > 0 {
		return h, "first packet"
	}
	return r.stages[results.StageApply], "applied"
}

func pct(h *results.Histogram) (p50, p99 string) {
	if h == nil || h.Count == 0 {
		return "–", "–"
	}
	v, word := tail99(h)
	if word != "p99" {
		return fmtNS(h.Percentiles.P50), word + " " + fmtNS(v)
	}
	return fmtNS(h.Percentiles.P50), fmtNS(v)
}

// tail99 is h's p99, or its max where too few values lie beyond a p99 for one to be given
// (results.TailShown: under 1,000 events), with the word for which it is. The max is the
// stricter figure, so a run held against a bound on it is not flattered by the gap.
func tail99(h *results.Histogram) (ns float64, word string) {
	if h.Percentiles.Has(99) {
		return h.Percentiles.P99, "p99"
	}
	return float64(h.Max), "max"
}

// endToEnd is the report's section on churn written through an API server.
func (b *builder) endToEnd() (Section, error) {
	s := Section{ID: "endtoend", Title: "End to end: API write to enforcement",
		Intro: "Churn written through a Kubernetes API server at a set rate (an embedded etcd and kube-apiserver unless the run names a real cluster), enforced by the agent with one backend at a time, each with its own testbed. " +
			"Every event is timed from the start of its write: the API server's acknowledgement, the watch event at the agent, its dequeue, the delta computed, the backend's acknowledgement, and the first probe packet sent with the event's new verdict (new flows a millisecond apart through the testbed, for events the prober found a flow for; a drop counts once packets stay dropped for 50 ms). " +
			"ClusterLoader2's two latencies are taken from the acknowledged write: pod creation reachability (pod adds) and policy enforcement (policy adds, updates and removes). " +
			"Cilium reports no endpoint taking more than 600 ms to enforce after 250 policies at 50,000 pods; these runs share two cores between the API server, etcd, the agent, the writers and the probes, so the figures are an upper bound on what the agent and backend cost."}
	runs := e2eRuns(b.run)
	if len(runs) == 0 {
		s.Empty = "No end-to-end runs in this run (bench --apiserver, or the default sweep with the control plane built)."
		return s, nil
	}
	if e := endToEndSentence(b.run); e != "" {
		s.Digest = strings.ToUpper(e[:1]) + e[1:]
	}
	head := Table{Caption: "Time to enforcement, p50 / p99: from the write to the first packet with the new verdict (else to the backend's acknowledgement), ClusterLoader2's two latencies from the acknowledged write, and the agent's share; the queue left is the work the agent still had when the writes ended", Head: []string{"Backend", "Pods", "Events/s asked → written", "Paired", "Queue left",
		"Enforced", "Pod reachability", "Policy enforcement", "Agent", "p99 ≤ 600 ms"}}
	stages := Table{Caption: "Stages, p50 / p99 from the start of the write: API acknowledgement, watch event at the agent, dequeued, delta computed, backend applied, first packet with the new verdict", Head: []string{"Backend", "Pods", "Events/s",
		"ack", "watch", "dequeue", "compute", "apply", "probe", "Probed", "Probes failed"}}
	failures := Table{Caption: "Probe failures (the last of each run)", Head: []string{"Backend", "Pods", "Events/s", "Failure"}}
	load := Table{Caption: "API server load during each run (every client's requests, the writers' and the agent's)", Head: []string{"Backend", "Pods", "Events/s",
		"Requests", "By verb and resource", "Watch events sent", "Agent start (list, compile, sync)"}}
	for _, r := range runs {
		enf, what := r.enforced()
		e50, e99 := pct(enf)
		r50, r99 := pct(r.reach)
		p50, p99 := pct(r.enforce)
		a50, a99 := pct(r.stages[results.StageAgent])
		within := cls("–", "muted")
		if enf != nil && enf.Count > 0 {
			v, word := tail99(enf)
			by := ""
			if word != "p99" {
				by = ", by the " + word
			}
			if v <= ciliumEnforceNS {
				within = cls("yes"+by, "good")
			} else {
				within = cls(fmt.Sprintf("no (%s%s)", ratioText(v/ciliumEnforceNS), by), "bad")
			}
		}
		paired := fmt.Sprintf("%d of %d", r.Samples, r.Writes)
		pairedCell := num(paired)
		if r.Unmatched > 0 || r.Failed > 0 {
			pairedCell = cls(paired, "num bad")
		}
		if what != "first packet" {
			e99 += " (" + what + ")"
		}
		queue := num(fmtNS(float64(r.DrainNS)))
		if !r.KeptUp() {
			queue = cls(fmtNS(float64(r.DrainNS))+" (fell behind)", "num bad")
		}
		head.Rows = append(head.Rows, []Cell{txt(r.Backend), num(fmtCount(float64(r.Pods))), num(trim(r.QPS, 1) + " → " + trim(r.Achieved(), 1)), pairedCell, queue,
			num(e50 + " / " + e99), num(r50 + " / " + r99), num(p50 + " / " + p99), num(a50 + " / " + a99), within})

		row := []Cell{txt(r.Backend), num(fmtCount(float64(r.Pods))), num(trim(r.QPS, 1))}
		for _, st := range []string{results.StageAck, results.StageWatch, results.StageDequeue, results.StageCompute, results.StageApply, results.StageProbe} {
			v50, v99 := pct(r.stages[st])
			row = append(row, num(v50+" / "+v99))
		}
		probed := num(fmt.Sprintf("%d (%d skipped)", r.Probed, r.ProbesSkipped))
		if !strings.HasPrefix(r.Probe, "real packets") {
			probed = cls(strings.TrimPrefix(r.Probe, "not measured: "), "muted")
		}
		failed := num(fmt.Sprint(r.ProbesFailed))
		if r.ProbesFailed > 0 || r.ProbeError != "" {
			failed = cls(fmt.Sprint(r.ProbesFailed), "num bad")
			failures.Rows = append(failures.Rows, []Cell{txt(r.Backend), num(fmtCount(float64(r.Pods))), num(trim(r.QPS, 1)), txt(clip(r.ProbeError, 300))})
		}
		stages.Rows = append(stages.Rows, append(row, probed, failed))

		var total int64
		for _, v := range r.Requests {
			total += v
		}
		var watches int64
		for _, v := range r.WatchEvents {
			watches += v
		}
		load.Rows = append(load.Rows, []Cell{txt(r.Backend), num(fmtCount(float64(r.Pods))), num(trim(r.QPS, 1)), num(fmtCount(float64(total))),
			txt(topCounts(r.Requests, 5)), num(fmtCount(float64(watches))), num(fmtNS(float64(r.AgentStartNS)))})
	}
	s.Tables = []Table{head, stages, load}
	if len(failures.Rows) > 0 {
		s.Tables = append(s.Tables, failures)
	}
	figs, err := b.endToEndCurves(runs)
	if err != nil {
		return s, err
	}
	s.Figures = figs
	return s, nil
}

// clip shortens s to n runes at most.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// topCounts lists the n largest counts: "POST pods 189, PUT pods/status 189, …".
func topCounts(m map[string]int64, n int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if len(keys) > n {
		parts = append(parts, "…")
	}
	return strings.Join(parts, ", ")
}

// endToEndCurves draws, per scale, the percentile curves of the time to enforcement of every
// backend and rate, with Cilium's 600 ms as a line.
func (b *builder) endToEndCurves(runs []e2eRun) ([]Figure, error) {
	var scales []int
	for _, r := range runs {
		if !slices.Contains(scales, r.Pods) {
			scales = append(scales, r.Pods)
		}
	}
	var rates []float64
	for _, r := range runs {
		if !slices.Contains(rates, r.QPS) {
			rates = append(rates, r.QPS)
		}
	}
	sort.Float64s(rates)
	var out []Figure
	for _, pods := range scales {
		title := fmt.Sprintf("Time to enforcement, %s pods", fmtCount(float64(pods)))
		c := percentileChart(title, "since the write started", 1000)
		drawn := 0
		for _, r := range runs {
			h, what := r.enforced()
			if r.Pods != pods || h == nil || h.Count == 0 {
				continue
			}
			l, err := curveLine(*h)
			if err != nil {
				return nil, err
			}
			if l == nil {
				continue
			}
			l.Dashes = dashPatterns[slices.Index(rates, r.QPS)%len(dashPatterns)]
			c.Add(l)
			v, word := tail99(h)
			c.key(fmt.Sprintf("%s %s/s (%s)", r.Backend, trim(r.QPS, 1), what), word+" "+fmtNS(v), lineSwatch(l.LineStyle))
			drawn++
		}
		if drawn == 0 {
			continue
		}
		cilium, err := plotter.NewLine(plotter.XYs{{X: 1, Y: ciliumEnforceNS}, {X: 1000, Y: ciliumEnforceNS}})
		if err != nil {
			return nil, err
		}
		cilium.Color = grey
		cilium.Width = vg.Points(1)
		cilium.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		c.Add(cilium)
		c.key("Cilium: no endpoint over 600 ms (50k pods)", "", lineSwatch(draw.LineStyle{Color: grey, Width: vg.Points(1), Dashes: cilium.Dashes}))
		fixLogRange(&c.Y)
		f, err := b.fig(c, title, fmt.Sprintf("Percentiles of the time from an event's write to its first packet with the new verdict (backends that carry no packets: to the backend's acknowledgement), at %s pods; line style by write rate.", fmtCount(float64(pods))),
			15*vg.Centimeter, 9*vg.Centimeter)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// endToEndSentence is the line on the end-to-end runs (the section's folded line, the lead of a
// run that measured nothing else): at the largest scale and the highest rate, the p99 time to
// enforcement of each dataplane, held against Cilium's figure; "" when the run has none.
func endToEndSentence(run *results.Run) string {
	runs := e2eRuns(run)
	if len(runs) == 0 {
		return ""
	}
	top := runs[len(runs)-1]
	for _, r := range runs {
		if r.Pods == top.Pods && r.QPS > top.QPS {
			top = r
		}
	}
	var parts []string
	for _, r := range runs {
		if r.Pods != top.Pods || r.QPS != top.QPS || isControl(r.Backend) {
			continue
		}
		h, what := r.enforced()
		if h == nil || h.Count == 0 {
			continue
		}
		v, word := tail99(h)
		p := fmt.Sprintf("%s %s", r.Backend, fmtNS(v))
		if word != "p99" {
			p += fmt.Sprintf(" (the %s of %d)", word, h.Count)
		}
		if what != "first packet" {
			p += " (applied)"
		}
		if r.Unmatched > 0 {
			p += fmt.Sprintf(" (%d of %d writes not enforced within the run)", r.Unmatched, r.Writes)
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("at %s pods and %s writes/s, p99 from API write to the first packet with the new verdict: %s. Cilium reports under 600 ms at 50k pods.",
		fmtCount(float64(top.Pods)), trim(top.QPS, 1), joinAnd(parts))
}
