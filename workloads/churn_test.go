package workloads

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"netpolbench/policy"
)

func mustCompile(t testing.TB, c *policy.Cluster) *policy.Compiler {
	t.Helper()
	comp, err := policy.Compile(c, policy.Options{})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return comp
}

func mustChurn(t testing.TB, s ChurnSpec, g *Generated, seed uint64) *Churn {
	t.Helper()
	c, err := NewChurn(s, g, seed)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// describe renders an event so streams can be compared.
func describe(ev policy.Event) string {
	switch ev.Kind {
	case policy.PodAdd:
		return fmt.Sprintf("%s %s %s %s %v", ev.Kind, ev.Pod.Key(), ev.Pod.IP, labelString(ev.Pod.Labels), ev.Pod.Ports)
	case policy.PodRelabel:
		return fmt.Sprintf("%s %s %s", ev.Kind, ev.PodKey, labelString(ev.Labels))
	case policy.PolicyAdd, policy.PolicyUpdate:
		b, _ := yaml.Marshal(ev.Policy)
		return fmt.Sprintf("%s %s", ev.Kind, b)
	case policy.PodDelete:
		return fmt.Sprintf("%s %s", ev.Kind, ev.PodKey)
	}
	return fmt.Sprintf("%s %s", ev.Kind, ev.PolicyKey)
}

func streamText(t testing.TB, c *Churn) string {
	var b strings.Builder
	for {
		evs, ok := c.Next()
		if !ok {
			return b.String()
		}
		fmt.Fprintf(&b, "batch %v\n", c.Due())
		for _, ev := range evs {
			b.WriteString(describe(ev))
			b.WriteByte('\n')
		}
	}
}

// TestChurnEventsApplyToTheClusterAsItIsThen applies a long mixed stream to a compiler: every
// event must be accepted, and the churn's view of the cluster must match the compiler's.
func TestChurnEventsApplyToTheClusterAsItIsThen(t *testing.T) {
	for _, tc := range []struct {
		preset string
		ops    int
	}{{"small", 3000}, {"default", 1500}} {
		t.Run(tc.preset, func(t *testing.T) {
			g := mustGenerate(t, mustPreset(t, tc.preset))
			spec := DefaultChurn()
			spec.Count = tc.ops
			ch := mustChurn(t, spec, g, 42)
			comp := mustCompile(t, g.Cluster)
			kinds := map[policy.EventKind]int{}
			batches := 0
			for {
				evs, ok := ch.Next()
				if !ok {
					break
				}
				batches++
				for _, ev := range evs {
					if _, err := comp.Apply(ev); err != nil {
						t.Fatalf("batch %d: %s rejected: %v", batches, describe(ev), err)
					}
					kinds[ev.Kind]++
				}
			}
			if batches != tc.ops {
				t.Errorf("%d batches, want %d", batches, tc.ops)
			}
			cl := comp.Cluster()
			if len(cl.Pods) != ch.Pods() || len(cl.Policies) != ch.Policies() {
				t.Errorf("compiler has %d pods and %d policies, churn thinks %d and %d",
					len(cl.Pods), len(cl.Policies), ch.Pods(), ch.Policies())
			}
			for k := policy.PodAdd; k <= policy.PolicyRemove; k++ {
				if kinds[k] == 0 {
					t.Errorf("no %s event in %d operations", k, tc.ops)
				}
			}
			for _, p := range cl.Pods {
				if _, ok := podOffset(p.IP); !ok {
					t.Errorf("pod %s got address %s outside the pod range", p.Key(), p.IP)
				}
			}
		})
	}
}

// TestChurnedStateStillMatchesTheReference checks the compiled state of a churned cluster
// against the reference evaluator on generated probes: the stream must leave a cluster the
// compiler and the evaluator agree on, including new label sets and replaced policies.
func TestChurnedStateStillMatchesTheReference(t *testing.T) {
	g := mustGenerate(t, mustPreset(t, "default"))
	probes := Probes(g, 3000, 5)
	spec := DefaultChurn()
	spec.Count = 400
	ch := mustChurn(t, spec, g, 9)
	comp := mustCompile(t, g.Cluster)
	for {
		evs, ok := ch.Next()
		if !ok {
			break
		}
		for _, ev := range evs {
			if _, err := comp.Apply(ev); err != nil {
				t.Fatalf("%s: %v", describe(ev), err)
			}
		}
	}
	cl := comp.Cluster()
	checked := 0
	for _, p := range probes {
		f, err := p.Flow(cl)
		if err != nil {
			continue // the pod was deleted by the churn
		}
		checked++
		want, why := cl.Evaluate(f)
		if got := comp.State().Verdict(f); got != want {
			t.Errorf("%+v: compiled %s, reference %s (%s)", p, got, want, why)
		}
	}
	if checked < len(probes)/2 {
		t.Errorf("only %d of %d probes still resolve after churn", checked, len(probes))
	}
}

func TestChurnWithTheSameSeedIsTheSameStream(t *testing.T) {
	g := mustGenerate(t, mustPreset(t, "small"))
	spec := DefaultChurn()
	spec.Count = 300
	a := streamText(t, mustChurn(t, spec, g, 1))
	b := streamText(t, mustChurn(t, spec, g, 1))
	if a != b {
		t.Error("two streams with seed 1 differ")
	}
	if c := streamText(t, mustChurn(t, spec, g, 2)); c == a {
		t.Error("seeds 1 and 2 gave the same stream")
	}
	// A stream must not change the Generated it started from.
	if d := streamText(t, mustChurn(t, spec, g, 1)); d != a {
		t.Error("a third stream with seed 1 differs: NewChurn shares state with g")
	}
}

func TestChurnNeverDeletesTwiceAndHandsOutFreeAddresses(t *testing.T) {
	g := mustGenerate(t, mustPreset(t, "small"))
	live := map[string]string{} // pod key -> IP
	used := map[string]string{} // IP -> pod key
	for _, p := range g.Cluster.Pods {
		live[p.Key()] = p.IP.String()
		used[p.IP.String()] = p.Key()
	}
	policies := map[string]bool{}
	for k := range g.Cluster.Policies {
		policies[k] = true
	}
	// Deletion-heavy, so the small cluster empties and refills, recycling addresses.
	spec := ChurnSpec{Mix: ChurnMix{PodAdd: 2, PodDelete: 2, ScaleUp: 1, ScaleDown: 2, Relabel: 1,
		PolicyAdd: 1, PolicyRemove: 1, PolicyUpdate: 1}, Count: 4000, BurstSize: 25}
	ch := mustChurn(t, spec, g, 3)
	recycled := 0
	ever := map[string]bool{}
	for ip := range used {
		ever[ip] = true
	}
	for {
		evs, ok := ch.Next()
		if !ok {
			break
		}
		for _, ev := range evs {
			switch ev.Kind {
			case policy.PodAdd:
				ip := ev.Pod.IP.String()
				if other, busy := used[ip]; busy {
					t.Fatalf("pod %s added at %s, which %s still holds", ev.Pod.Key(), ip, other)
				}
				if _, dup := live[ev.Pod.Key()]; dup {
					t.Fatalf("pod %s added twice", ev.Pod.Key())
				}
				if ever[ip] {
					recycled++
				}
				ever[ip] = true
				live[ev.Pod.Key()], used[ip] = ip, ev.Pod.Key()
			case policy.PodDelete:
				ip, ok := live[ev.PodKey]
				if !ok {
					t.Fatalf("pod %s deleted but not live", ev.PodKey)
				}
				delete(live, ev.PodKey)
				delete(used, ip)
			case policy.PodRelabel:
				if _, ok := live[ev.PodKey]; !ok {
					t.Fatalf("pod %s relabelled but not live", ev.PodKey)
				}
			case policy.PolicyAdd:
				k := ev.Policy.Namespace + "/" + ev.Policy.Name
				if policies[k] {
					t.Fatalf("policy %s added twice", k)
				}
				policies[k] = true
			case policy.PolicyUpdate:
				if k := ev.Policy.Namespace + "/" + ev.Policy.Name; !policies[k] {
					t.Fatalf("policy %s updated but not live", k)
				}
			case policy.PolicyRemove:
				if !policies[ev.PolicyKey] {
					t.Fatalf("policy %s removed but not live", ev.PolicyKey)
				}
				delete(policies, ev.PolicyKey)
			}
		}
	}
	if recycled == 0 {
		t.Error("no address was ever reused after a delete")
	}
}

func TestChurnDueFollowsTheRate(t *testing.T) {
	g := mustGenerate(t, mustPreset(t, "small"))
	ch := mustChurn(t, ChurnSpec{Mix: ChurnMix{PodAdd: 1, ScaleUp: 1}, Count: 50, Rate: 200, BurstSize: 5}, g, 1)
	events := 0
	for {
		evs, ok := ch.Next()
		if !ok {
			break
		}
		// A batch is due when the events before it have been spread at 200/s.
		if want := float64(events) / 200; ch.Due().Seconds() < want-1e-9 || ch.Due().Seconds() > want+1e-9 {
			t.Fatalf("batch after %d events due at %v, want %.3fs", events, ch.Due(), want)
		}
		events += len(evs)
	}
}

func TestChurnSpecValidationNamesTheField(t *testing.T) {
	tests := []struct {
		name string
		spec ChurnSpec
		want string
	}{
		{"no weights", ChurnSpec{Count: 1}, "mix: needs at least one positive weight"},
		{"negative weight", ChurnSpec{Mix: ChurnMix{PodAdd: 1, Relabel: -1}}, "mix.relabel: weight must be >= 0"},
		{"negative rate", ChurnSpec{Mix: ChurnMix{PodAdd: 1}, Rate: -5}, "rate: must be >= 0"},
		{"huge burst", ChurnSpec{Mix: ChurnMix{PodAdd: 1}, BurstSize: 1e6}, "burstSize: must be 0..10000"},
	}
	for _, tc := range tests {
		err := tc.spec.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestProbesSeeBothVerdictsOnEveryPath(t *testing.T) {
	g := mustGenerate(t, mustPreset(t, "default"))
	probes := Probes(g, 3000, 1)
	type key struct {
		path  string
		proto string
	}
	verdicts := map[key]map[policy.Verdict]int{}
	for _, p := range probes {
		f, err := p.Flow(g.Cluster)
		if err != nil {
			t.Fatal(err)
		}
		path := "pod->pod"
		if !strings.Contains(p.From, "/") {
			path = "external->pod"
		} else if !strings.Contains(p.To, "/") {
			path = "pod->external"
		}
		v, _ := g.Cluster.Evaluate(f)
		k := key{path, p.Protocol}
		if verdicts[k] == nil {
			verdicts[k] = map[policy.Verdict]int{}
		}
		verdicts[k][v]++
	}
	for _, path := range []string{"pod->pod", "external->pod", "pod->external"} {
		for _, proto := range []string{"TCP", "UDP"} {
			if v := verdicts[key{path, proto}]; v[policy.Allow] == 0 || v[policy.Deny] == 0 {
				t.Errorf("%s %s: %d allowed, %d denied; want both", path, proto, v[policy.Allow], v[policy.Deny])
			}
		}
		if verdicts[key{path, "SCTP"}] == nil {
			t.Errorf("%s: no SCTP probe", path)
		}
	}
	if again := Probes(g, 3000, 1); fmt.Sprint(again) != fmt.Sprint(probes) {
		t.Error("probes with the same seed differ")
	}
}

func TestProbesFileReadsBack(t *testing.T) {
	g := mustGenerate(t, mustPreset(t, "small"))
	probes := Probes(g, 200, 1)
	var buf bytes.Buffer
	if err := WriteProbes(&buf, probes); err != nil {
		t.Fatal(err)
	}
	var back ProbesFile
	if err := yaml.UnmarshalStrict(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back.Probes) != fmt.Sprint(probes) {
		t.Errorf("probes file reads back differently:\n%s", buf.String())
	}
}

// TestOddSpecsGenerateValidClusters covers the corners of the generator: no ports, no label
// templates, more namespaces than label sets, one pod, every template kind alone, and churn on
// each. Each cluster must load into the compiler, agree with the reference on probes, and
// take a churn stream.
func TestOddSpecsGenerateValidClusters(t *testing.T) {
	one := 1
	specs := map[string]Spec{
		"one pod":                 {Pods: 1, LabelSets: LabelSetSpec{Count: 1}},
		"no ports no labels":      {Pods: 30, LabelSets: LabelSetSpec{Count: 5}, Policies: withoutNamed(allKinds(3, nil))},
		"more namespaces than ls": {Pods: 30, Namespaces: NamespaceSpec{Count: 12}, LabelSets: LabelSetSpec{Count: 4}, Policies: allKinds(4, nil), Ports: []PortSpec{{Name: "http", Port: 80}}},
		"ports only unnamed":      {Pods: 50, LabelSets: LabelSetSpec{Count: 10, Distribution: Zipf, Exponent: 3}, Ports: []PortSpec{{Port: 5432}, {Port: 53, Protocol: "UDP"}}, Policies: withoutNamed(allKinds(3, &one))},
		"every kind, many peers": {Pods: 200, Namespaces: NamespaceSpec{Count: 4, Labels: []LabelTemplate{{Key: "team", Values: []string{"a", "b"}}}},
			LabelSets: LabelSetSpec{Count: 20, Labels: []LabelTemplate{{Key: "tier", Values: []string{"web", "db"}}}},
			Ports:     []PortSpec{{Name: "http", Port: 80, Alternatives: []int32{8080, 8081}}, {Name: "dns", Protocol: "UDP", Port: 53}, {Name: "sig", Protocol: "SCTP", Port: 3868}},
			Policies:  allKinds(6, nil)},
	}
	for name, s := range specs {
		t.Run(name, func(t *testing.T) {
			for i := range s.Policies {
				s.Policies[i].Peers = 1 + i%4
				s.Policies[i].Expressions = 0.5
				s.Policies[i].WithPodSelector = 0.5
				s.Policies[i].Egress = 0.5
			}
			g := mustGenerate(t, s)
			probes := Probes(g, 500, 1)
			ch := mustChurn(t, DefaultChurn(), g, 1)
			comp := mustCompile(t, g.Cluster)
			for _, p := range probes {
				f, err := p.Flow(comp.Cluster())
				if err != nil {
					t.Fatal(err)
				}
				want, _ := comp.Cluster().Evaluate(f)
				if got := comp.State().Verdict(f); got != want {
					t.Errorf("%+v: compiled %s, reference %s", p, got, want)
				}
			}
			for {
				evs, ok := ch.Next()
				if !ok {
					break
				}
				for _, ev := range evs {
					if _, err := comp.Apply(ev); err != nil {
						t.Fatalf("%s: %v", describe(ev), err)
					}
				}
			}
		})
	}
}

func allKinds(count int, ports *int) []PolicyTemplate {
	var out []PolicyTemplate
	for _, k := range policyKinds {
		out = append(out, PolicyTemplate{Kind: k, Count: count, Ports: ports})
	}
	out[0].PolicyTypes = []string{"Ingress", "Egress"}
	return out
}

func withoutNamed(ts []PolicyTemplate) []PolicyTemplate {
	var out []PolicyTemplate
	for _, t := range ts {
		if t.Kind != KindNamedPort {
			out = append(out, t)
		}
	}
	return out
}
