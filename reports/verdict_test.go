package reports

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"netpolbench/results"
	"netpolbench/results/resultstest"
)

func mustVerdict(t *testing.T, run *results.Run) verdict {
	t.Helper()
	return computeVerdict(run, collectFigures(run))
}

func TestVerdictRanksDataplanesPerScaleWithSameRunRatios(t *testing.T) {
	run := resultstest.Run(resultstest.SweepOptions())
	v := mustVerdict(t, run)
	if got, want := rowPods(v.Rows), []int{100, 1000, 3000, 10000, 100000}; !slices.Equal(got, want) {
		t.Fatalf("verdict scales %v, want %v", got, want)
	}
	for _, r := range v.Rows {
		for ci, c := range r.Cells {
			for i, e := range c.Ranked {
				if e.Backend == "compiled" {
					t.Errorf("%d pods %s: the control compiled is ranked", r.Pods, v.Cats[ci].ID)
				}
				if i > 0 && e.Value < c.Ranked[i-1].Value {
					t.Errorf("%d pods %s: %s (%g) ranked after %s (%g)", r.Pods, v.Cats[ci].ID, e.Backend, e.Value, c.Ranked[i-1].Backend, c.Ranked[i-1].Value)
				}
				if want := e.Value / c.Ranked[0].Value; math.Abs(e.Ratio-want) > 1e-9 {
					t.Errorf("%d pods %s: %s ratio %g, want %g", r.Pods, v.Cats[ci].ID, e.Backend, e.Ratio, want)
				}
			}
		}
	}
	// Per packet is the allowed new flow's p50 above the floor, straight from the histogram.
	packet := v.Rows[1].Cells[0]
	for _, e := range packet.Ranked {
		h := run.FindLatency("Latency/backend=" + e.Backend + "/pods=1000/verdict=allow/flow=new")
		if h == nil || h.AboveFloor.P50 != e.Value {
			t.Errorf("1k pods per packet %s = %g, want the histogram's p50 above floor", e.Backend, e.Value)
		}
	}
	// iptables stopped churning at 3k pods: the per-event comparison covers only the kinds it
	// finished, and says so.
	ev := v.Rows[2].Cells[1]
	if ev.Note != "4 of 8 event kinds" {
		t.Errorf("3k pods per churn event note %q, want the kinds every dataplane finished", ev.Note)
	}
	// iptables and ipset are capped (skipped) at 10k pods: absent from its cells, listed as capped.
	if r := v.Rows[3]; !slices.Contains(r.Capped, "iptables") || !slices.Contains(r.Capped, "ipset") {
		t.Errorf("10k pods capped %v, want iptables and ipset", r.Capped)
	}
	for _, c := range v.Rows[3].Cells {
		if slices.ContainsFunc(c.Ranked, func(e ranked) bool { return e.Backend == "iptables" }) {
			t.Error("10k pods ranks iptables, which was skipped there")
		}
	}
	if !strings.Contains(v.LeftOut, "compiled") {
		t.Errorf("the verdict does not say it leaves the control out: %q", v.LeftOut)
	}
}

