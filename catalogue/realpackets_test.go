package catalogue

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"netpolbench/datapath"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/testbed"
	"netpolbench/workloads"
)

// realProbeOpts keeps a table's denied probes to about one timeout of wall time.
var realProbeOpts = testbed.ProbeOptions{Timeout: 200 * time.Millisecond, ConfirmTimeout: 600 * time.Millisecond, Concurrency: 512}

// mustEnforce puts a backend in force, synced to s, and takes it out when the test ends; it
// skips (fails under CI) when the machine lacks what the backend needs.
func mustEnforce(t *testing.T, tb *testbed.Testbed, name string, s *policy.State, env Env) *testbed.Enforcement {
	t.Helper()
	b := MustGet(name)
	testenv.NeedKernel(t, b.Needs...)
	env.State = s
	e, _, err := b.Enforce(tb, env)
	if err != nil {
		t.Fatalf("enforce %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
	})
	return e
}

// realGrid is the e2e model's grid without SCTP, which the testbed cannot send.
func realGrid() []policytest.Probe {
	var out []policytest.Probe
	for _, p := range policytest.Grid() {
		if p.Proto != policy.ProtoSCTP {
			out = append(out, p)
		}
	}
	return out
}

// semanticParallel is how many cases run at once, each in its own testbed: a case spends
// most of its time waiting out probe timeouts, so they overlap well even on 2 cores.
const semanticParallel = 8

// TestSemanticTablesWithRealPackets runs every case of the e2e model through each backend with
// real packets: the whole grid (9 pods, 2 external hosts, TCP and UDP on two ports, ICMP)
// must match the reference evaluator cell for cell (with -short, the case's hand-written
// expectations only). /28 blocks spread the model's namespaces x, y, z over three pod
// namespaces, while pods of one namespace share a block, so both paths through the node
// (between veths, and out and back in through one veth) are exercised.
func TestSemanticTablesWithRealPackets(t *testing.T) {
	testenv.NeedRoot(t)
	grid := realGrid()
	if testing.Short() {
		grid = nil
	}
	sem := make(chan struct{}, semanticParallel)
	var wg sync.WaitGroup
	for _, c := range policytest.Cases {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Run may be called from several goroutines at once; each subtest runs in its own.
			t.Run(c.Name, func(t *testing.T) { runSemanticCase(t, c, grid) })
		}()
	}
	wg.Wait()
}

func runSemanticCase(t *testing.T, c policytest.Case, grid []policytest.Probe) {
	tb := testbed.ForTest(t, testbed.Options{PodPrefix: netip.MustParsePrefix("198.18.0.0/24"), BlockBits: 28})
	cl, err := c.Cluster()
	if err != nil {
		t.Fatalf("case cluster: %v", err)
	}
	comp, err := policy.Compile(cl, policy.Options{})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	s := comp.State()
	ps := append([]policytest.Probe(nil), grid...)
	exps, err := c.Expectations()
	if err != nil {
		t.Fatalf("expectations: %v", err)
	}
	for _, e := range exps {
		if e.Probe.Proto != policy.ProtoSCTP {
			ps = append(ps, e.Probe)
		}
	}
	flows := make([]policy.Flow, len(ps))
	for i, p := range ps {
		flows[i] = p.Flow()
	}
	for _, b := range []string{"ebpf", "iptables", "ipset", "nftables"} {
		t.Run(b, func(t *testing.T) {
			e := mustEnforce(t, tb, b, s, Env{})
			got, err := tb.ProbeVerdicts(context.Background(), s, flows, realProbeOpts)
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			if err := e.Close(); err != nil {
				t.Fatalf("remove %s: %v", b, err)
			}
			byFlow := map[policy.Flow]policy.Verdict{}
			for i, f := range flows {
				byFlow[f] = got[i]
			}
			table, err := policytest.NewTable(b+" (real packets)", cl, ps, func(f policy.Flow) (policy.Verdict, error) {
				return byFlow[f], nil
			})
			if err != nil {
				t.Fatalf("table: %v", err)
			}
			if len(table.Mismatches) > 0 {
				t.Errorf("%d of %d probes disagree with the reference:\n%s", len(table.Mismatches), len(ps), table.Report())
			}
		})
	}
}

