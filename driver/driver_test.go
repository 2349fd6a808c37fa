package driver_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"netpolbench/agent"
	"netpolbench/catalogue"
	"netpolbench/controlplane/controlplanetest"
	"netpolbench/driver"
	"netpolbench/internal/needs"
	"netpolbench/policy"
	"netpolbench/workloads"
)

// rig is a control plane holding a generated cluster, with an agent enforcing it.
type rig struct {
	g     *workloads.Generated
	churn *workloads.Churn // continues from what earlier runs wrote
	// model is the cluster as the events drawn so far leave it.
	model  *policy.Compiler
	m      *driver.Matcher
	a      *agent.Agent
	client kubernetes.Interface
	ctx    context.Context
}

// setup writes a generated cluster through a fresh control plane and starts an agent on it
// with the catalogue's backend of that name, its observations going to the rig's matcher.
func setup(tb testing.TB, spec workloads.Spec, backend string) rig {
	tb.Helper()
	cp := controlplanetest.Start(tb)
	admin := controlplanetest.AdminClient(cp)
	g, err := workloads.Generate(spec)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &driver.Writer{Client: admin}
	start := time.Now()
	if err := w.WriteCluster(ctx, g, 16); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("wrote %d pods and %d policies in %s", len(g.Pods), len(g.Policies), time.Since(start).Round(time.Millisecond))
	m := driver.NewMatcher()
	a, err := agent.New(admin, agent.Options{Observe: m.Observe, Open: func(s *policy.State) (policy.Backend, error) {
		return catalogue.MustGet(backend).Open(catalogue.Env{State: s})
	}})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	if err := a.Started(ctx); err != nil {
		tb.Fatal(err)
	}
	churn, err := workloads.NewChurn(workloads.ChurnSpec{Mix: workloads.DefaultChurn().Mix, Count: 1 << 30, BurstSize: 5}, g, 3)
	if err != nil {
		tb.Fatal(err)
	}
	model, err := policy.Compile(g.Cluster.Clone(), policy.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return rig{g, churn, model, m, a, admin, ctx}
}

// events draws the next n events (whole batches) of the rig's default churn mix, and the
// inverse of each (policy.Cluster.Inverse), in the order that undoes them.
func (r rig) events(n int) (evs, inverses []policy.Event) {
	for len(evs) < n {
		b, ok := r.churn.Next()
		if !ok {
			break
		}
		for _, ev := range b {
			inv, err := r.model.Cluster().Inverse(ev)
			if err != nil {
				panic(err) // the churn stream follows the cluster: every event has one
			}
			if _, err := r.model.Apply(ev); err != nil {
				panic(err)
			}
			inverses = append(inverses, inv)
		}
		evs = append(evs, b...)
	}
	slices.Reverse(inverses)
	return evs, inverses
}

// endpointProber probes pod adds without packets: the flow is the pod's own address, and its
// verdict counts as in force once the agent's compiled state has the pod as an endpoint.
type endpointProber struct {
	a *agent.Agent
	// prepared counts Prepare calls, which must see every event.
	prepared int
}

func (p *endpointProber) Prepare(ev policy.Event) (policy.Flow, policy.Verdict, bool) {
	p.prepared++
	if ev.Kind != policy.PodAdd {
		return policy.Flow{}, 0, false
	}
	return policy.Flow{Src: ev.Pod.IP, Dst: ev.Pod.IP, Proto: policy.ProtoTCP, Port: 80}, policy.Allow, true
}

func (p *endpointProber) FirstVerdict(ctx context.Context, f policy.Flow, _ policy.Verdict) (time.Time, error) {
	for ctx.Err() == nil {
		found := false
		if err := p.a.Inspect(func(s *policy.State, _ policy.Backend) error {
			_, found = s.Cluster().PodByIP(f.Dst)
			return nil
		}); err != nil {
			return time.Time{}, err
		}
		if found {
			return time.Now(), nil
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, ctx.Err()
}

// TestRunPairsEveryWriteWithItsEnforcement: a paced churn run through a real API server yields
// one sample per write that changed something, with stages in the order they happen; a
// Prober sees every event in order and its probe stage lands in the samples of the events it
// probed; and the API server's counters show the writes and the watch events they caused.
// Then ApplyAll writes the events' inverses and the agent comes back to where it started.
func TestRunPairsEveryWriteWithItsEnforcement(t *testing.T) {
	r := setup(t, mustPreset(t, "small"), "compiled")
	start := r.canonical(t)
	evs, inverses := r.events(60)
	p := &endpointProber{a: r.a}
	res, err := driver.Run(r.ctx, driver.Config{Client: r.client, Events: evs, QPS: 100, Settle: 10 * time.Second, Prober: p, Probes: 64}, r.m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes in %s (lag %s, drain %s), %d samples, %d unmatched, %d failed, %d probed; load %s", res.Writes, res.Duration.Round(time.Millisecond), res.Lag.Round(time.Millisecond), res.Drain.Round(time.Microsecond), len(res.Samples), res.Unmatched, res.Failed, res.Probed, res.Load)
	if p.prepared != len(evs) {
		t.Errorf("Prepare saw %d of %d events", p.prepared, len(evs))
	}
	if res.ProbesFailed > 0 || res.ProbesSkipped > 0 {
		t.Errorf("%d probes failed (%v), %d skipped", res.ProbesFailed, res.ProbeErr, res.ProbesSkipped)
	}
	if res.Failed > 0 || res.Writes != len(evs) {
		t.Fatalf("%d of %d events written, %d failed", res.Writes, len(evs), res.Failed)
	}
	// A relabel to the label set a pod has, or an update to the spec a policy has, changes
	// no object: no watch event, nothing to pair. Everything else must pair.
	if len(res.Samples)+res.Unmatched != res.Writes || res.Unmatched > res.Writes/10 {
		t.Errorf("%d samples and %d unmatched of %d writes", len(res.Samples), res.Unmatched, res.Writes)
	}
	// The queue left at the end is at most the longest way of an event, and with the
	// compiled backend far below it.
	var longest time.Duration
	for _, s := range res.Samples {
		longest = max(longest, s.At[driver.StageApply])
	}
	if res.Drain < 0 || res.Drain > longest {
		t.Errorf("drain %s, want 0..%s (the longest event)", res.Drain, longest)
	}
	for _, s := range res.Samples {
		at := s.At
		if at[driver.StageAck] <= 0 || at[driver.StageWatch] <= 0 || at[driver.StageDequeue] < at[driver.StageWatch] ||
			at[driver.StageCompute] < at[driver.StageDequeue] || at[driver.StageApply] < at[driver.StageCompute] {
			t.Errorf("%s %s: stages out of order: %v", s.Event, s.Key, at)
		}
	}
	adds, probed := 0, 0
	for _, ev := range evs {
		if ev.Kind == policy.PodAdd {
			adds++
		}
	}
	for _, s := range res.Samples {
		if evs[s.Seq].Kind != s.Event {
			t.Errorf("sample %s %s has the seq of a %s", s.Event, s.Key, evs[s.Seq].Kind)
		}
		switch {
		case s.Event == policy.PodAdd && s.At[driver.StageProbe] < s.At[driver.StageAck]:
			t.Errorf("pod add %s: probed at %s, before the write was acknowledged at %s", s.Key, s.At[driver.StageProbe], s.At[driver.StageAck])
		case s.Event == policy.PodAdd:
			probed++
		case s.At[driver.StageProbe] != 0:
			t.Errorf("%s %s: a probe stage, but only pod adds were probed", s.Event, s.Key)
		}
	}
	if adds == 0 || probed != res.Probed {
		t.Errorf("%d pod adds, %d probed, %d samples with a probe stage", adds, res.Probed, probed)
	}
	if got := res.Load.Requests["POST pods"]; got < int64(adds) {
		t.Errorf("API server counted %d pod creations, the run wrote %d", got, adds)
	}
	if res.Load.WatchEvents["pods"] == 0 {
		t.Errorf("API server counted no pod watch events: %v", res.Load.WatchEvents)
	}

	// The inverses of the events, written with ApplyAll, put the cluster back: the agent
	// comes back to the state it started from.
	w := &driver.Writer{Client: r.client}
	if err := w.ApplyAll(r.ctx, inverses, 8); err != nil {
		t.Fatal(err)
	}
	if err := waitCanonical(func() string { return r.canonical(t) }, start, 10*time.Second); err != nil {
		t.Fatalf("after the inverses: %v", err)
	}

	// A Writer with a scheduler name writes it into its pods, so no scheduler of a real
	// cluster places them.
	pod := &policy.Pod{Namespace: r.g.Namespaces[0].Name, Name: "unscheduled", IP: netip.MustParseAddr("198.19.255.200")}
	w.SchedulerName = "netpolbench-none"
	if _, err := w.Apply(r.ctx, policy.Event{Kind: policy.PodAdd, Pod: pod}); err != nil {
		t.Fatal(err)
	}
	got, err := r.client.CoreV1().Pods(pod.Namespace).Get(r.ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.SchedulerName != "netpolbench-none" || got.Status.PodIP != pod.IP.String() {
		t.Errorf("pod written with scheduler %q and address %q", got.Spec.SchedulerName, got.Status.PodIP)
	}
}

// canonical is the agent's compiled state, rendered.
func (r rig) canonical(t *testing.T) string {
	t.Helper()
	var c string
	if err := r.a.Inspect(func(s *policy.State, _ policy.Backend) error { c = s.Canonical(); return nil }); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCanonical polls got until it renders as want.
func waitCanonical(got func() string, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		g := got()
		if g == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent's state differs from the expected one (%d against %d bytes)", len(g), len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustPreset(tb testing.TB, name string) workloads.Spec {
	s, err := workloads.Preset(name)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkEnforcementLatency measures, per scale, backend and write rate, how long churn
// written through the API server takes to be enforced, stage by stage (time since the write
// started): API acknowledgement, watch event at the agent, dequeue, delta computed, backend
// applied. One iteration is one run of the events; run it with -benchtime=1x.
//
//	go test -run '^$' -bench EnforcementLatency -benchtime=1x ./driver/
func BenchmarkEnforcementLatency(b *testing.B) {
	backends := []string{"compiled"}
	if needs.Check(catalogue.MustGet("ebpf").Needs...) == nil {
		backends = append(backends, "ebpf")
	}
	for _, pods := range []int{1000, 10000} {
		for _, be := range backends {
			b.Run(fmt.Sprintf("backend=%s/pods=%d", be, pods), func(b *testing.B) {
				r := setup(b, workloads.Default().WithPods(pods), be)
				for _, qps := range []float64{20, 100} {
					b.Run(fmt.Sprintf("qps=%g", qps), func(b *testing.B) {
						for range b.N {
							evs, _ := r.events(int(qps * 5))
							res, err := driver.Run(r.ctx, driver.Config{Client: r.client, Events: evs, QPS: qps, Settle: 20 * time.Second}, r.m)
							if err != nil {
								b.Fatal(err)
							}
							if res.Failed > 0 {
								b.Fatalf("%d of %d writes failed", res.Failed, len(evs))
							}
							report(b, res)
						}
					})
				}
			})
		}
	}
}

// report logs each stage's percentiles, and those of the agent's share (watch event to
// applied), and reports the medians and 99th percentiles of the acknowledgement, the whole
// and the agent's share.
func report(b *testing.B, res *driver.Result) {
	b.Helper()
	pct := func(name string, v func(driver.Sample) time.Duration, metric bool) {
		h := hdrhistogram.New(1, 60_000_000_000, 3)
		for _, s := range res.Samples {
			if err := h.RecordValue(max(int64(v(s)), 1)); err != nil {
				b.Fatal(err)
			}
		}
		ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1e6 }
		b.Logf("%-8s p50 %8.3f ms  p90 %8.3f ms  p99 %8.3f ms  max %8.3f ms", name, ms(50), ms(90), ms(99), float64(h.Max())/1e6)
		if metric {
			b.ReportMetric(ms(50), name+"-p50-ms")
			b.ReportMetric(ms(99), name+"-p99-ms")
		}
	}
	for st := driver.StageAck; st <= driver.StageApply; st++ {
		pct(st.String(), func(s driver.Sample) time.Duration { return s.At[st] }, st == driver.StageAck || st == driver.StageApply)
	}
	pct("agent", func(s driver.Sample) time.Duration { return s.At[driver.StageApply] - s.At[driver.StageWatch] }, true)
	b.Logf("%d writes in %s (lag %s), %d samples, %d unmatched; load %s", res.Writes, res.Duration.Round(time.Millisecond), res.Lag.Round(time.Millisecond), len(res.Samples), res.Unmatched, res.Load)
	b.ReportMetric(float64(res.Writes)/res.Duration.Seconds(), "events/s")
}
