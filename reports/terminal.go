package reports

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"netpolbench/results"
)

// summaryCats are the terminal summary's columns: the verdict's counts and full sync.
var summaryCats = []category{catPacket, catEvent, catSync, catState}

// WriteSummary prints the end of a bench run for a terminal: the verdict's sentences, a table
// of the headline figures per scale and dataplane with each figure's same-run ratio to the
// cheapest (aligned as benchstat aligns its columns), the caps and their reasons, the claims,
// and where the report is.
func WriteSummary(w io.Writer, run *results.Run, reportPath string) error {
	f := collectFigures(run)
	v := computeVerdict(run, f)
	dps := f.dataplanes()
	var b strings.Builder
	for _, s := range append(append([]string{v.Cluster}, v.Notices...), v.Lead...) {
		if s != "" {
			fmt.Fprintf(&b, "%s\n", s)
		}
	}
	if len(v.Rows) > 0 {
		b.WriteString("\n")
		head := []string{"pods", "backend"}
		for i, c := range summaryCats {
			head = append(head, fmt.Sprintf("%s %s", strings.ToLower(c.Head), superscript(i+1)), "")
		}
		rows := [][]string{head}
		var marks []string
		for _, r := range v.Rows {
			cells := make([]verdictCell, len(summaryCats))
			for i, c := range summaryCats {
				cells[i] = rank(f, c, dps, r.Pods)
			}
			scale := fmtCount(float64(r.Pods))
			for i, c := range cells {
				if c.Note != "" {
					mark := strings.Repeat("*", len(marks)+1)
					marks = append(marks, fmt.Sprintf("%s %s at %s pods: over %s, those every dataplane finished.", mark, strings.ToLower(summaryCats[i].Head), scale, c.Note))
					scale += mark
				}
			}
			first := true
			for _, be := range dps {
				line := []string{"", be}
				if first {
					line[0] = scale
				}
				any := false
				for i, c := range cells {
					val, ratio := "–", ""
					if j := slices.IndexFunc(c.Ranked, func(e ranked) bool { return e.Backend == be }); j >= 0 {
						e := c.Ranked[j]
						val, any = summaryCats[i].Format(e.Value), true
						switch {
						case j == 0 && c.compared():
							ratio = "best"
						case j > 0 && e.Ratio > 0:
							ratio = ratioText(e.Ratio)
						}
					} else if slices.Contains(r.Capped, be) {
						val = "capped"
					}
					line = append(line, val, ratio)
				}
				if any || slices.Contains(r.Capped, be) {
					rows = append(rows, line)
					first = false
				}
			}
		}
		writeColumns(&b, rows)
		for i := 0; i < len(summaryCats); i += 2 {
			var notes []string
			for j := i; j < min(i+2, len(summaryCats)); j++ {
				notes = append(notes, fmt.Sprintf("%s %-40s", superscript(j+1), summaryCats[j].What))
			}
			fmt.Fprintf(&b, "%s\n", strings.TrimRight(strings.Join(notes, " "), " "))
		}
		for _, m := range marks {
			fmt.Fprintf(&b, "%s\n", m)
		}
	}
	if len(v.Caps) > 0 {
		fmt.Fprintf(&b, "\ncapped: %s\n", strings.Join(v.Caps, "\n        "))
	}
	if v.LeftOut != "" {
		fmt.Fprintf(&b, "%s\n", strings.ToLower(v.LeftOut[:1])+v.LeftOut[1:])
	}
	if e := endToEndSentence(run); e != "" && len(v.Rows) > 0 {
		fmt.Fprintf(&b, "end to end: %s\n", e)
	}
	if len(run.Claims) > 0 {
		var cs []string
		for _, c := range run.Claims {
			cs = append(cs, c.ID+" "+c.Status)
		}
		fmt.Fprintf(&b, "claims: %s\n", strings.Join(cs, ", "))
	}
	if reportPath != "" {
		fmt.Fprintf(&b, "report: %s\n", reportPath)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// writeColumns aligns rows: the first two columns (scale, backend) to the left, then pairs of
// a figure and its ratio, both to the right, pairs three spaces apart.
func writeColumns(b *strings.Builder, rows [][]string) {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			// A header spans its figure and ratio columns: it sets no width of its own.
			if r[0] == "pods" && i >= 2 {
				continue
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	// Widen a pair's figure column until its header fits over the pair.
	for i := 2; i+1 < len(widths); i += 2 {
		if need := utf8.RuneCountInString(rows[0][i]) - (widths[i] + 2 + widths[i+1]); need > 0 {
			widths[i] += need
		}
	}
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", max(0, widths[i]-utf8.RuneCountInString(c)))
			switch {
			case i < 2:
				line.WriteString(c + pad + "  ")
			case r[0] == "pods" && i%2 == 0:
				// The header right-aligned over its pair.
				w := widths[i] + 2 + widths[i+1]
				line.WriteString("   " + strings.Repeat(" ", max(0, w-utf8.RuneCountInString(c))) + c)
			case r[0] == "pods":
			case i%2 == 0:
				line.WriteString("   " + pad + c)
			default:
				line.WriteString("  " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

func superscript(n int) string {
	return string([]rune("⁰¹²³⁴⁵⁶⁷⁸⁹")[n%10])
}
