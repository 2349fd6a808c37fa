package reports_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"netpolbench/reports"
	"netpolbench/results"
	"netpolbench/results/resultstest"
)

func mustSummary(t *testing.T, run *results.Run, path string) string {
	t.Helper()
	var b strings.Builder
	if err := reports.WriteSummary(&b, run, path); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var ratioToken = regexp.MustCompile(`best|[0-9][0-9,.]*×`)

func TestTerminalSummaryAlignsFiguresAndRatiosInColumns(t *testing.T) {
	run := resultstest.Run(resultstest.SweepOptions())
	out := mustSummary(t, run, "results/x/report.html")
	lines := strings.Split(out, "\n")
	header := regexp.MustCompile(`^pods +backend `)
	head := slices.IndexFunc(lines, header.MatchString)
	if head < 0 {
		t.Fatalf("no table header in:\n%s", out)
	}
	// Every row that has all four figures ends each ratio at the same column, as benchstat
	// right-aligns its columns.
	var want []int
	rows := 0
	for _, l := range lines[head+1:] {
		if l == "" || strings.HasPrefix(l, "¹") {
			break
		}
		rows++
		var ends []int
		for _, m := range ratioToken.FindAllStringIndex(l, -1) {
			ends = append(ends, utf8.RuneCountInString(l[:m[1]]))
		}
		if len(ends) != 4 {
			if !strings.Contains(l, "capped") {
				t.Errorf("row %q has %d ratios, want 4 or a cap", l, len(ends))
			}
			continue
		}
		if want == nil {
			want = ends
		} else if !slices.Equal(ends, want) {
			t.Errorf("row %q ends its ratios at columns %v, the first row at %v", l, ends, want)
		}
	}
	// One row per dataplane and scale; the control is not ranked.
	if rows != 5*5 {
		t.Errorf("%d table rows, want 25 (5 scales × 5 dataplanes)\n%s", rows, out)
	}
	for _, want := range []string{
		"\n100   ebpf ", "\n1k    ebpf ", "\n3k*   ebpf ", "\n10k   ebpf ", "\n100k  ebpf ",
		"capped: iptables skipped at 100k pods", "\n        iptables, ipset skipped at 10k and 100k pods: synthetic cap",
		"* per churn event at 3k pods: over 4 of 8 event kinds",
		"not ranked: compiled",
		"report: results/x/report.html\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "compiled  ") {
		t.Errorf("the control has a row:\n%s", out)
	}
}

func TestTerminalSummaryOfAnEmptyRunStillSaysWhereTheReportIs(t *testing.T) {
	out := mustSummary(t, results.New(), "r/report.html")
	if !strings.Contains(out, "no headline figures yet") || !strings.HasSuffix(out, "report: r/report.html\n") || strings.Contains(out, "pods  backend") {
		t.Errorf("empty run summary:\n%s", out)
	}
}
