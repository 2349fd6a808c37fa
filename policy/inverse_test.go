package policy_test

import (
	"slices"
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestInverseUndoesEveryEvent applies random churn to a compiler, then the inverses of its
// events in reverse order: the state must come back to the original, canonically, and every
// intermediate state on the way back to the one it had going forward.
func TestInverseUndoesEveryEvent(t *testing.T) {
	for seed := range 20 {
		w := policytest.NewWorld(uint64(9100+seed), policytest.WorldOptions{})
		cl := w.Cluster(30, 6)
		comp := policy.MustCompile(t, cl)
		states := []string{policy.Canonical(comp.State())}
		var inverses []policy.Event
		for step := range 40 {
			ev := w.Event(cl, step)
			inv, err := cl.Inverse(ev)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if _, err := comp.Apply(ev); err != nil {
				// The world draws events the cluster may reject (an address in use): no
				// inverse is owed for those.
				continue
			}
			inverses = append(inverses, inv)
			states = append(states, policy.Canonical(comp.State()))
		}
		for i, inv := range slices.Backward(inverses) {
			if _, err := comp.Apply(inv); err != nil {
				t.Fatalf("seed %d: inverse %d (%s): %v", seed, i, inv.Kind, err)
			}
			if got, want := policy.Canonical(comp.State()), states[i]; got != want {
				t.Fatalf("seed %d: after inverse %d (%s): %s", seed, i, inv.Kind, policy.FirstDiff(got, want))
			}
		}
	}
	cl := policytest.Model()
	for _, ev := range []policy.Event{
		{Kind: policy.PodDelete, PodKey: "x/none"},
		{Kind: policy.PolicyRemove, PolicyKey: "x/none"},
		{Kind: policy.NamespaceRelabel, Namespace: "new"},
		{Kind: policy.PodAdd, Pod: cl.Pods["x/a"]},
	} {
		if _, err := cl.Inverse(ev); err == nil {
			t.Errorf("%s of %s%s%s: an inverse, want an error", ev.Kind, ev.PodKey, ev.PolicyKey, ev.Namespace)
		}
	}
}
