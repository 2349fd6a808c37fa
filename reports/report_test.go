package reports_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"netpolbench/gate"
	"netpolbench/reports"
	"netpolbench/results"
	"netpolbench/results/resultstest"
)

var sectionIDs = []string{"claims", "latency", "distributions", "boxes", "scaling", "updates", "churn", "endtoend", "sizes", "benchmarks", "environment"}

func mustRender(t *testing.T, run *results.Run) string {
	t.Helper()
	var buf bytes.Buffer
	if err := reports.Render(&buf, run); err != nil {
		t.Fatalf("render: %v", err)
	}
	return buf.String()
}

// section returns the HTML of the section with the given id.
func section(t *testing.T, page, id string) string {
	t.Helper()
	start := strings.Index(page, `<section id="`+id+`" class="detail">`)
	if start < 0 {
		t.Fatalf("no section %q", id)
	}
	end := strings.Index(page[start:], "</section>")
	return page[start : start+end]
}

var svgRe = regexp.MustCompile(`<svg class="plot"`)

func TestReportFillsEverySectionFromSyntheticData(t *testing.T) {
	o := resultstest.DefaultOptions()
	o.EndToEnd = []int{1000}
	run := resultstest.Run(o)
	page := mustRender(t, run)
	for _, id := range sectionIDs {
		s := section(t, page, id)
		if strings.Contains(s, `class="empty"`) {
			t.Errorf("section %s says it has no data although the run has some", id)
		}
	}
	for _, id := range []string{"distributions", "boxes", "scaling", "updates", "churn", "endtoend"} {
		if n := len(svgRe.FindAllString(section(t, page, id), -1)); n == 0 {
			t.Errorf("section %s has no plot", id)
		}
	}
	// One percentile-curve plot per backend, two churn plots per timeline.
	if got, want := len(svgRe.FindAllString(section(t, page, "churn"), -1)), 2*len(run.Churn); got != want {
		t.Errorf("churn section has %d plots, want %d", got, want)
	}
	perPacket := 0
	for _, h := range run.Latency {
		if h.Kind != results.KindEnforcement {
			perPacket++
		}
	}
	if got := strings.Count(section(t, page, "latency"), "<tr>") - 1; got != perPacket {
		t.Errorf("percentile table has %d rows, want one per per-packet histogram (%d)", got, perPacket)
	}
	for _, col := range []string{"p50", "p90", "p99", "p99.9", "Max"} {
		if !strings.Contains(section(t, page, "latency"), "<th>"+col+"</th>") {
			t.Errorf("percentile table lacks column %s", col)
		}
	}
}

func TestReportSaysWhichSectionsHaveNoData(t *testing.T) {
	page := mustRender(t, results.New())
	for _, id := range sectionIDs {
		if id == "environment" {
			continue // always has the schema and seed
		}
		if !strings.Contains(section(t, page, id), `class="empty"`) {
			t.Errorf("section %s of an empty run does not say it has no data", id)
		}
	}
	if svgRe.MatchString(page) {
		t.Error("an empty run rendered a plot")
	}
	if !strings.Contains(page, "no headline figures yet") {
		t.Error("empty run's verdict does not say there is nothing to summarize")
	}
	if n := strings.Count(page, `<p class="empty">Not measured in this run.</p>`); n != 4 {
		t.Errorf("empty run: %d summary plots say they were not measured, want 4", n)
	}
}

func TestReportWithOnlySizesRendersThoseAlone(t *testing.T) {
	full := resultstest.Run(resultstest.DefaultOptions())
	run := results.New()
	run.Sizes = full.Sizes
	page := mustRender(t, run)
	if strings.Contains(section(t, page, "sizes"), `class="empty"`) {
		t.Error("sizes section empty although the run has sizes")
	}
	for _, id := range []string{"latency", "updates", "churn", "scaling"} {
		if !strings.Contains(section(t, page, id), `class="empty"`) {
			t.Errorf("section %s should say it has no data", id)
		}
	}
}

