package nftables

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// randomFlows draws n flows over the cluster as it is now: between pods (churn adds and
// deletes them), from and to addresses in the pod and external ranges that may or may not be
// pods or ipBlock prefixes, over TCP, UDP, SCTP and ICMP, to ports the policies name (a
// probe's) or anywhere.
func randomFlows(r *rand.Rand, cl *policy.Cluster, probes []policy.Flow, n int) []policy.Flow {
	keys := cl.PodKeys()
	addr := func() netip.Addr {
		switch k := r.IntN(10); {
		case k < 6 && len(keys) > 0:
			return cl.Pods[keys[r.IntN(len(keys))]].IP
		case k < 8:
			return netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(8)), byte(r.IntN(256))})
		default:
			return netip.AddrFrom4([4]byte{203, 0, 113, byte(r.IntN(256))})
		}
	}
	out := make([]policy.Flow, 0, n)
	for range n {
		f := policy.Flow{Src: addr(), Dst: addr()}
		switch k := r.IntN(10); {
		case k < 5 && len(probes) > 0:
			p := probes[r.IntN(len(probes))]
			f.Proto, f.Port = p.Proto, p.Port
		case k < 6:
			f.Proto = policy.ProtoICMP
		default:
			f.Proto = []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP}[r.IntN(3)]
			f.Port = uint16(1 + r.IntN(65535))
		}
		out = append(out, f)
	}
	return out
}

// source is where a differential test's cluster, flows and churn come from.
type source struct {
	name string
	// open returns a cluster and functions drawing flows over it as it is now and the next
	// churn event (ok false when there is none).
	open func(t *testing.T) (cl *policy.Cluster, flows func(n int) []policy.Flow, event func(seq int) (policy.Event, bool))
}

var sources = []source{
	// policytest's random world: a small vocabulary, so selectors, named ports declared twice
	// and nested ipBlock prefixes with excepts collide often; wide port ranges.
	{"world", func(t *testing.T) (*policy.Cluster, func(int) []policy.Flow, func(int) (policy.Event, bool)) {
		w := policytest.NewWorld(41, policytest.WorldOptions{WidePorts: true})
		cl := w.Cluster(1000, 40)
		flows := func(n int) []policy.Flow {
			keys := cl.PodKeys()
			out := make([]policy.Flow, n)
			for i := range out {
				out[i] = w.Flow(cl, keys)
			}
			return out
		}
		return cl, flows, func(seq int) (policy.Event, bool) { return w.Event(cl, seq), true }
	}},
	// The default workload at 1,000 pods and its churn stream.
	{"workloads", func(t *testing.T) (*policy.Cluster, func(int) []policy.Flow, func(int) (policy.Event, bool)) {
		g, err := workloads.Generate(workloads.Default().WithPods(1000))
		if err != nil {
			t.Fatal(err)
		}
		cl := g.Cluster.Clone()
		var probes []policy.Flow
		for _, p := range workloads.Probes(g, 2000, 17) {
			if f, err := p.Flow(cl); err == nil {
				probes = append(probes, f)
			}
		}
		r := rand.New(rand.NewPCG(23, 29))
		spec := workloads.DefaultChurn()
		spec.Count = 1 << 20
		ch, err := workloads.NewChurn(spec, g, 31)
		if err != nil {
			t.Fatal(err)
		}
		var pending []policy.Event
		event := func(int) (policy.Event, bool) {
			for len(pending) == 0 {
				batch, ok := ch.Next()
				if !ok {
					return policy.Event{}, false
				}
				pending = batch
			}
			ev := pending[0]
			pending = pending[1:]
			return ev, true
		}
		return cl, func(n int) []policy.Flow { return randomFlows(r, cl, probes, n) }, event
	}},
}

// TestRandomFlowsUnderChurnAgreeWithTheReference is the differential test: clusters of about
// 1,000 pods (the random world's and the default workload's), at least 100,000 seeded random
// flows each, traced through the table and checked against the reference evaluator (and the
// compiled state against it too), with churn applied as partial syncs between rounds; at the
// end the table equals a full sync's. On the kernel the flows are traced through the table
// nft holds, read back every round.
func TestRandomFlowsUnderChurnAgreeWithTheReference(t *testing.T) {
	for _, src := range sources {
		for _, tg := range wheres[:2] {
			t.Run(src.name+"/"+tg.name, func(t *testing.T) { randomFlowsUnderChurn(t, src, tg) })
		}
	}
}

func randomFlowsUnderChurn(t *testing.T, src source, tg where) {
	rounds, flowsPerRound, eventsPerRound := 20, 5000, 12
	if testing.Short() {
		rounds, flowsPerRound = 4, 2500
	}
	var kb *Backend
	var ns Namespace
	if tg.kernel {
		ns, kb = mustKernel(t, tg.opts)
	}
	cl, drawFlows, nextEvent := src.open(t)
	comp := policytest.MustCompile(t, cl)
	s := comp.State()
	var f *Fake
	var b *Backend
	read := func() *ruleset { f.mu.Lock(); defer f.mu.Unlock(); return f.rs }
	if kb != nil {
		b, read = kb, func() *ruleset { return mustKernelRuleset(t, ns) }
		if _, err := b.Sync(s); err != nil {
			t.Fatal(err)
		}
	} else {
		f, b = mustSynced(t, s)
	}
	checked, events, rejected, allowed := 0, 0, 0, 0
	for round := range rounds {
		trace := read().trace
		bad := 0
		for _, fl := range drawFlows(flowsPerRound) {
			want, ex := cl.Evaluate(fl)
			if cv := s.Verdict(fl); cv != want {
				t.Fatalf("round %d: %s: compiled state says %s, reference %s (%s)", round, fl, cv, want, ex)
			}
			got, path, err := trace(fl)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				if bad++; bad <= 5 {
					t.Errorf("round %d: %s: traced %s, reference %s (%s); rules %v", round, fl, got, want, ex, path)
				}
			}
			if want == policy.Allow {
				allowed++
			}
			checked++
		}
		if bad > 0 {
			t.Fatalf("round %d: %d of %d flows disagree", round, bad, flowsPerRound)
		}
		for i := range eventsPerRound {
			ev, ok := nextEvent(round*eventsPerRound + i)
			if !ok {
				break
			}
			d, err := comp.Apply(ev)
			if err != nil {
				rejected++ // a rejected event changes nothing (a pod on an address in use)
				continue
			}
			if _, err := b.Update(s, d); err != nil {
				t.Fatalf("round %d: update after %s: %v", round, ev.Kind, err)
			}
			if b.Last().Full {
				t.Fatalf("round %d: %s was a full sync", round, ev.Kind)
			}
			events++
		}
	}
	if !testing.Short() && checked < 100_000 {
		t.Fatalf("checked %d flows, want at least 100,000", checked)
	}
	if allowed == 0 || allowed == checked || events < rounds*eventsPerRound/2 {
		t.Fatalf("%d of %d flows allowed, %d events applied: the test must exercise both verdicts and churn", allowed, checked, events)
	}
	fresh, _ := mustSynced(t, s)
	if got, want := read().canonical(), fresh.canonical(); got != want {
		t.Fatalf("table after %d partial syncs differs from a full sync (- full, + partial):\n%s", events, faults.Diff(want, got))
	}
	t.Logf("%d flows checked (%d allowed), %d churn events as partial syncs (%d rejected); %d pods, %d rule sets at the end; table %+v",
		checked, allowed, events, rejected, s.NumEndpoints(), len(s.RuleSets()), b.Size())
}
