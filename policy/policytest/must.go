package policytest

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"netpolbench/policy"
	"netpolbench/workloads"
)

// MustCompile compiles cl with the default options or fails tb.
func MustCompile(tb testing.TB, cl *policy.Cluster) *policy.Compiler {
	tb.Helper()
	comp, err := policy.Compile(cl, policy.Options{})
	if err != nil {
		tb.Fatalf("compile: %v", err)
	}
	return comp
}

// CaseCompiler compiles a truth-table case's cluster or fails tb.
func CaseCompiler(tb testing.TB, tc Case) *policy.Compiler {
	tb.Helper()
	cl, err := tc.Cluster()
	if err != nil {
		tb.Fatal(err)
	}
	return MustCompile(tb, cl)
}

// Generate draws a workloads preset scaled to pods and compiles a copy of its cluster (the
// generated cluster stays as drawn, for churn to be replayed on).
func Generate(tb testing.TB, preset string, pods int) (*workloads.Generated, *policy.Compiler) {
	tb.Helper()
	spec, err := workloads.Preset(preset)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := workloads.Generate(spec.WithPods(pods))
	if err != nil {
		tb.Fatalf("generate %s/%d: %v", preset, pods, err)
	}
	return g, MustCompile(tb, g.Cluster.Clone())
}

// ProbeFlows turns n of a workload's probes into flows and adds, for every probe, the reverse
// direction, a self flow and an ICMP flow, so egress, ingress, self and portless traffic are
// all covered; and one flow to an external peer.
func ProbeFlows(g *workloads.Generated, cl *policy.Cluster, n int, seed uint64) []policy.Flow {
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

// BenchPods are the pod counts of a backend package's Go benchmarks: NPB_BENCH_PODS,
// comma-separated, so `go test -bench` needs no flags (default 1,000 and 10,000).
func BenchPods() []int {
	v := os.Getenv("NPB_BENCH_PODS")
	if v == "" {
		return []int{1000, 10000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// Workloads draws each pod count's workload once for a package's benchmarks, from Spec; what
// it hands out is shared and must not be changed (compile a clone: Compile takes the cluster
// over).
type Workloads struct {
	// Spec is the workload of a pod count.
	Spec func(pods int) workloads.Spec
	m    sync.Map // pods → *workloads.Generated
}

// Get returns the workload of pods, drawing it on first use.
func (w *Workloads) Get(tb testing.TB, pods int) *workloads.Generated {
	tb.Helper()
	if g, ok := w.m.Load(pods); ok {
		return g.(*workloads.Generated)
	}
	g, err := workloads.Generate(w.Spec(pods))
	if err != nil {
		tb.Fatalf("generate %d pods: %v", pods, err)
	}
	w.m.Store(pods, g)
	return g
}

// NextDelta applies ch's events to comp until one's delta matches, and returns that delta; the
// deltas before it go to passed (nil: dropped). The matching event must be a batch of its own,
// so the delta returned is that event's alone; a churn that runs out first fails tb, saying what
// was sought.
func NextDelta(tb testing.TB, comp *policy.Compiler, ch *workloads.Churn, what string, match func(*policy.Delta) bool, passed func(*policy.Delta)) *policy.Delta {
	tb.Helper()
	for {
		batch, ok := ch.Next()
		if !ok {
			tb.Fatalf("churn ran out before an event %s", what)
		}
		for _, ev := range batch {
			d, err := comp.Apply(ev)
			if err != nil {
				tb.Fatal(err)
			}
			if match(d) {
				if len(batch) > 1 {
					tb.Fatal("need single-event batches to isolate a delta")
				}
				return d
			}
			if passed != nil {
				passed(d)
			}
		}
	}
}
