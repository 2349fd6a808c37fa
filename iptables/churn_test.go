package iptables

import (
	"fmt"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// TestPartialSyncsLeaveTheSameRulesAsAFullSync applies a churn stream event by event through
// Update, checks traced verdicts against the state along the way, and at the end compares the
// rules and sets with those a fresh full sync of the final state writes.
func TestPartialSyncsLeaveTheSameRulesAsAFullSync(t *testing.T) {
	for _, v := range allVariants {
		for _, ap := range allApplies {
			t.Run(fmt.Sprintf("%s/%s", v, ap), func(t *testing.T) {
				g, comp := policytest.Generate(t, "small", 100)
				flows := policytest.ProbeFlows(g, comp.Cluster(), 300, 11)
				fake := NewFake()
				b := mustBackend(t, Config{Variant: v, Apply: ap, Runner: fake})
				if _, err := b.Sync(comp.State()); err != nil {
					t.Fatal(err)
				}
				checkFlows(t, fake, comp.State(), flows)
				spec := workloads.DefaultChurn()
				spec.Count = 80
				ch, err := workloads.NewChurn(spec, g, 5)
				if err != nil {
					t.Fatal(err)
				}
				partial, full, batches := 0, 0, 0
				for {
					batch, ok := ch.Next()
					if !ok {
						break
					}
					batches++
					for _, ev := range batch {
						d, err := comp.Apply(ev)
						if err != nil {
							t.Fatalf("apply %s: %v", ev.Kind, err)
						}
						st, err := b.Update(comp.State(), d)
						if err != nil {
							t.Fatalf("update after %s: %v", ev.Kind, err)
						}
						if CountsOf(st).Full {
							full++
						} else {
							partial++
						}
					}
					if batches%20 == 0 {
						checkFlows(t, fake, comp.State(), flows)
					}
				}
				if partial == 0 {
					t.Fatalf("no partial sync in %d batches (%d full)", batches, full)
				}
				checkFlows(t, fake, comp.State(), flows)
				fresh := NewFake()
				fb, err := New(Config{Variant: v, Runner: fresh})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := fb.Sync(comp.State()); err != nil {
					t.Fatal(err)
				}
				if got, want := normalSave(fake.Save()), normalSave(fresh.Save()); got != want {
					t.Errorf("rules after %d partial and %d full syncs differ from one full sync:\n%s", partial, full, faults.Diff(want, got))
				}
				gotSets, _, _ := fake.Run("ipset", []string{"save"}, nil)
				wantSets, _, _ := fresh.Run("ipset", []string{"save"}, nil)
				if string(gotSets) != string(wantSets) {
					t.Errorf("sets differ from one full sync:\n%s", faults.Diff(string(wantSets), string(gotSets)))
				}
				c, r, _, m := fake.Counts()
				if c != len(b.chains) || r != b.Rules() {
					t.Errorf("backend believes %d chains, %d rules; the fake holds %d, %d", len(b.chains), b.Rules(), c, r)
				}
				t.Logf("%d batches: %d partial, %d full syncs; %d chains, %d rules, %d set members", batches, partial, full, c, r, m)
			})
		}
	}
}
