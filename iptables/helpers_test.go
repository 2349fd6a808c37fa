package iptables

import (
	"net/netip"
	"strings"
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// variants and apply paths every truth table runs with.
var (
	allVariants = []Variant{VariantIPTables, VariantIPSet}
	allApplies  = []ApplyPath{ApplyRestore, ApplyPerRule}
)

func mustCompile(t testing.TB, cl *policy.Cluster) *policy.Compiler {
	t.Helper()
	comp, err := policy.Compile(cl, policy.Options{})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return comp
}

func mustCaseCompiler(t testing.TB, tc policytest.Case) *policy.Compiler {
	t.Helper()
	cl, err := tc.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	return mustCompile(t, cl)
}

// mustGenerated compiles a workloads preset scaled to pods.
func mustGenerated(t testing.TB, preset string, pods int) (*workloads.Generated, *policy.Compiler) {
	t.Helper()
	spec, err := workloads.Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	g, err := workloads.Generate(spec.WithPods(pods))
	if err != nil {
		t.Fatalf("generate %s/%d: %v", preset, pods, err)
	}
	return g, mustCompile(t, g.Cluster)
}

// mustBackend opens a backend over r and registers its Close.
func mustBackend(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	return b
}

// generatedFlows turns workload probes into flows and adds, for every probe, the reverse
// direction and a self flow, so that egress, ingress and self traffic are all covered.
func generatedFlows(t testing.TB, g *workloads.Generated, cl *policy.Cluster, n int, seed uint64) []policy.Flow {
	t.Helper()
	var out []policy.Flow
	for _, p := range workloads.Probes(g, n, seed) {
		f, err := p.Flow(cl)
		if err != nil {
			continue // a probe may name a pod churn has deleted
		}
		out = append(out, f, policy.Flow{Src: f.Dst, Dst: f.Src, Proto: f.Proto, Port: f.Port})
		if _, ok := cl.PodByIP(f.Src); ok {
			out = append(out, policy.Flow{Src: f.Src, Dst: f.Src, Proto: f.Proto, Port: f.Port})
		}
	}
	out = append(out, policy.Flow{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("203.0.113.7"), Proto: policy.ProtoICMP})
	return out
}

// checkFlows compares the traced verdict of every flow with the compiled state's and reports
// the first disagreements with the rules that decided.
func checkFlows(t *testing.T, f *Fake, s *policy.State, flows []policy.Flow) {
	t.Helper()
	bad := 0
	for _, fl := range flows {
		got, path, err := f.Trace(fl)
		if err != nil {
			t.Fatal(err)
		}
		if want := s.Verdict(fl); got != want {
			bad++
			if bad <= 10 {
				t.Errorf("%s: traced %s, state says %s (rules %s)", fl, got, want, strings.Join(path, " "))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d flows disagree", bad, len(flows))
	}
}

// normalSave is NormalSave, short for the tests.
func normalSave(save string) string { return NormalSave(save) }

func diffLines(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	in := func(x []string) map[string]int {
		m := map[string]int{}
		for _, l := range x {
			m[l]++
		}
		return m
	}
	ma, mb := in(as), in(bs)
	var d []string
	for _, l := range as {
		if mb[l] == 0 {
			d = append(d, "- "+l)
		}
	}
	for _, l := range bs {
		if ma[l] == 0 {
			d = append(d, "+ "+l)
		}
	}
	if len(d) > 20 {
		d = append(d[:20], "...")
	}
	return strings.Join(d, "\n")
}
