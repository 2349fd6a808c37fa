package iptables

import (
	"fmt"
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestTracedVerdictsEqualReferenceOnSemanticCases runs every semantic case's full grid through
// the rules each variant writes, applied by restore and per rule, traced on the fake.
func TestTracedVerdictsEqualReferenceOnSemanticCases(t *testing.T) {
	for _, v := range allVariants {
		for _, ap := range allApplies {
			for _, tc := range policytest.Cases {
				t.Run(fmt.Sprintf("%s/%s/%s", v, ap, tc.Name), func(t *testing.T) {
					comp := policytest.CaseCompiler(t, tc)
					fake := NewFake()
					b := mustBackend(t, Config{Variant: v, Apply: ap, Runner: fake})
					if _, err := b.Sync(comp.State()); err != nil {
						t.Fatal(err)
					}
					tab, err := policytest.NewTable(string(v), comp.Cluster(), policytest.Grid(), func(f policy.Flow) (policy.Verdict, error) {
						got, _, err := fake.Trace(f)
						return got, err
					})
					if err != nil {
						t.Fatal(err)
					}
					if len(tab.Mismatches) > 0 {
						t.Fatalf("%s\nrules:\n%s", tab.Report(), fake.Save())
					}
				})
			}
		}
	}
}