// generatedFlows draws n probes of a generated cluster that the testbed can send (workloads
// also draws SCTP, which it cannot) and resolves them to flows against the cluster as built.
func generatedFlows(t *testing.T, g *workloads.Generated, n int) []policy.Flow {
	t.Helper()
	var out []policy.Flow
	for _, p := range workloads.Probes(g, 2*n, 7) {
		f, err := p.Flow(g.Cluster)
		if err != nil {
			t.Fatalf("resolve probe %+v: %v", p, err)
		}
		if testbed.CanSend(f) == nil {
			out = append(out, f)
		}
		if len(out) == n {
			return out
		}
	}
	t.Fatalf("only %d sendable probes of %d drawn", len(out), 2*n)
	return nil
}

// churnBurst draws a burst of churn events from the default stream's mix.
func churnBurst(t *testing.T, g *workloads.Generated, ops int) []policy.Event {
	t.Helper()
	spec := workloads.DefaultChurn()
	spec.Count, spec.Rate = ops, 0
	ch, err := workloads.NewChurn(spec, g, 11)
	if err != nil {
		t.Fatalf("new churn: %v", err)
	}
	var evs []policy.Event
	for {
		batch, ok := ch.Next()
		if !ok {
			return evs
		}
		evs = append(evs, batch...)
	}
}

// diffVerdicts reports the flows where got differs from want, the first few explained.
func diffVerdicts(t *testing.T, what string, c *policy.Cluster, flows []policy.Flow, want, got []policy.Verdict) {
	t.Helper()
	var lines []string
	n := 0
	for i, f := range flows {
		if want[i] == got[i] {
			continue
		}
		n++
		if len(lines) < 15 {
			_, why := c.Evaluate(f)
			lines = append(lines, fmt.Sprintf("  %s: got %s, reference %s (%s)", f, got[i], want[i], why))
		}
	}
	if n > 0 {
		t.Errorf("%s: %d of %d flows disagree with the reference:\n%s", what, n, len(flows), strings.Join(lines, "\n"))
	}
}

// generatedRuns are the backends of the generated-cluster test. The per-IP variant runs with
// the legacy binaries: every partial sync of iptables-nft-restore reads the whole 1,000-pod
// ruleset back (about 1.7 s an event here), legacy takes a fraction of that; the ipset variant
// keeps the default nft flavour, so both flavours carry real packets. eBPF runs in both map
// layouts, the Cilium one chosen through the environment as `verdict --layout` does.
var generatedRuns = []struct {
	name, backend string
	env           Env
}{
	{"ebpf", "ebpf", Env{}},
	{"ebpf-cilium-layout", "ebpf", Env{Layout: datapath.LayoutCilium}},
	{"iptables-legacy", "iptables-legacy", Env{}},
	{"ipset", "ipset", Env{}},
	{"nftables", "nftables", Env{}},
}

// newPodFlows returns flows to and from the pods churn added (at most 50 of them): from an
// old pod, to an old pod, from and to an outside host, on the new pod's own ports.
func newPodFlows(before, after *policy.Cluster, old []policy.Flow) []policy.Flow {
	var olds []*policy.Pod
	for _, k := range before.PodKeys() {
		if p, ok := after.Pods[k]; ok {
			olds = append(olds, p)
		}
	}
	ext := netip.MustParseAddr("203.0.113.77")
	var out []policy.Flow
	n := 0
	for _, k := range after.PodKeys() {
		if _, existed := before.Pods[k]; existed || n == 50 || len(olds) == 0 {
			continue
		}
		p := after.Pods[k]
		peer := olds[n*7%len(olds)]
		n++
		out = append(out,
			policy.Flow{Src: p.IP, Dst: ext, Proto: policy.ProtoTCP, Port: 443},
			policy.Flow{Src: p.IP, Dst: peer.IP, Proto: policy.ProtoUDP, Port: 53},
			policy.Flow{Src: p.IP, Dst: peer.IP, Proto: policy.ProtoTCP, Port: 80})
		for _, cp := range p.Ports {
			if cp.Protocol == policy.ProtoTCP || cp.Protocol == policy.ProtoUDP {
				out = append(out,
					policy.Flow{Src: peer.IP, Dst: p.IP, Proto: cp.Protocol, Port: cp.Port},
					policy.Flow{Src: ext, Dst: p.IP, Proto: cp.Protocol, Port: cp.Port})
			}
		}
	}
	return append(append([]policy.Flow(nil), old...), out...)
}

