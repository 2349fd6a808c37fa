package nftables

import (
	"fmt"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// applyChurn runs a churn stream through the compiler and hands every event's delta to fn.
func applyChurn(t *testing.T, g *workloads.Generated, comp *policy.Compiler, events int, seed uint64, fn func(ev policy.Event, d *policy.Delta)) {
	t.Helper()
	spec := workloads.DefaultChurn()
	spec.Count = events
	ch, err := workloads.NewChurn(spec, g, seed)
	if err != nil {
		t.Fatal(err)
	}
	for {
		batch, ok := ch.Next()
		if !ok {
			return
		}
		for _, ev := range batch {
			d, err := comp.Apply(ev)
			if err != nil {
				t.Fatalf("apply %s: %v", ev.Kind, err)
			}
			fn(ev, d)
		}
	}
}

// TestPartialSyncsLeaveTheSameTableAsAFullSync applies a churn stream event by event through
// Update, traces flows against the reference along the way, and at the end compares the table
// with the one a fresh full sync of the final state writes, and the backend's own accounting
// with what the fake holds.
func TestPartialSyncsLeaveTheSameTableAsAFullSync(t *testing.T) {
	for _, preset := range []struct {
		name          string
		pods, events  int
		seed, flowSet uint64
	}{{"small", 100, 150, 5, 11}, {"default", 300, 150, 7, 13}} {
		t.Run(fmt.Sprintf("%s/pods=%d", preset.name, preset.pods), func(t *testing.T) {
			g, comp := policytest.Generate(t, preset.name, preset.pods)
			flows := policytest.ProbeFlows(g, comp.Cluster(), 300, preset.flowSet)
			f, b := mustSynced(t, comp.State())
			checkTraced(t, "after the full sync", f.Trace, comp.Cluster(), flows)
			partial, full, n := 0, 0, 0
			applyChurn(t, g, comp, preset.events, preset.seed, func(ev policy.Event, d *policy.Delta) {
				if _, err := b.Update(comp.State(), d); err != nil {
					t.Fatalf("update after %s: %v", ev.Kind, err)
				}
				if b.Last().Full {
					full++
				} else {
					partial++
				}
				if n++; n%25 == 0 {
					checkTraced(t, fmt.Sprintf("after event %d (%s)", n, ev.Kind), f.Trace, comp.Cluster(), flows)
				}
			})
			if partial == 0 || full > 0 {
				t.Fatalf("%d partial and %d full syncs: every event should be partial", partial, full)
			}
			checkTraced(t, "at the end", f.Trace, comp.Cluster(), flows)
			fresh, fb := mustSynced(t, comp.State())
			if got, want := f.canonical(), fresh.canonical(); got != want {
				t.Fatalf("table after %d partial syncs differs from one full sync (- full, + partial):\n%s", partial, faults.Diff(want, got))
			}
			if got, want := b.Size(), fb.Size(); got != want {
				t.Errorf("backend after partial syncs believes %+v, a full sync %+v", got, want)
			}
			if got := fakeSize(f); got != b.Size() {
				t.Errorf("backend believes %+v, the fake holds %+v", b.Size(), got)
			}
			t.Logf("%d events, all partial; the table holds %+v", partial, b.Size())
		})
	}
}

// fakeSize counts what the fake holds, as Size does.
func fakeSize(f *Fake) Size {
	f.mu.Lock()
	defer f.mu.Unlock()
	var z Size
	for _, c := range f.rs.chains {
		z.Chains++
		z.Rules += len(c.rules)
		if c.hook == "" {
			z.MaxRuleSetRules = max(z.MaxRuleSetRules, len(c.rules))
		}
	}
	z.Sets = len(f.rs.sets) + len(f.rs.maps)
	for _, m := range f.rs.maps {
		z.DispatchElements += len(m.keys)
	}
	for name, s := range f.rs.sets {
		switch {
		case name == setSelf:
			z.SelfElements += len(s.elems)
		case name[0] == 'p':
			z.PodElements += len(s.elems)
		case name[0] == 'n' && name[1] == '-':
			z.NetElements += len(s.elems)
		default:
			z.NamedElements += len(s.elems)
		}
	}
	z.Elements = z.DispatchElements + z.SelfElements + z.PodElements + z.NetElements + z.NamedElements
	return z
}
