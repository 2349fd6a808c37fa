package iptables

import (
	"fmt"
	"netpolbench/policy/policytest"
	"testing"
)

// TestRuleCountsGolden pins what a full sync of fixed workload specs writes, so that a change
// that grows the ruleset shows in review (kube-proxy's rule-count test does the same). The
// per-IP variant grows with rule sets × pods: doubling the pods roughly quadruples its rules,
// while the ipset variant's rules grow with the rule sets and its set members with the distinct
// peer lists (rule sets allowing the same identities share one set).
func TestRuleCountsGolden(t *testing.T) {
	type counts struct {
		chains, rules, sets, members, lines, bytes int64
	}
	golden := []struct {
		preset  string
		pods    int
		variant Variant
		want    counts
	}{
		{"small", 100, VariantIPTables, counts{157, 1178, 0, 0, 1337, 129318}},
		{"small", 100, VariantIPSet, counts{149, 438, 16, 395, 589, 22620}},
		{"small", 200, VariantIPTables, counts{333, 4702, 0, 0, 5037, 688609}},
		{"small", 200, VariantIPSet, counts{319, 957, 29, 843, 1278, 52369}},
		{"small", 400, VariantIPTables, counts{789, 17544, 0, 0, 18335, 2661023}},
		{"small", 400, VariantIPSet, counts{765, 2292, 50, 3187, 3059, 119431}},
		{"default", 1000, VariantIPTables, counts{1308, 41090, 0, 0, 42400, 6101414}},
		{"default", 1000, VariantIPSet, counts{1292, 3858, 88, 9125, 5152, 199266}},
	}
	for _, g := range golden {
		t.Run(fmt.Sprintf("%s/pods=%d/%s", g.preset, g.pods, g.variant), func(t *testing.T) {
			_, comp := policytest.Generate(t, g.preset, g.pods)
			f := NewFake()
			b := mustBackend(t, Config{Variant: g.variant, Runner: f})
			st, err := b.Sync(comp.State())
			if err != nil {
				t.Fatal(err)
			}
			chains, rules, sets, members := f.Counts()
			c := CountsOf(st)
			got := counts{int64(chains), int64(rules), int64(sets), int64(members), int64(c.Lines), int64(c.Bytes)}
			if got != g.want {
				t.Errorf("full sync writes %+v, golden %+v (update the table if the growth is intended)", got, g.want)
			}
			// The backend's own accounting must agree with what the fake holds.
			if c.TotalRules != rules || c.TotalChains != chains || c.TotalSets != sets || c.TotalSetMembers != members {
				t.Errorf("sync stats %+v disagree with the fake's %d chains, %d rules, %d sets, %d members", c, chains, rules, sets, members)
			}
			t.Logf("%d rule sets, %d endpoints: %d rules, %d set members", len(comp.State().RuleSets()), comp.State().NumEndpoints(), rules, members)
		})
	}
}
