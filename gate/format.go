package gate

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the result as indented JSON, for machines.
func WriteJSON(w io.Writer, r *Result) error {
	// JSON has no infinity: a figure that grew from 0 is written with delta 1e308.
	out := *r
	out.Rows = append([]Row(nil), r.Rows...)
	for i := range out.Rows {
		if math.IsInf(out.Rows[i].Delta, 1) {
			out.Rows[i].Delta = math.MaxFloat64
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return fmt.Errorf("write gate json: %w", err)
	}
	return nil
}

// WriteTable writes the result as an aligned table for people: changed rows first, then a count
// of unchanged ones (all rows with verbose).
func WriteTable(w io.Writer, r *Result, verbose bool) error {
	rows := append([]Row(nil), r.Rows...)
	SortRows(rows)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "STATUS\tKIND\tNAME\tUNIT\tBASELINE\tCURRENT\tDELTA\tP\n")
	same := 0
	for _, row := range rows {
		if row.Status == StatusSame && !verbose {
			same++
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Status, row.Kind, row.Name, row.Unit,
			FormatSummary(row.Base, row.Kind), FormatSummary(row.Cur, row.Kind), FormatDelta(row), formatP(row))
		for _, warn := range row.Warnings {
			fmt.Fprintf(tw, "\t\t  ↳ %s\t\t\t\t\t\n", warn)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write gate table: %w", err)
	}
	if same > 0 {
		fmt.Fprintf(w, "(%d unchanged figures not shown; -v shows them)\n", same)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if r.Ungated > 0 {
		fmt.Fprintf(w, "note: %d timing metrics are not covered by a declared ratio and were not gated\n", r.Ungated)
	}
	_, err := fmt.Fprintf(w, "gate: %s: %d compared, %d regressed, %d improved (α=%g, min effect %g%%)\n",
		r.Verdict, r.Compared, r.Regressed, r.Improved, r.Alpha, 100*r.MinEffect)
	return err
}

// FormatSummary prints a centre, with the confidence interval of a ratio's median.
func FormatSummary(s Summary, kind string) string {
	if s.N == 0 {
		return "-"
	}
	if kind == KindRatio {
		if s.RangeOnly {
			return fmt.Sprintf("%.4g (%.4g–%.4g) n=%d", s.Center, s.Lo, s.Hi, s.N)
		}
		return fmt.Sprintf("%.4g [%.4g, %.4g] n=%d", s.Center, s.Lo, s.Hi, s.N)
	}
	return trimFloat(s.Center)
}

// FormatDelta prints the relative change, "~" when not significant.
func FormatDelta(row Row) string {
	switch {
	case row.Base.N == 0 || row.Cur.N == 0:
		return ""
	case row.Delta == 0:
		return "0"
	case row.Status == StatusSame:
		return fmt.Sprintf("~ (%+.1f%%)", 100*row.Delta)
	case math.IsInf(row.Delta, 1):
		return "+∞"
	}
	return fmt.Sprintf("%+.2f%%", 100*row.Delta)
}

func formatP(row Row) string {
	if row.Kind != KindRatio || row.Base.N == 0 || row.Cur.N == 0 {
		return ""
	}
	return fmt.Sprintf("%.3g", row.P)
}

func trimFloat(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", v), "0"), ".")
}