func TestReportOpensOnVerdictThenSummaryPlotsThenFoldedDetails(t *testing.T) {
	page := mustRender(t, resultstest.Run(resultstest.SweepOptions()))
	verdict := strings.Index(page, `<div id="verdict">`)
	summary := strings.Index(page, `<div id="summary">`)
	details := strings.Index(page, `<section id="claims" class="detail">`)
	if verdict < 0 || summary < verdict || details < summary {
		t.Fatalf("page order: verdict at %d, summary plots at %d, first details at %d; want them in that order", verdict, summary, details)
	}
	for _, id := range []string{"plot-packet", "plot-events", "plot-sync", "plot-state"} {
		fig := page[strings.Index(page, `<figure id="`+id+`"`):]
		fig = fig[:strings.Index(fig, "</figure>")]
		if !svgRe.MatchString(fig) || !strings.Contains(fig, `class="legend"`) || !strings.Contains(fig, `class="plot-data"`) {
			t.Errorf("summary plot %s lacks its SVG, its legend or its marked data area", id)
		}
		if strings.Index(fig, `class="legend"`) < strings.Index(fig, "</svg>") {
			t.Errorf("summary plot %s: the legend is not after (beside) the plot", id)
		}
	}
	if n, want := strings.Count(page, `<section id=`), len(sectionIDs); n != want {
		t.Errorf("%d sections, want %d", n, want)
	}
	if strings.Count(page, "<details>") < len(sectionIDs) || strings.Contains(page, "<details open>") {
		t.Error("a report's detail sections must all be folded")
	}
	// Every legend, in every section, is HTML beside its plot: gonum draws none inside.
	if n, want := strings.Count(page, `class="plot-data"`), strings.Count(page, `<svg class="plot"`)+1; n != want {
		t.Errorf("%d marked data areas for %d plots (the state plot has two panels)", n, want-1)
	}
}

func TestReportColoursEachBackendTheSameEverywhere(t *testing.T) {
	page := mustRender(t, resultstest.Run(resultstest.SweepOptions()))
	// The verdict's dot and the summary plots' strokes use one colour per backend.
	for be, hex := range map[string]string{"ebpf": "#0072b2", "iptables": "#d55e00", "ipset": "#e69f00", "ebpf-cilium": "#56b4e9"} {
		if !strings.Contains(page, `style="--c:`+hex+`">`+be+`</th>`) {
			t.Errorf("verdict row of %s is not coloured %s", be, hex)
		}
		stroke := "stroke:" + strings.ToUpper(hex)
		for _, id := range []string{"plot-packet", "plot-sync"} {
			fig := page[strings.Index(page, `<figure id="`+id+`"`):]
			fig = fig[:strings.Index(fig, "</figure>")]
			if !strings.Contains(fig, stroke) {
				t.Errorf("%s draws no %s line in %s", id, be, hex)
			}
		}
	}
}

func TestReportEmbedsResultsJSONThatCannotCloseItsElement(t *testing.T) {
	run := resultstest.Run(resultstest.DefaultOptions())
	run.Workload = json.RawMessage(`{"note":"</script><script>alert(1)</script>"}`)
	page := mustRender(t, run)
	if n := strings.Count(page, "</script>"); n != 1 {
		t.Fatalf("page has %d </script> tags, want exactly the embedded JSON's own", n)
	}
	start := strings.Index(page, `<script type="application/json" id="results-json">`)
	if start < 0 {
		t.Fatal("no embedded results JSON")
	}
	body := page[start+len(`<script type="application/json" id="results-json">`):]
	body = body[:strings.Index(body, "</script>")]
	back, err := results.Decode([]byte(body))
	if err != nil {
		t.Fatalf("embedded JSON does not decode: %v", err)
	}
	var w struct{ Note string }
	if err := json.Unmarshal(back.Workload, &w); err != nil || w.Note != "</script><script>alert(1)</script>" {
		t.Errorf("embedded workload %s (%v), want the original note", back.Workload, err)
	}
	if len(back.Latency) != len(run.Latency) {
		t.Errorf("embedded JSON has %d histograms, want %d", len(back.Latency), len(run.Latency))
	}
}

func TestReportLoadsNothingFromTheNetwork(t *testing.T) {
	page := mustRender(t, resultstest.Run(resultstest.DefaultOptions()))
	for _, u := range regexp.MustCompile(`(?:src|href)="([^"#][^"]*)"|url\(([^)]*)\)|https?://[^"'\s<>]+`).FindAllString(page, -1) {
		if strings.HasPrefix(u, "http://www.w3.org/") {
			continue // SVG namespace names, not fetched
		}
		t.Errorf("report references an external resource: %s", u)
	}
}

