package results

import (
	"sort"
	"strings"
)

// Ratio name prefixes used by the helpers below.
const (
	RatioAboveFloorPrefix = "RatioToFloor"
	RatioBackendPrefix    = "RatioBackend"
)

// withBackend returns name with its backend=… key replaced by backend=b, and the old value; ok is
// false when name has no backend key.
func withBackend(name, b string) (out, old string, ok bool) {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		if v, found := strings.CutPrefix(p, "backend="); found {
			parts[i] = "backend=" + b
			return strings.Join(parts, "/"), v, true
		}
	}
	return name, "", false
}

// DeclareFloorRatios declares, for every timing metric of a benchmark whose name has backend=X,
// the ratio to the same metric of the sibling benchmark with backend=floor (BackendFloorName)
// when that sibling exists: "RatioToFloor/<rest of the name>/unit=<unit>". It returns how many it
// added; ratios already declared under the same name are kept.
func (run *Run) DeclareFloorRatios() int {
	return run.declare(func(name string) (string, bool) {
		floor, be, ok := withBackend(name, BackendFloorName)
		return floor, ok && be != BackendFloorName
	}, func(name, unit string) string {
		return RatioAboveFloorPrefix + "/" + strings.TrimPrefix(name, "Benchmark") + "/unit=" + unitKey(unit)
	})
}

// DeclareBackendRatios declares, for every timing metric of a benchmark with backend=X (X neither
// ref nor the floor), the ratio to the same metric of its backend=ref sibling:
// "RatioBackend/<name with backend=X-over-ref>/unit=<unit>". It returns how many it added.
func (run *Run) DeclareBackendRatios(ref string) int {
	return run.declare(func(name string) (string, bool) {
		sib, be, ok := withBackend(name, ref)
		return sib, ok && be != ref && be != BackendFloorName
	}, func(name, unit string) string {
		_, be, _ := withBackend(name, "")
		label, _, _ := withBackend(name, be+"-over-"+ref)
		return RatioBackendPrefix + "/" + strings.TrimPrefix(label, "Benchmark") + "/unit=" + unitKey(unit)
	})
}

func (run *Run) declare(sibling func(string) (string, bool), nameOf func(name, unit string) string) int {
	have := map[string]bool{}
	for _, r := range run.Ratios {
		have[r.Name] = true
	}
	var added []Ratio
	for _, b := range run.Benchmarks {
		den, ok := sibling(b.Name)
		if !ok {
			continue
		}
		db := run.Find(den)
		if db == nil {
			continue
		}
		for _, m := range b.Metrics {
			if m.Exact || db.Metric(m.Unit) == nil || db.Metric(m.Unit).Exact {
				continue
			}
			n := nameOf(b.Name, m.Unit)
			if have[n] {
				continue
			}
			have[n] = true
			added = append(added, Ratio{Name: n, Num: MetricRef{b.Name, m.Unit}, Den: MetricRef{den, m.Unit}, HigherIsBetter: m.HigherIsBetter})
		}
	}
	sort.Slice(added, func(i, j int) bool { return added[i].Name < added[j].Name })
	run.Ratios = append(run.Ratios, added...)
	return len(added)
}

// unitKey spells a unit without slashes, so a ratio name stays a clean slash-separated path.
func unitKey(unit string) string { return strings.ReplaceAll(unit, "/", "-per-") }