func TestVerdictLeadSaysOneSentenceWhenOneDataplaneWinsEverything(t *testing.T) {
	o := resultstest.DefaultOptions()
	o.Pods = []int{1000, 3000, 10000} // the synthetic iptables wins at 100 pods
	v := mustVerdict(t, resultstest.Run(o))
	// How much more iptables costs: the range of its ratios over the scales, per count.
	var ranges []string
	for ci := range v.Cats {
		lo, hi := math.Inf(1), 0.0
		for _, r := range v.Rows {
			x := r.Cells[ci].Ranked[1].Ratio
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
		ranges = append(ranges, strings.TrimSuffix(ratioText(lo), "×")+"–"+ratioText(hi))
	}
	want := "ebpf is the cheapest dataplane per packet, per churn event and in state size at every measured scale (1k, 3k and 10k pods): " +
		"iptables costs " + ranges[0] + " as much per packet, " + ranges[1] + " per churn event and " + ranges[2] + " in state size."
	if len(v.Lead) != 1 || v.Lead[0] != want {
		t.Errorf("lead %q, want %q", v.Lead, want)
	}
}

func TestVerdictLeadNamesEachScalesWinnerWhenTheyDiffer(t *testing.T) {
	v := mustVerdict(t, resultstest.Run(resultstest.SweepOptions()))
	// The synthetic iptables is cheaper per packet and smaller than eBPF at 100 pods only.
	want := "Cheapest per packet and in state size: iptables at 100 pods; ebpf at 1k, 3k, 10k and 100k pods."
	if !slices.Contains(v.Lead, want) {
		t.Errorf("lead %q lacks %q", v.Lead, want)
	}
}

func TestVerdictSpeaksOfTheUsersClusterFirst(t *testing.T) {
	o := resultstest.DefaultOptions()
	o.Cluster, o.Pods = "prod.yaml", []int{2400}
	run := resultstest.Run(o)
	v := mustVerdict(t, run)
	ids := run.Sizes[0].Identities
	want := "Your cluster, prod.yaml: 2,400 pods and " + fmtInt(ids) + " identities (the run did not record its policy count)."
	if v.Cluster != want {
		t.Errorf("cluster sentence %q, want %q", v.Cluster, want)
	}
	if len(v.Lead) == 0 || !strings.Contains(v.Lead[0], "in state size on your cluster: iptables costs") {
		t.Errorf("lead %q does not speak of the user's cluster", v.Lead)
	}
	// A run that records the dump's policies and namespaces names them.
	run.Workload, _ = json.Marshal(map[string]any{"cluster": "prod.yaml", "pods": 2400, "policies": 1234, "namespaces": 56})
	if got := mustVerdict(t, run).Cluster; got != "Your cluster, prod.yaml: 2,400 pods, 56 namespaces, "+fmtInt(ids)+" identities and 1,234 NetworkPolicies." {
		t.Errorf("cluster sentence with policies: %q", got)
	}
	var buf strings.Builder
	if err := Render(&buf, run); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if c, l := strings.Index(page, `<p class="cluster">`), strings.Index(page, `<p class="lead">`); c < 0 || l < c {
		t.Error("the report does not open on the user's cluster")
	}
}

func TestCapSentencesGroupBackendsAndScalesByReason(t *testing.T) {
	caps := []results.Cap{
		{Backend: "iptables", Pods: 10000, Skipped: true, Reason: "too many rules.", Limit: "max 1000 pods"},
		{Backend: "ipset", Pods: 10000, Skipped: true, Reason: "too many rules.", Limit: "max 1000 pods"},
		{Backend: "iptables", Pods: 100000, Skipped: true, Reason: "too many rules.", Limit: "max 1000 pods"},
		{Backend: "iptables", Pods: 1000, Reason: "churn stopped at scale-up event 1", Limit: "60s per phase"},
		{Backend: "nftables", Skipped: true, Reason: "not built in"},
	}
	want := []string{
		"iptables, ipset skipped at 10k and 100k pods: too many rules (max 1000 pods).",
		"iptables limited at 1k pods: churn stopped at scale-up event 1 (60s per phase).",
		"nftables skipped at every scale: not built in.",
	}
	if got := capSentences(caps); !slices.Equal(got, want) {
		t.Errorf("cap sentences:\n%q\nwant\n%q", got, want)
	}
	// The first screen's line says only where, each backend once; the reasons fold under it.
	if got, want := capWhere(caps), "iptables at 1k, 10k and 100k pods; ipset at 10k pods; nftables at every scale"; got != want {
		t.Errorf("cap line %q, want %q", got, want)
	}
}

func TestVerdictOfARunWithoutFiguresSaysSo(t *testing.T) {
	v := mustVerdict(t, results.New())
	if len(v.Rows) != 0 || len(v.Lead) != 1 || !strings.Contains(v.Lead[0], "no headline figures") {
		t.Errorf("empty run: rows %v, lead %q", v.Rows, v.Lead)
	}
	// One dataplane alone is reported, not compared.
	o := resultstest.DefaultOptions()
	o.Backends = []string{"ebpf"}
	v = mustVerdict(t, resultstest.Run(o))
	if len(v.Lead) != 1 || !strings.Contains(v.Lead[0], "measured ebpf alone") {
		t.Errorf("single dataplane lead %q", v.Lead)
	}
}

func TestBackendColoursAreFixedPerName(t *testing.T) {
	if got := backendColour("ebpf"); got != backendColours["ebpf"] {
		t.Errorf("ebpf colour %v, want its fixed %v", got, backendColours["ebpf"])
	}
	seen := map[string]bool{}
	for _, c := range backendColours {
		key := cssColour(c)
		if seen[string(key)] {
			t.Errorf("two backends share colour %s", key)
		}
		seen[string(key)] = true
	}
	// An unknown backend's colour depends on its name alone, and is none of the fixed ones.
	a, b := backendColour("bpfilter"), backendColour("bpfilter")
	if a != b || !slices.Contains(fallbackColours, a) {
		t.Errorf("unknown backend colour %v then %v, want one fallback colour", a, b)
	}
	for n, c := range backendColours {
		if c == a {
			t.Errorf("unknown backend shares %s's colour", n)
		}
	}
}

func TestVerdictScalesAreTheSweepsNotALabelSetPoint(t *testing.T) {
	o := resultstest.DefaultOptions()
	o.Pods = []int{100, 300}
	run := resultstest.Run(o)
	// A label-set point at 1,000 pods records one full sync, as the runner does.
	run.Updates = append(run.Updates, results.Update{Backend: "ebpf", Pods: 1000, Event: results.EventFullSync, ApplyNS: []float64{2e6}})
	if got := rowPods(mustVerdict(t, run).Rows); !slices.Equal(got, []int{100, 300}) {
		t.Errorf("verdict scales %v, want the sweep's 100 and 300", got)
	}
}

// TestNftablesStateCountsRulesWithRulesAndElementsWithMembers: an nftables run's rules count
// with rules and its set elements with set members in the state the verdict ranks.
func TestNftablesStateCountsRulesWithRulesAndElementsWithMembers(t *testing.T) {
	o := resultstest.DefaultOptions()
	o.Backends = []string{"ebpf", "iptables", "ipset", "nftables"}
	run := resultstest.Run(o)
	f := collectFigures(run)
	seen := 0
	for _, sz := range run.Sizes {
		if sz.Backend != "nftables" {
			continue
		}
		seen++
		st, ok := f.state[scaleKey{"nftables", sz.Pods}]
		if !ok || st.Rules != sz.Nftables.Rules || st.Members != sz.Nftables.Elements || st.Bytes != sz.Nftables.Bytes {
			t.Errorf("%d pods: state %+v from nftables size %+v", sz.Pods, st, *sz.Nftables)
		}
	}
	if seen == 0 {
		t.Fatal("the synthetic run has no nftables sizes")
	}
	v := mustVerdict(t, run)
	ci := slices.IndexFunc(v.Cats, func(c category) bool { return c.ID == catState.ID })
	for _, r := range v.Rows {
		if !slices.ContainsFunc(r.Cells[ci].Ranked, func(e ranked) bool { return e.Backend == "nftables" }) {
			t.Errorf("%d pods: nftables not ranked in state size: %+v", r.Pods, r.Cells[ci].Ranked)
		}
	}
}

// TestPartialRunSaysSoFirstAndWhereItStopped: an unfinished run's first notice says it is
// partial, how far it got and where it stopped, in the HTML's first screen and the terminal
// summary; a killed run (no stop recorded) names its last finished phase.
func TestPartialRunSaysSoFirstAndWhereItStopped(t *testing.T) {
	run := resultstest.Run(resultstest.DefaultOptions())
	run.Config.Extra = map[string]string{"quick": "true"}
	run.Progress = &results.Progress{Phases: []results.Phase{{ID: "pods=100/workload"}, {ID: "pods=100/backend=ebpf/sync"}},
		Stopped: &results.Stop{Phase: "pods=100/backend=ebpf/churn", Reason: "interrupted by SIGINT"}}
	v := mustVerdict(t, run)
	if len(v.Notices) < 2 || !strings.HasPrefix(v.Notices[0], "Partial run: 2 phases finished, then it stopped in pods=100/backend=ebpf/churn (interrupted by SIGINT)") {
		t.Fatalf("notices %q", v.Notices)
	}
	var html, term strings.Builder
	if err := Render(&html, run); err != nil {
		t.Fatal(err)
	}
	first := html.String()[:strings.Index(html.String(), `<div id="summary">`)]
	if !strings.Contains(first, "Partial run: 2 phases finished") {
		t.Error("the report's verdict does not say the run is partial")
	}
	if err := WriteSummary(&term, run, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(term.String(), "Partial run:") {
		t.Errorf("the summary starts %.80q", term.String())
	}
	run.Progress.Stopped = nil
	if v := mustVerdict(t, run); !strings.Contains(v.Notices[0], "then it was killed after pods=100/backend=ebpf/sync") {
		t.Errorf("killed run: %q", v.Notices[0])
	}
	run.Complete = true
	if v := mustVerdict(t, run); slices.ContainsFunc(v.Notices, func(n string) bool { return strings.HasPrefix(n, "Partial") }) {
		t.Errorf("a complete run says it is partial: %q", v.Notices)
	}
}

// TestAKindCutShortByAChurnCapIsNotCompared: the events of a kind a backend stopped within are
// fewer than the others', so its median is left out of the per-event comparison.
func TestAKindCutShortByAChurnCapIsNotCompared(t *testing.T) {
	run := resultstest.Run(resultstest.DefaultOptions())
	f := collectFigures(run)
	var target *results.Update
	for i := range run.Updates {
		u := &run.Updates[i]
		if u.Event != results.EventFullSync && f.events[scaleKey{u.Backend, u.Pods}][u.Event] > 0 {
			target = u
			break
		}
	}
	if target == nil {
		t.Fatal("the synthetic run has no churn update")
	}
	target.Capped = true
	if _, ok := collectFigures(run).events[scaleKey{target.Backend, target.Pods}][target.Event]; ok {
		t.Errorf("%s %s at %d pods, cut short by a churn cap, is still compared", target.Backend, target.Event, target.Pods)
	}
}

func TestPacketFigureIsTheHeadlineNotAPathOrASparsePass(t *testing.T) {
	run := results.New()
	mk := func(name string, labels map[string]string, p50 float64) results.Histogram {
		return results.Histogram{Name: name, Backend: "iptables", Pods: 1000, Kind: results.KindStampDelta, Verdict: results.VerdictAllow,
			Flow: results.FlowNew, Count: 100, Labels: labels, AboveFloor: &results.Percentiles{P50: p50, P99: 2 * p50}}
	}
	// In name order, as results.json lists them: the filter table alone and a sparse pass come
	// before the headline (the whole netfilter path).
	run.Latency = []results.Histogram{
		mk("Latency/backend=iptables/pods=1000/attach=netfilter/rate=sparse/verdict=allow/flow=new", map[string]string{"attach": "netfilter", "rate": "sparse"}, 9000),
		mk("Latency/backend=iptables/pods=1000/attach=netfilter/span=nf-filter/path=pass/verdict=allow/flow=new", map[string]string{"attach": "netfilter", "span": "nf-filter", "path": "pass"}, 4000),
		mk("Latency/backend=iptables/pods=1000/attach=netfilter/verdict=allow/flow=new", map[string]string{"attach": "netfilter"}, 5000),
	}
	f := collectFigures(run)
	if got := f.packet[scaleKey{"iptables", 1000}]; got.P50 != 5000 {
		t.Errorf("per-packet figure p50 %g, want the headline's 5000", got.P50)
	}
}

// TestVerdictTakesTheHeadlinePacketFigureAndSaysItsSpan: a variant of the measurement (a wider
// working set, other map sizes, sparse packets) is not the headline, whatever its order in the
// run; the verdict names the span each backend's figure was stamped over.
func TestVerdictTakesTheHeadlinePacketFigureAndSaysItsSpan(t *testing.T) {
	run := results.New()
	hist := func(backend, attach, variant string, p50 float64) results.Histogram {
		labels := map[string]string{"attach": attach}
		if k, v, ok := strings.Cut(variant, "="); ok {
			labels[k] = v
		}
		return results.Histogram{Name: "Latency/backend=" + backend + "/" + variant, Backend: backend, Pods: 10000, Kind: results.KindStampDelta,
			Verdict: results.VerdictAllow, Flow: results.FlowNew, Count: 10000, Labels: labels, AboveFloor: &results.Percentiles{P50: p50}}
	}
	run.Latency = []results.Histogram{
		hist("ebpf", "tcx", results.LabelFlows+"=65536", 1100),
		hist("ebpf", "tcx", results.LabelHeadroom+"=8", 840),
		hist("ebpf", "tcx", results.LabelRate+"=sparse", 2500),
		hist("ebpf", "tcx", "", 900),
		hist("nftables", "netfilter", "", 2700),
	}
	v := mustVerdict(t, run)
	if len(v.Rows) != 1 || len(v.Rows[0].Cells) == 0 {
		t.Fatalf("rows %+v", v.Rows)
	}
	cell := v.Rows[0].Cells[0]
	if cell.Best() != "ebpf" || cell.Ranked[0].Value != 900 || cell.Ranked[1].Ratio != 3 {
		t.Errorf("per-packet cell %+v, want ebpf's headline 900 ns and nftables at 3×", cell.Ranked)
	}
	if !strings.Contains(v.Spans, "ebpf over the TCX programs") || !strings.Contains(v.Spans, "nftables over the whole netfilter path") {
		t.Errorf("spans %q, want each backend with its span", v.Spans)
	}
	if foot := verdictView(v, []string{"ebpf", "nftables"}).Footnotes; !slices.Contains(foot, v.Spans) {
		t.Errorf("footnotes %q lack the spans", foot)
	}
}