// TestGeneratedClusterSameVerdictsOnEveryBackendBeforeAndAfterChurn generates the default
// 1,000-pod cluster, sends 2,000 of its probes as real packets through each backend, applies a
// burst of churn through the backend's Update, and sends them again: every verdict, before and
// after, must be the reference evaluator's.
func TestGeneratedClusterSameVerdictsOnEveryBackendBeforeAndAfterChurn(t *testing.T) {
	testenv.NeedRoot(t)
	g, err := workloads.Generate(workloads.Default().WithPods(1000))
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	nProbes, nOps := 2000, 20
	if testing.Short() {
		nProbes, nOps = 300, 10
	}
	flows := generatedFlows(t, g, nProbes)
	events := churnBurst(t, g, nOps)

	// The reference before and after the burst, from a compiler of its own.
	ref := policytest.MustCompile(t, g.Cluster.Clone())
	want := func(c *policy.Cluster, flows []policy.Flow) []policy.Verdict {
		vs := make([]policy.Verdict, len(flows))
		for i, f := range flows {
			vs[i], _ = c.Evaluate(f)
		}
		return vs
	}
	wantBefore := want(ref.Cluster(), flows)
	for _, ev := range events {
		if _, err := ref.Apply(ev); err != nil {
			t.Fatalf("apply %s: %v", ev.Kind, err)
		}
	}
	after := newPodFlows(g.Cluster, ref.Cluster(), flows)
	wantAfter := want(ref.Cluster(), after)
	changed, allowed := 0, 0
	for i := range after {
		if i < len(flows) && wantBefore[i] != wantAfter[i] {
			changed++
		}
		if wantAfter[i] == policy.Allow {
			allowed++
		}
	}
	t.Logf("%d pods, %d flows; %d churn events change %d verdicts; after churn %d flows (%d to or from added pods), %d allowed",
		len(g.Pods), len(flows), len(events), changed, len(after), len(after)-len(flows), allowed)

	tb := testbed.ForTest(t, testbed.Options{})
	for _, run := range generatedRuns {
		b := run.backend
		t.Run(run.name, func(t *testing.T) {
			comp := policytest.MustCompile(t, g.Cluster.Clone())
			s := comp.State()
			start := time.Now()
			e := mustEnforce(t, tb, b, s, run.env)
			synced := time.Since(start)
			ctx := context.Background()
			got, err := tb.ProbeVerdicts(ctx, s, flows, realProbeOpts)
			if err != nil {
				t.Fatalf("probe before churn: %v", err)
			}
			probed := time.Since(start) - synced
			diffVerdicts(t, run.name+" before churn", comp.Cluster(), flows, wantBefore, got)
			var updating time.Duration
			for _, ev := range events {
				d, err := comp.Apply(ev)
				if err != nil {
					t.Fatalf("apply %s: %v", ev.Kind, err)
				}
				st, err := e.Backend().Update(s, d)
				if err != nil {
					t.Fatalf("update %s after %s: %v", b, ev.Kind, err)
				}
				updating += st.Duration
			}
			got, err = tb.ProbeVerdicts(ctx, s, after, realProbeOpts)
			if err != nil {
				t.Fatalf("probe after churn: %v", err)
			}
			diffVerdicts(t, run.name+" after churn", comp.Cluster(), after, wantAfter, got)
			t.Logf("%s: sync %v, %d probes %v, %d updates %v", run.name, synced.Round(time.Millisecond), len(flows),
				probed.Round(time.Millisecond), len(events), updating.Round(time.Millisecond))
		})
	}
}

func smallState(t *testing.T) *policy.State {
	t.Helper()
	cl, err := policytest.Cases[0].Cluster()
	if err != nil {
		t.Fatalf("model cluster: %v", err)
	}
	return policytest.MustCompile(t, cl).State()
}

func TestEnforceRefusesWhileAnotherBackendIsInForce(t *testing.T) {
	tb := testbed.ForTest(t, testbed.Options{PodNamespaces: 2})
	s := smallState(t)
	first := mustEnforce(t, tb, "ebpf", s, Env{})
	for _, b := range []string{"iptables", "ebpf"} {
		if e, _, err := MustGet(b).Enforce(tb, Env{State: s}); err == nil {
			e.Close()
			t.Errorf("Enforce(%s) with ebpf in force succeeded, want an error", b)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatalf("remove ebpf: %v", err)
	}
	for _, b := range []string{"ipset", "nftables"} {
		second := mustEnforce(t, tb, b, s, Env{})
		if err := tb.VerifyNoEnforcement(); err == nil {
			t.Errorf("VerifyNoEnforcement with %s in force found nothing", b)
		}
		if err := second.Close(); err != nil {
			t.Fatalf("remove %s: %v", b, err)
		}
	}
	if err := tb.VerifyNoEnforcement(); err != nil {
		t.Errorf("after removing every backend: %v", err)
	}
}
