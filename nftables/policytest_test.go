package nftables

import (
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestFakeTracesEveryCaseLikeTheReference syncs every semantic case into the fake and traces
// the whole grid (every pair of pods and outside address, ports 80/81 over TCP, UDP, SCTP,
// and ICMP) through the table: each cell must be the reference evaluator's verdict.
func TestFakeTracesEveryCaseLikeTheReference(t *testing.T) {
	for _, tc := range policytest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			comp := policytest.CaseCompiler(t, tc)
			f, _ := mustSynced(t, comp.State())
			tab, err := policytest.NewTable("nftables", comp.Cluster(), policytest.Grid(), func(fl policy.Flow) (policy.Verdict, error) {
				return f.Verdict(fl)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(tab.Mismatches) > 0 {
				t.Fatalf("%s\ntable:\n%s", tab.Report(), f.Dump())
			}
		})
	}
}
