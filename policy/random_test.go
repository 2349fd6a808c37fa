package policy_test

import (
	"cmp"
	"fmt"
	"slices"
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// checkFlows draws n flows and fails the test when the compiled state's verdict on one differs
// from the reference evaluator's.
func checkFlows(t *testing.T, w *policytest.World, s *policy.State, n int, label string) {
	t.Helper()
	c := s.Cluster()
	keys := c.PodKeys()
	bad := 0
	for range n {
		f := w.Flow(c, keys)
		want, ex := c.Evaluate(f)
		if got := s.Verdict(f); got != want {
			bad++
			if bad <= 5 {
				t.Errorf("%s: %s: compiled %s, reference %s (%s)", label, f, got, want, ex)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d flows disagree", label, bad, n)
	}
}

// TestCompiledMatchesReferenceUnderChurn is the property test: for random clusters, the compiled
// state read by a plain lookup gives the reference verdict on random flows, before and after
// random churn, and the incrementally maintained state equals a fresh compilation.
func TestCompiledMatchesReferenceUnderChurn(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range seeds {
		w := policytest.NewWorld(uint64(seed), policytest.WorldOptions{})
		cl := w.Cluster(20+w.Rand().IntN(40), 1+w.Rand().IntN(8))
		comp, err := policy.Compile(cl, policy.Options{})
		if err != nil {
			t.Fatalf("seed %d: compile: %v", seed, err)
		}
		checkFlows(t, w, comp.State(), 300, fmt.Sprintf("seed %d initial", seed))
		for step := range 30 {
			ev := w.Event(cl, step)
			if _, err := comp.Apply(ev); err != nil {
				t.Fatalf("seed %d step %d: %s: %v", seed, step, ev.Kind, err)
			}
			checkFlows(t, w, comp.State(), 60, fmt.Sprintf("seed %d after %s (step %d)", seed, ev.Kind, step))
		}
		fresh, err := policy.Compile(cl.Clone(), policy.Options{})
		if err != nil {
			t.Fatalf("seed %d: fresh compile: %v", seed, err)
		}
		if got, want := policy.Canonical(comp.State()), policy.Canonical(fresh.State()); got != want {
			t.Fatalf("seed %d: incremental state differs from a fresh compile:\n%s", seed, policy.FirstDiff(got, want))
		}
	}
}

// TestDeltasRebuildTheState checks that a backend applying only deltas after a full sync ends
// with exactly the state a full sync would give, after every event.
func TestDeltasRebuildTheState(t *testing.T) {
	// Also with tiny count-table segments, so rule sets split and fold their tables.
	for _, seg := range []int{*policy.SegmentSlots, 16} {
		t.Run(fmt.Sprintf("segment=%d", seg), func(t *testing.T) {
			defer func(old int) { *policy.SegmentSlots = old }(*policy.SegmentSlots)
			*policy.SegmentSlots = seg
			deltasRebuildTheState(t)
		})
	}
}

func deltasRebuildTheState(t *testing.T) {
	for seed := range 30 {
		w := policytest.NewWorld(uint64(1000+seed), policytest.WorldOptions{})
		cl := w.Cluster(20+w.Rand().IntN(40), 1+w.Rand().IntN(8))
		comp, err := policy.Compile(cl, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m := policy.NewMirror(comp.State())
		for step := range 40 {
			ev := w.Event(cl, step)
			d, err := comp.Apply(ev)
			if err != nil {
				t.Fatalf("seed %d step %d: %s: %v", seed, step, ev.Kind, err)
			}
			for _, es := range [][]policy.RuleSetEntry{d.EntriesAdded, d.EntriesRemoved} {
				if !slices.IsSortedFunc(es, func(a, b policy.RuleSetEntry) int {
					return cmp.Or(cmp.Compare(a.Set, b.Set), policy.CompareEntries(a.Entry, b.Entry))
				}) {
					t.Fatalf("seed %d step %d (%s): delta entries not sorted by set and entry: %v", seed, step, ev.Kind, es)
				}
			}
			if err := m.Apply(d); err != nil {
				t.Fatalf("seed %d step %d (%s): delta cannot be applied: %v", seed, step, ev.Kind, err)
			}
			if err := m.Equal(comp.State()); err != nil {
				t.Fatalf("seed %d step %d (%s): state after delta differs: %v", seed, step, ev.Kind, err)
			}
			if err := policy.CheckBookkeeping(comp); err != nil {
				t.Fatalf("seed %d step %d (%s): %v", seed, step, ev.Kind, err)
			}
		}
	}
}

// FuzzCompiledMatchesReference lets the fuzzer choose the random world, its size and the churn
// it goes through; the compiled lookup must agree with the reference throughout, and the
// incremental state must equal a fresh compile.
func FuzzCompiledMatchesReference(f *testing.F) {
	f.Add(uint64(1), uint8(20), uint8(3), uint8(10))
	f.Add(uint64(99), uint8(50), uint8(8), uint8(30))
	f.Fuzz(func(t *testing.T, seed uint64, pods, policies, events uint8) {
		w := policytest.NewWorld(seed, policytest.WorldOptions{})
		cl := w.Cluster(int(pods%64), int(policies%12))
		comp, err := policy.Compile(cl, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkFlows(t, w, comp.State(), 100, "initial")
		m := policy.NewMirror(comp.State())
		for step := range int(events % 40) {
			ev := w.Event(cl, step)
			d, err := comp.Apply(ev)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, ev.Kind, err)
			}
			checkFlows(t, w, comp.State(), 20, fmt.Sprintf("after %s", ev.Kind))
			// What a backend holds from deltas alone, and the compiler's own bookkeeping.
			if err := m.Apply(d); err != nil {
				t.Fatalf("step %d %s: delta cannot be applied: %v", step, ev.Kind, err)
			}
			if err := m.Equal(comp.State()); err != nil {
				t.Fatalf("step %d %s: state after delta differs: %v", step, ev.Kind, err)
			}
			if err := policy.CheckBookkeeping(comp); err != nil {
				t.Fatalf("step %d %s: %v", step, ev.Kind, err)
			}
		}
		fresh, err := policy.Compile(cl.Clone(), policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := policy.Canonical(comp.State()), policy.Canonical(fresh.State()); got != want {
			t.Fatal(policy.FirstDiff(got, want))
		}
	})
}
