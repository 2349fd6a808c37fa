package policy_test

import (
	"fmt"
	"testing"

	"netpolbench/policy"
	"netpolbench/workloads"
)

// TestGoldenCompiledSizes pins the size of the compiled state for fixed workload specs, as
// kube-proxy's rule-count tests do: a change that grows identities, rule sets or entries shows
// up here, in review. Update the table only on purpose.
func TestGoldenCompiledSizes(t *testing.T) {
	golden := map[string]string{
		"small":   "endpoints=100 identities=12 cidr-identities=7 rule-sets=15 entries=110 ingress-isolated=100 egress-isolated=30",
		"default": "endpoints=1000 identities=100 cidr-identities=13 rule-sets=89 entries=3451 ingress-isolated=998 egress-isolated=201",
	}
	for _, preset := range []string{"small", "default"} {
		t.Run(preset, func(t *testing.T) {
			spec, err := workloads.Preset(preset)
			if err != nil {
				t.Fatal(err)
			}
			g, err := workloads.Generate(spec)
			if err != nil {
				t.Fatal(err)
			}
			comp, err := policy.Compile(g.Cluster, policy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := sizes(comp.State())
			if got != golden[preset] {
				t.Errorf("compiled sizes changed:\n got: %s\nwant: %s", got, golden[preset])
			}
		})
	}
}

func sizes(s *policy.State) string {
	pods, cidrs := 0, 0
	for _, id := range s.Identities() {
		if id.ID.IsCIDR() {
			cidrs++
		} else {
			pods++
		}
	}
	isolated := [2]int{}
	for _, ep := range s.Endpoints() {
		if ep.Ingress != policy.RuleSetAllowAll {
			isolated[0]++
		}
		if ep.Egress != policy.RuleSetAllowAll {
			isolated[1]++
		}
	}
	return fmt.Sprintf("endpoints=%d identities=%d cidr-identities=%d rule-sets=%d entries=%d ingress-isolated=%d egress-isolated=%d",
		s.NumEndpoints(), pods, cidrs, len(s.RuleSets()), s.NumEntries(), isolated[0], isolated[1])
}
