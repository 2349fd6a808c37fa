package datapath

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// TestGeneratedClusterUnderChurnAgreesWithReference runs the suite's own generator: the
// default spec at 1,000 pods, its probes (ports the policies name, range edges, named ports),
// with sources and destinations re-drawn from the live cluster, and its churn stream applied
// through Update between rounds.
func TestGeneratedClusterUnderChurnAgreesWithReference(t *testing.T) {
	needBPF(t)
	rounds, flowsPerRound, opsPerRound := 10, 5000, 10
	if testing.Short() {
		rounds, flowsPerRound = 3, 2000
	}
	g, err := workloads.Generate(workloads.Default().WithPods(1000))
	if err != nil {
		t.Fatal(err)
	}
	c := g.Cluster
	probes := workloads.Probes(g, 2000, 1)
	var base []policy.Flow
	for _, p := range probes {
		f, err := p.Flow(c)
		if err != nil {
			t.Fatal(err)
		}
		base = append(base, f)
	}
	comp := policytest.MustCompile(t, c)
	s := comp.State()
	spec := workloads.DefaultChurn()
	spec.Count, spec.Rate = rounds*opsPerRound, 0
	churn, err := workloads.NewChurn(spec, g, 7)
	if err != nil {
		t.Fatal(err)
	}
	sz := SizesFor(s, LayoutHash)
	sz.Summaries *= 2
	sz.Policy *= 2
	d := mustSynced(t, s, Options{Sizes: sz})
	r := rand.New(rand.NewPCG(3, 4))
	for round := range rounds {
		keys := c.PodKeys()
		pod := func() netip.Addr { return c.Pods[keys[r.IntN(len(keys))]].IP }
		bad := 0
		for range flowsPerRound {
			f := base[r.IntN(len(base))]
			switch r.IntN(3) {
			case 0:
				f.Src = pod()
			case 1:
				f.Dst = pod()
			}
			want, ex := c.Evaluate(f)
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
		}
		if bad > 0 {
			t.Fatalf("round %d: %d of %d flows disagree", round, bad, flowsPerRound)
		}
		for range opsPerRound {
			evs, ok := churn.Next()
			if !ok {
				break
			}
			for _, ev := range evs {
				delta, err := comp.Apply(ev)
				if err != nil {
					continue
				}
				if _, err := d.Update(s, delta); err != nil {
					t.Fatalf("round %d: update after %s: %v", round, ev.Kind, err)
				}
			}
		}
	}
	fresh := mustSynced(t, s, Options{Sizes: sz})
	if got, want := dump(t, d), dump(t, fresh); got != want {
		t.Fatalf("maps after incremental updates differ from a full sync:\n%s", faults.Diff(want, got))
	}
}
