package nftables

import (
	"fmt"
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestKernelHoldsWhatTheFakeHoldsAndTracesLikeTheReference applies every semantic case with
// nft in a fresh namespace, reads the kernel's table back (`nft -j list table`), and checks
// that it equals the fake's after the same sync and that tracing it gives the reference's
// verdict on every cell of the grid. (Real packets through the table are the testbed's job.)
func TestKernelHoldsWhatTheFakeHoldsAndTracesLikeTheReference(t *testing.T) {
	for _, tc := range policytest.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			comp := policytest.CaseCompiler(t, tc)
			ns, b := mustKernel(t, KernelOptions{})
			if _, err := b.Sync(comp.State()); err != nil {
				t.Fatal(err)
			}
			f, _ := mustSynced(t, comp.State())
			k := sameAsFake(t, "after the full sync", ns, f)
			tab, err := policytest.NewTable("nftables-kernel", comp.Cluster(), policytest.Grid(), func(fl policy.Flow) (policy.Verdict, error) {
				v, _, err := k.trace(fl)
				return v, err
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(tab.Mismatches) > 0 {
				t.Fatal(tab.Report())
			}
		})
	}
}

// TestKernelPartialSyncsUnderChurnMatchTheFake drives the kernel and the fake through the same
// churn, every event a partial sync on both, and compares the kernel's table with the fake's
// after every sync; flows traced through the kernel's table must keep the reference's
// verdicts.
func TestKernelPartialSyncsUnderChurnMatchTheFake(t *testing.T) {
	for _, v := range []struct {
		name       string
		opts       KernelOptions
		perElement bool
	}{{"default", KernelOptions{}, false}, {"execlist", KernelOptions{ExecList: true}, false}, {"per-element", KernelOptions{}, true}} {
		t.Run(v.name, func(t *testing.T) {
			g, comp := policytest.Generate(t, "small", 100)
			flows := policytest.ProbeFlows(g, comp.Cluster(), 150, 3)
			ns, b := mustKernel(t, v.opts)
			b.cfg.PerElement = v.perElement
			if _, err := b.Sync(comp.State()); err != nil {
				t.Fatal(err)
			}
			f, fb := mustSynced(t, comp.State())
			checkTraced(t, "kernel after the full sync", sameAsFake(t, "after the full sync", ns, f).trace, comp.Cluster(), flows)
			n, partial := 0, 0
			applyChurn(t, g, comp, 60, 9, func(ev policy.Event, d *policy.Delta) {
				n++
				for _, bk := range []*Backend{b, fb} {
					if _, err := bk.Update(comp.State(), d); err != nil {
						t.Fatalf("event %d (%s): %v", n, ev.Kind, err)
					}
				}
				if !b.Last().Full {
					partial++
				}
				k := sameAsFake(t, fmt.Sprintf("after event %d (%s)", n, ev.Kind), ns, f)
				if n%10 == 0 {
					checkTraced(t, fmt.Sprintf("kernel after event %d", n), k.trace, comp.Cluster(), flows)
				}
			})
			if partial < n {
				t.Fatalf("%d of %d events were partial syncs", partial, n)
			}
			checkTraced(t, "kernel at the end", mustKernelRuleset(t, ns).trace, comp.Cluster(), flows)
		})
	}
}