func TestCompareShowsGateVerdictPerMetric(t *testing.T) {
	base := resultstest.Run(resultstest.DefaultOptions())
	o := resultstest.DefaultOptions()
	o.Seed, o.Slowdown, o.ExtraRules = 5, 1.3, 1
	cur := resultstest.Run(o)
	g := gate.Compare(base, cur, gate.DefaultOptions())
	var buf bytes.Buffer
	if err := reports.RenderCompare(&buf, base, cur, g); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if !strings.Contains(page, "gate: "+gate.VerdictRegressed) {
		t.Error("comparison does not show the regressed verdict")
	}
	gs := section(t, page, "gate")
	if got := strings.Count(gs, "<tr>") - strings.Count(gs, "<thead>"); got != len(g.Rows) {
		t.Errorf("gate table has %d rows, want %d", got, len(g.Rows))
	}
	if n := len(svgRe.FindAllString(section(t, page, "ratios"), -1)); n == 0 {
		t.Error("no ratio overlay plots")
	}
	if n := len(svgRe.FindAllString(section(t, page, "overlays"), -1)); n == 0 {
		t.Error("no latency overlay plots")
	}

	var empty bytes.Buffer
	e := results.New()
	if err := reports.RenderCompare(&empty, e, e, gate.Compare(e, e, gate.DefaultOptions())); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(section(t, page, "updates"), `class="empty"`) {
		t.Error("comparison of two runs with updates says it has no update times")
	}
	for _, id := range []string{"gate", "ratios", "overlays", "updates"} {
		if !strings.Contains(section(t, empty.String(), id), `class="empty"`) {
			t.Errorf("empty comparison: section %s does not say it has no data", id)
		}
	}
}

func TestReportSurvivesDegenerateData(t *testing.T) {
	cases := map[string]func(*results.Run){
		"histogram without encoding, flat percentiles": func(r *results.Run) {
			r.Latency = []results.Histogram{{Name: "L/a", Backend: "ebpf", Pods: 10, Kind: results.KindStampDelta, Count: 5, Min: 7, Max: 7,
				Percentiles: results.Percentiles{P50: 7, P90: 7, P99: 7, P999: 7}}}
		},
		"corrupt histogram encoding": func(r *results.Run) {
			r.Latency = []results.Histogram{{Name: "L/b", Backend: "ebpf", Pods: 10, Kind: results.KindStampDelta, Count: 5, Encoded: "not base64!",
				Percentiles: results.Percentiles{P50: 7, P90: 8, P99: 9, P999: 10}}}
		},
		"histogram with zero values only": func(r *results.Run) {
			r.Latency = []results.Histogram{{Name: "L/c", Backend: "ebpf", Pods: 10, Kind: results.KindStampDelta, Count: 3}}
		},
		"fit with one point": func(r *results.Run) {
			r.Fits = []results.Fit{{Backend: "ebpf", Metric: "entries", XLabel: "pods", Points: []results.Point{{X: 100, Y: 5}}}}
		},
		"fit with zero y": func(r *results.Run) {
			r.Fits = []results.Fit{{Backend: "ebpf", Metric: "entries", XLabel: "pods", Points: []results.Point{{X: 100, Y: 0}, {X: 1000, Y: 0}}}}
		},
		"updates without samples": func(r *results.Run) {
			r.Updates = []results.Update{{Backend: "ebpf", Pods: 10, Event: results.EventPodAdd}}
		},
		"update with one sample": func(r *results.Run) {
			r.Updates = []results.Update{{Backend: "ebpf", Pods: 10, Event: results.EventPodAdd, ApplyNS: []float64{1000}}}
		},
		"churn without points": func(r *results.Run) {
			r.Churn = []results.ChurnTimeline{{Backend: "ebpf", Pods: 10, Events: []results.ChurnMark{{TMS: 5, Event: results.EventRelabel}}}}
		},
		"churn with total loss": func(r *results.Run) {
			r.Churn = []results.ChurnTimeline{{Backend: "iptables", Pods: 10, Points: []results.ChurnPoint{{TMS: 0, Sent: 10, Lost: 10}, {TMS: 100, Sent: 10, Lost: 10}}}}
		},
		"metric without samples and a dangling ratio": func(r *results.Run) {
			r.Benchmarks = []results.Benchmark{{Name: "BenchmarkX", Metrics: []results.Metric{{Unit: "ns/op"}}}}
			r.Ratios = []results.Ratio{{Name: "R", Num: results.MetricRef{Benchmark: "BenchmarkX", Unit: "ns/op"}, Den: results.MetricRef{Benchmark: "BenchmarkY", Unit: "ns/op"}}}
		},
		"sizes with empty maps": func(r *results.Run) {
			r.Sizes = []results.Size{{Backend: "ebpf", Pods: 10, Maps: []results.MapSize{{Name: "policy"}}}}
		},
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			run := results.New()
			mod(run)
			page := mustRender(t, run)
			if !strings.Contains(page, "</html>") {
				t.Fatal("page is incomplete")
			}
		})
	}
}

