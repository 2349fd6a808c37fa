package datapath

import (
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy/policytest"
)

// newWorld is the random world of the datapath's differential tests, with the wide port
// ranges that decide between a rule set's summary and its policy map.
func newWorld(seed uint64) *policytest.World {
	return policytest.NewWorld(seed, policytest.WorldOptions{WidePorts: true})
}

// dump is Datapath.Dump, failing the test when the maps cannot be read.
func dump(tb testing.TB, d *Datapath) string {
	tb.Helper()
	out, err := d.Dump()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestRandomClustersUnderChurnAgreeWithReference is the differential test: a random cluster
// of about 1,000 pods, at least 100,000 random flows decided through BPF_PROG_TEST_RUN and
// checked against the reference evaluator and the compiled state, with churn applied through
// Update between rounds; at the end the incrementally updated maps equal a full sync's.
func TestRandomClustersUnderChurnAgreeWithReference(t *testing.T) {
	needBPF(t)
	rounds, flowsPerRound, eventsPerRound := 20, 5000, 10
	if testing.Short() {
		rounds, flowsPerRound = 4, 2500
	}
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		t.Run(string(layout), func(t *testing.T) {
			w := newWorld(uint64(len(layout)))
			c := w.Cluster(1000, 40)
			comp := policytest.MustCompile(t, c)
			s := comp.State()
			// Churn grows rule sets well past SizesFor's doubling; this test is about verdicts.
			sz := SizesFor(s, layout)
			sz.Summaries *= 4
			sz.Policy *= 4
			d := mustSynced(t, s, Options{Layout: layout, Sizes: sz})
			checked := 0
			for round := range rounds {
				keys := c.PodKeys()
				bad := 0
				for range flowsPerRound {
					f := w.Flow(c, keys)
					want, ex := c.Evaluate(f)
					if cv := s.Verdict(f); cv != want {
						t.Fatalf("round %d: %s: compiled state says %s, reference %s (%s)", round, f, cv, want, ex)
					}
					got, err := d.Verdict(f)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						bad++
						if bad <= 5 {
							t.Errorf("round %d: %s: ebpf %s, reference %s (%s)", round, f, got, want, ex)
						}
					}
					checked++
				}
				if bad > 0 {
					t.Fatalf("round %d: %d of %d flows disagree", round, bad, flowsPerRound)
				}
				for i := range eventsPerRound {
					ev := w.Event(c, round*eventsPerRound+i)
					delta, err := comp.Apply(ev)
					if err != nil {
						continue // a rejected event changes nothing
					}
					if _, err := d.Update(s, delta); err != nil {
						t.Fatalf("round %d: update after %s: %v", round, ev.Kind, err)
					}
				}
			}
			if !testing.Short() && checked < 100000 {
				t.Fatalf("checked %d flows, want at least 100,000", checked)
			}
			fresh := mustSynced(t, s, Options{Layout: layout, Sizes: sz})
			if got, want := dump(t, d), dump(t, fresh); got != want {
				t.Fatalf("maps after incremental updates differ from a full sync:\n%s", faults.Diff(want, got))
			}
			t.Logf("%d flows checked, %d pods, %d rule sets at the end", checked, len(s.Endpoints()), len(s.RuleSets()))
		})
	}
}
