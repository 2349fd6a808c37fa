package iptables

import (
	"netpolbench/policy/policytest"
	"testing"
)

// TestPlanCountsWhatAFullSyncWrites: the planned size the benchmark caps on is exactly what a
// full sync into an empty table leaves, for both variants, on workloads with ipBlocks, named
// ports and default denies.
func TestPlanCountsWhatAFullSyncWrites(t *testing.T) {
	for _, c := range []struct {
		preset string
		pods   int
	}{{"small", 100}, {"default", 300}, {"default", 1000}} {
		_, comp := policytest.Generate(t, c.preset, c.pods)
		for _, v := range []Variant{VariantIPTables, VariantIPSet} {
			planned, err := Plan(comp.State(), v)
			if err != nil {
				t.Fatal(err)
			}
			b := mustBackend(t, Config{Variant: v, Runner: NewFake()})
			st, err := b.Sync(comp.State())
			if err != nil {
				t.Fatal(err)
			}
			got := CountsOf(st)
			want := Planned{Rules: got.TotalRules, Chains: got.TotalChains, Sets: got.TotalSets, SetMembers: got.TotalSetMembers}
			if planned != want {
				t.Errorf("%s/%d %s: planned %+v, the sync left %+v", c.preset, c.pods, v, planned, want)
			}
			if planned.Rules == 0 || (v == VariantIPSet && planned.SetMembers == 0) {
				t.Errorf("%s/%d %s: nothing planned: %+v", c.preset, c.pods, v, planned)
			}
		}
	}
}

// BenchmarkPlan: counting a per-IP ruleset must not cost what writing it does.
func BenchmarkPlan(b *testing.B) {
	_, comp := policytest.Generate(b, "default", 3000)
	for _, v := range []Variant{VariantIPTables, VariantIPSet} {
		b.Run("variant="+string(v), func(b *testing.B) {
			var p Planned
			for b.Loop() {
				var err error
				if p, err = Plan(comp.State(), v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.Rules), "rules")
			b.ReportMetric(float64(p.SetMembers), "set-members")
		})
	}
}