// TestNftablesSizesShowInTheSizeTables: the size tables show an nftables run's table, its
// kernel memory and what that counts.
func TestNftablesSizesShowInTheSizeTables(t *testing.T) {
	o := resultstest.DefaultOptions()
	o.Backends = []string{"ebpf", "iptables", "ipset", "nftables"}
	run := resultstest.Run(o)
	sizes := section(t, mustRender(t, run), "sizes")
	for _, want := range []string{"nftables tables", "Set members / elements", "Kernel memory", "What kernel memory counts", "Verdict map elements"} {
		if !strings.Contains(sizes, want) {
			t.Errorf("sizes section lacks %q", want)
		}
	}
	for _, sz := range run.Sizes {
		if sz.Nftables != nil && !strings.Contains(sizes, `<td class="num">`+strconv.FormatUint(sz.Nftables.Elements, 10)+`</td>`) {
			t.Errorf("sizes section lacks nftables' %d elements at %d pods", sz.Nftables.Elements, sz.Pods)
		}
	}
}

// TestTailPercentilesFromTooFewSamplesShowADash: a p99 from 500 values rests on five of them,
// so the table shows a dash there, and the value where enough lie beyond it.
func TestTailPercentilesFromTooFewSamplesShowADash(t *testing.T) {
	run := results.New()
	run.Latency = []results.Histogram{
		{Name: "L/few", Backend: "ebpf", Pods: 10, Kind: results.KindStampDelta, Count: 500, Min: 100, Max: 9000,
			Percentiles: results.Percentiles{P50: 400, P90: 700}},
		{Name: "L/many", Backend: "iptables", Pods: 10, Kind: results.KindStampDelta, Count: 20000, Min: 100, Max: 9000,
			Percentiles: results.Percentiles{P50: 410, P90: 710, P99: 2220, P999: 5550}},
	}
	tab := section(t, mustRender(t, run), "latency")
	rows := strings.Split(tab, "<tr>")
	var few, many string
	for _, r := range rows {
		switch {
		case strings.Contains(r, ">ebpf<"):
			few = r
		case strings.Contains(r, ">iptables<"):
			many = r
		}
	}
	// Neither has a floor: its two above-floor cells are dashes too.
	if !strings.Contains(few, "700ns") || strings.Count(few, "–") != 4 {
		t.Errorf("500 values: want p90 shown and p99, p99.9 as dashes, row %s", few)
	}
	if !strings.Contains(many, "2.22µs") || !strings.Contains(many, "5.55µs") || strings.Count(many, "–") != 2 {
		t.Errorf("20,000 values: want p99 and p99.9 shown, row %s", many)
	}
}

// TestPacketFigureShowsItsIntervalAndAFloorThatDrifted: the p50 above the floor carries the
// interval from its rounds, and a warning where the floor moved by a large share of it.
func TestPacketFigureShowsItsIntervalAndAFloorThatDrifted(t *testing.T) {
	run := results.New()
	h := func(backend string, rs *results.RoundStats) results.Histogram {
		return results.Histogram{Name: "L/" + backend, Backend: backend, Pods: 10, Kind: results.KindStampDelta, Count: 20000, Min: 100, Max: 9000,
			Percentiles: results.Percentiles{P50: 500}, AboveFloor: &results.Percentiles{P50: 400}, Rounds: rs}
	}
	run.Latency = []results.Histogram{
		h("ebpf", &results.RoundStats{Rounds: 8, P50Lo: 380, P50Hi: 430, FloorDrift: 12}),
		h("nftables", &results.RoundStats{Rounds: 8, P50Lo: 300, P50Hi: 520, FloorDrift: 150, Noisy: true}),
	}
	tab := section(t, mustRender(t, run), "latency")
	if !strings.Contains(tab, "400ns [380ns–430ns]<") {
		t.Errorf("ebpf's figure lacks its interval: %s", tab)
	}
	if !strings.Contains(tab, "400ns [300ns–520ns] (floor drift 150ns)") {
		t.Errorf("nftables' figure does not say its floor drifted: %s", tab)
	}
}
