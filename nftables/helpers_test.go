package nftables

import (
	"net/netip"
	"strings"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
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
	return g, mustCompile(t, g.Cluster.Clone())
}

// mustBackend opens a backend and registers its Close.
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

// mustSynced returns a fake holding a full sync of s, and its backend.
func mustSynced(t testing.TB, s *policy.State) (*Fake, *Backend) {
	t.Helper()
	f := NewFake()
	b := mustBackend(t, Config{NFT: f})
	if _, err := b.Sync(s); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return f, b
}

// probeFlows turns workload probes into flows and adds, for every probe, the reverse
// direction, a self flow and an ICMP flow, so egress, ingress, self and portless traffic are
// all covered.
func probeFlows(g *workloads.Generated, cl *policy.Cluster, n int, seed uint64) []policy.Flow {
	var out []policy.Flow
	for _, p := range workloads.Probes(g, n, seed) {
		f, err := p.Flow(cl)
		if err != nil {
			continue // a probe may name a pod churn has deleted
		}
		out = append(out, f, policy.Flow{Src: f.Dst, Dst: f.Src, Proto: f.Proto, Port: f.Port},
			policy.Flow{Src: f.Src, Dst: f.Dst, Proto: policy.ProtoICMP})
		if _, ok := cl.PodByIP(f.Src); ok {
			out = append(out, policy.Flow{Src: f.Src, Dst: f.Src, Proto: f.Proto, Port: f.Port})
		}
	}
	return append(out, policy.Flow{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("203.0.113.7"), Proto: policy.ProtoICMP})
}

// checkTraced compares the traced verdict of every flow with the reference evaluator's and
// reports the first disagreements with the rules that decided.
func checkTraced(t *testing.T, label string, tr func(policy.Flow) (policy.Verdict, []string, error), cl *policy.Cluster, flows []policy.Flow) {
	t.Helper()
	bad := 0
	for _, fl := range flows {
		got, path, err := tr(fl)
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		if want, ex := cl.Evaluate(fl); got != want {
			bad++
			if bad <= 10 {
				t.Errorf("%s: %s: traced %s, reference %s (%s); rules %s", label, fl, got, want, ex, strings.Join(path, " → "))
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d flows disagree with the reference", label, bad, len(flows))
	}
}

// diffLines lists the lines only one side has (faults.Diff).
func diffLines(want, got string) string { return faults.Diff(want, got) }
