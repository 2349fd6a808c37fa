package reports

import (
	"sort"
	"strings"

	"gonum.org/v1/plot/vg"

	"netpolbench/results"
)

// A histogram's variant is what tells it apart from the others of its group besides backend and
// scale: verdict, flow state and free labels (attach point, test name). Only the fields that vary
// within a group are shown, so legends stay short yet never show two identical entries.

func field(h results.Histogram, f string) string {
	switch f {
	case "verdict":
		return h.Verdict
	case "flow":
		return h.Flow
	}
	return h.Labels[strings.TrimPrefix(f, "label:")]
}

// varyingFields lists the fields whose values differ within hs, in a stable order.
func varyingFields(hs []results.Histogram) []string {
	cands := []string{"verdict", "flow"}
	keys := map[string]bool{}
	for _, h := range hs {
		for k := range h.Labels {
			keys[k] = true
		}
	}
	var ks []string
	for k := range keys {
		ks = append(ks, "label:"+k)
	}
	sort.Strings(ks)
	cands = append(cands, ks...)
	var out []string
	for _, f := range cands {
		seen := map[string]bool{}
		for _, h := range hs {
			seen[field(h, f)] = true
		}
		if len(seen) > 1 {
			out = append(out, f)
		}
	}
	return out
}

// variantFields lists the fields that tell apart histograms of one backend within hs: what a
// legend entry adds to the backend's name. A field that only follows the backend (its attach
// point) is left out: the backend's name already says it.
func variantFields(hs []results.Histogram) []string {
	by := map[string][]results.Histogram{}
	for _, h := range hs {
		by[h.Backend] = append(by[h.Backend], h)
	}
	within := map[string]bool{}
	for _, g := range by {
		for _, f := range varyingFields(g) {
			within[f] = true
		}
	}
	var out []string
	for _, f := range varyingFields(hs) {
		if within[f] {
			out = append(out, f)
		}
	}
	return out
}

// variant is h's values of fields, joined by spaces.
func variant(h results.Histogram, fields []string) string {
	var parts []string
	for _, f := range fields {
		if v := field(h, f); v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, " ")
}

// labelText prints a histogram's free labels as k=v pairs.
func labelText(h results.Histogram) string {
	var ks []string
	for k := range h.Labels {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, k+"="+h.Labels[k])
	}
	return strings.Join(parts, " ")
}

// dashPatterns distinguish variants drawn in the same colour.
var dashPatterns = [][]vg.Length{
	nil,
	{vg.Points(5), vg.Points(3)},
	{vg.Points(1.5), vg.Points(2)},
	{vg.Points(6), vg.Points(2), vg.Points(1.5), vg.Points(2)},
	{vg.Points(9), vg.Points(3)},
}
