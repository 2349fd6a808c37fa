package policy

import "testing"

// EvaluateAfter must give the verdict the cluster gives once the event is applied, and leave
// the cluster (and a compiler that owns it) as it found it.
func TestEvaluateAfterPredictsThePolicyEventsVerdict(t *testing.T) {
	for seed := range 40 {
		w := newRandomWorld(uint64(7000 + seed))
		cl := w.cluster(t, 30, 6)
		comp := mustCompile(t, cl)
		for step := range 30 {
			ev := w.event(cl, step)
			if ev.Kind != PolicyAdd && ev.Kind != PolicyUpdate && ev.Kind != PolicyRemove {
				if _, err := comp.Apply(ev); err != nil {
					t.Fatal(err)
				}
				continue
			}
			flows := make([]Flow, 20)
			predicted := make([]Verdict, len(flows))
			before := canonical(comp.State())
			for i := range flows {
				flows[i] = w.flow(cl)
				v, err := cl.EvaluateAfter(ev, flows[i])
				if err != nil {
					t.Fatal(err)
				}
				predicted[i] = v
			}
			if got := canonical(comp.State()); got != before {
				t.Fatalf("seed %d step %d: EvaluateAfter changed the compiled state: %s", seed, step, firstDiff(got, before))
			}
			if got := canonical(mustCompile(t, cl.Clone()).State()); got != before {
				t.Fatalf("seed %d step %d: EvaluateAfter left the cluster changed: %s", seed, step, firstDiff(got, before))
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
	if _, err := NewCluster().EvaluateAfter(Event{Kind: PodDelete, PodKey: "a/b"}, Flow{}); err == nil {
		t.Error("a pod event was accepted")
	}
}
