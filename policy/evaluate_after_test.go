package policy_test

import (
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// EvaluateAfter must give the verdict the cluster gives once the event is applied, and leave
// the cluster (and a compiler that owns it) as it found it.
func TestEvaluateAfterPredictsThePolicyEventsVerdict(t *testing.T) {
	for seed := range 40 {
		w := policytest.NewWorld(uint64(7000+seed), policytest.WorldOptions{})
		cl := w.Cluster(30, 6)
		comp := policy.MustCompile(t, cl)
		for step := range 30 {
			ev := w.Event(cl, step)
			if ev.Kind != policy.PolicyAdd && ev.Kind != policy.PolicyUpdate && ev.Kind != policy.PolicyRemove {
				if _, err := comp.Apply(ev); err != nil {
					t.Fatal(err)
				}
				continue
			}
			flows := make([]policy.Flow, 20)
			keys := cl.PodKeys()
			predicted := make([]policy.Verdict, len(flows))
			before := policy.Canonical(comp.State())
			for i := range flows {
				flows[i] = w.Flow(cl, keys)
				v, err := cl.EvaluateAfter(ev, flows[i])
				if err != nil {
					t.Fatal(err)
				}
				predicted[i] = v
			}
			if got := policy.Canonical(comp.State()); got != before {
				t.Fatalf("seed %d step %d: EvaluateAfter changed the compiled state: %s", seed, step, policy.FirstDiff(got, before))
			}
			if got := policy.Canonical(policy.MustCompile(t, cl.Clone()).State()); got != before {
				t.Fatalf("seed %d step %d: EvaluateAfter left the cluster changed: %s", seed, step, policy.FirstDiff(got, before))
			}
			if _, err := comp.Apply(ev); err != nil {
				t.Fatalf("seed %d step %d: %s: %v", seed, step, ev.Kind, err)
			}
			for i, f := range flows {
				if want, _ := cl.Evaluate(f); predicted[i] != want {
					t.Fatalf("seed %d step %d: %s then %v: predicted %s, got %s", seed, step, ev.Kind, f, predicted[i], want)
				}
			}
		}
	}
	if _, err := policy.NewCluster().EvaluateAfter(policy.Event{Kind: policy.PodDelete, PodKey: "a/b"}, policy.Flow{}); err == nil {
		t.Error("a pod event was accepted")
	}
}
