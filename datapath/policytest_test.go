package datapath

import (
	"testing"

	"netpolbench/policy/policytest"
)

// TestFoundationTruthTablesThroughTestRun runs every case of the foundation's semantic tables
// (policy/policytest) over its full grid through BPF_PROG_TEST_RUN, in both layouts, and
// checks the hand-written expectations too.
func TestFoundationTruthTablesThroughTestRun(t *testing.T) {
	needBPF(t)
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		for _, tc := range policytest.Cases {
			t.Run(string(layout)+"/"+tc.Name, func(t *testing.T) {
				cl, err := tc.Cluster()
				if err != nil {
					t.Fatal(err)
				}
				d := mustSynced(t, policytest.MustCompile(t, cl).State(), Options{Layout: layout})
				tab, err := policytest.NewTable("ebpf", cl, policytest.Grid(), d.Verdict)
				if err != nil {
					t.Fatal(err)
				}
				if len(tab.Mismatches) > 0 {
					t.Fatal(tab.Report())
				}
				exps, err := tc.Expectations()
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range exps {
					got, err := d.Verdict(e.Probe.Flow())
					if err != nil {
						t.Fatal(err)
					}
					if got != e.Want {
						t.Errorf("%s: ebpf %s, expected %s", e.Probe, got, e.Want)
					}
				}
			})
		}
	}
}
