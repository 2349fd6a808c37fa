package reports_test

import (
	"strings"
	"testing"

	"netpolbench/results"
	"netpolbench/results/resultstest"
)

// TestEndToEndSectionHoldsEveryRunAgainstCilium: the section has a row per run in each of its
// tables and a percentile plot per scale with Cilium's 600 ms; its folded line gives the p99 of
// each dataplane at the largest scale and rate; a run slower than Cilium's figure is marked.
func TestEndToEndSectionHoldsEveryRunAgainstCilium(t *testing.T) {
	run := resultstest.Run(resultstest.SweepOptions())
	page := mustRender(t, run)
	s := section(t, page, "endtoend")
	tables := strings.Split(s, `<div class="tablewrap">`)[1:]
	if len(tables) != 3 {
		t.Fatalf("%d tables, want 3", len(tables))
	}
	for i, tb := range tables {
		tb = tb[:strings.Index(tb, "</table>")]
		if got := strings.Count(tb, "<tr><td"); got != len(run.EndToEnd) {
			t.Errorf("table %d: %d rows, want one per run (%d)", i+1, got, len(run.EndToEnd))
		}
	}
	if n := len(svgRe.FindAllString(s, -1)); n != 2 {
		t.Errorf("%d plots, want one per scale (2)", n)
	}
	if !strings.Contains(s, "Cilium: no endpoint over 600 ms") {
		t.Error("the plots do not draw Cilium's figure")
	}
	digest := s[strings.Index(s, `class="digest"`):]
	digest = digest[:strings.Index(digest, "</span>")]
	for _, want := range []string{"At 10k pods and 100 writes/s", "ebpf ", "ebpf-cilium ", "Cilium reports under 600 ms"} {
		if !strings.Contains(digest, want) {
			t.Errorf("folded line %q lacks %q", digest, want)
		}
	}
	if strings.Contains(digest, "compiled") || strings.Contains(digest, "ipset") {
		t.Errorf("folded line %q names the control or a backend skipped at 10k pods", digest)
	}

	// One run far over Cilium's figure.
	for i := range run.Latency {
		h := &run.Latency[i]
		if h.Kind == results.KindEnforcement && h.Backend == "ipset" && h.Labels["stage"] == results.StageProbe {
			h.Percentiles.P99 = 2.4e9
		}
	}
	if s := section(t, mustRender(t, run), "endtoend"); !strings.Contains(s, "no (4×)") {
		t.Error("a p99 four times Cilium's figure is not marked")
	}
}

// TestVerdictOfAnEndToEndRunLeadsWithIt: a run that measured the end-to-end phase alone says
// so first, with its figures.
func TestVerdictOfAnEndToEndRunLeadsWithIt(t *testing.T) {
	full := resultstest.Run(resultstest.SweepOptions())
	run := results.New()
	run.EndToEnd = full.EndToEnd
	for _, h := range full.Latency {
		if h.Kind == results.KindEnforcement {
			run.Latency = append(run.Latency, h)
		}
	}
	page := mustRender(t, run)
	verdict := page[strings.Index(page, `<div id="verdict">`):]
	verdict = verdict[:strings.Index(verdict, `<div class="answer-row">`)]
	if !strings.Contains(verdict, "measured the end-to-end phase alone") || !strings.Contains(verdict, "at 10k pods and 100 writes/s") {
		t.Errorf("verdict of an end-to-end run: %s", verdict)
	}
	if strings.Contains(section(t, page, "latency"), "API write") {
		t.Error("the per-packet sections list the end-to-end histograms")
	}
}

// TestEndToEndJudgesTheMaxWhereTooFewEventsGiveAP99: a run of 100 events has no p99 (one
// sample would be it), so its time to enforcement is held against Cilium's figure by its max.
func TestEndToEndJudgesTheMaxWhereTooFewEventsGiveAP99(t *testing.T) {
	run := resultstest.Run(resultstest.SweepOptions())
	n := 0
	for i := range run.Latency {
		h := &run.Latency[i]
		if h.Kind == results.KindEnforcement && h.Backend == "ipset" && h.Labels["stage"] == results.StageProbe {
			h.Count, h.Max, h.Percentiles = 100, 2.4e9, results.Percentiles{P50: 1e6, P90: 2e6}
			n++
		}
	}
	if n == 0 {
		t.Fatal("the synthetic run has no ipset probe stage")
	}
	s := section(t, mustRender(t, run), "endtoend")
	if !strings.Contains(s, "no (4×, by the max)") || !strings.Contains(s, "max 2.4s") {
		t.Error("a max four times Cilium's figure, where no p99 is given, is not marked as such")
	}
}
