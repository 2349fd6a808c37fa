package nftables

import (
	"fmt"
	"netpolbench/policy/policytest"
	"testing"
)

// TestTableSizesGolden pins what a full sync of fixed workload specs writes, so that a change
// that grows the table shows in review (kube-proxy's rule-count test does the same). Rules and
// chains grow with the rule sets; set elements with the distinct peer lists times their
// members (rule sets allowing the same identities on the same ports share one set), plus one
// self element per pod and one verdict map element per isolated endpoint and direction.
func TestTableSizesGolden(t *testing.T) {
	type counts struct {
		chains, rules, sets, elements, commands, bytes int
	}
	golden := []struct {
		preset string
		pods   int
		want   counts
	}{
		{"small", 100, counts{16, 44, 18, 623, 328, 26577}},
		{"small", 200, counts{30, 92, 31, 1322, 672, 56874}},
		{"small", 400, counts{53, 158, 53, 4244, 1428, 139216}},
		{"default", 1000, counts{90, 258, 89, 11298, 2725, 306649}},
	}
	for _, g := range golden {
		t.Run(fmt.Sprintf("%s/pods=%d", g.preset, g.pods), func(t *testing.T) {
			_, comp := policytest.Generate(t, g.preset, g.pods)
			f, b := mustSynced(t, comp.State())
			st := b.Last()
			z := st.Table
			got := counts{z.Chains, z.Rules, z.Sets, z.Elements, st.Commands, st.Bytes}
			if got != g.want {
				t.Errorf("full sync writes %+v, golden %+v (update the table if the growth is intended)", got, g.want)
			}
			if held := fakeSize(f); held != z {
				t.Errorf("the backend counts %+v, the fake holds %+v", z, held)
			}
			plan, err := Plan(comp.State())
			if err != nil {
				t.Fatal(err)
			}
			if plan != z {
				t.Errorf("Plan says %+v, the sync wrote %+v", plan, z)
			}
			if st.ElementsAdded != z.Elements || st.RulesWritten != z.Rules || st.ChainsWritten != z.Chains {
				t.Errorf("a sync into an empty table wrote %d elements, %d rules, %d chains; it holds %+v", st.ElementsAdded, st.RulesWritten, st.ChainsWritten, z)
			}
			t.Logf("%d rule sets, %d endpoints: %+v", len(comp.State().RuleSets()), comp.State().NumEndpoints(), z)
		})
	}
}

// TestPlannedSizesGolden pins what Plan says a full sync writes at the sweep's larger scales,
// where a sync in a test would take too long: the 10,000-pod table and the 100,000-pod one
// the benchmark budgets against (the latter not in -short mode: its workload takes seconds).
func TestPlannedSizesGolden(t *testing.T) {
	golden := []struct {
		preset string
		pods   int
		want   Size
	}{
		{"default", 3000, Size{Chains: 276, Rules: 910, Sets: 236, Elements: 54464, DispatchElements: 3727, PodElements: 47595,
			NetElements: 58, NamedElements: 84, SelfElements: 3000, MaxRuleSetRules: 7}},
		{"large", 10000, Size{Chains: 441, Rules: 1158, Sets: 412, Elements: 195881, DispatchElements: 12427, PodElements: 173190,
			NetElements: 65, NamedElements: 199, SelfElements: 10000, MaxRuleSetRules: 5}},
		{"huge", 100000, Size{Chains: 1744, Rules: 5256, Sets: 1579, Elements: 5829885, DispatchElements: 105280, PodElements: 5622384,
			NetElements: 266, NamedElements: 1955, SelfElements: 100000, MaxRuleSetRules: 8}},
	}
	for _, g := range golden {
		t.Run(fmt.Sprintf("%s/pods=%d", g.preset, g.pods), func(t *testing.T) {
			if g.pods > 10000 && testing.Short() {
				t.Skip("the 100,000-pod workload is skipped in -short mode")
			}
			_, comp := policytest.Generate(t, g.preset, g.pods)
			got, err := Plan(comp.State())
			if err != nil {
				t.Fatal(err)
			}
			if got != g.want {
				t.Errorf("Plan says a full sync writes %+v, golden %+v (update the table if the growth is intended)", got, g.want)
			}
		})
	}
}
