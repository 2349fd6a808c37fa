package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"netpolbench/bench/stamp"
	"netpolbench/catalogue"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// Runner runs a sweep and returns its results.
type Runner struct {
	Spec   Spec
	Source Source
	// Progress reports on stderr; nil for none.
	Progress *Progress
	// Log receives one line per cap and warning; nil for none.
	Log io.Writer
	// Kernel enables the phases that send real packets through the testbed (stamped
	// per-packet cost, round trips, churn under load). They need root; without it they are
	// recorded as caps.
	Kernel bool

	bed    *testbed.Testbed
	bedErr error

	run    *results.Run
	hists  *Histograms
	sizes  map[string][]sizePoint // backend → sizes over the sweep
	pkt    map[string][]sizePoint // backend → per-packet p50 cost over the sweep (ns)
	podAdd map[string]*podAddCheck
}

type sizePoint struct {
	pods, identities int
	// labelSets is set for points of the label-set sweep (pods fixed).
	labelSets int
	size      results.Size
	syncNS    float64
	podAddNS  float64
}

type podAddCheck struct {
	events, entriesChanged int
	policyEntriesBefore    uint64
	policyEntriesAfter     uint64
	measured               bool
}

func (r *Runner) logf(format string, a ...any) {
	if r.Log != nil {
		fmt.Fprintf(r.Log, format+"\n", a...)
	}
}

func (r *Runner) capf(backend string, pods int, skipped bool, limit, format string, a ...any) {
	c := results.Cap{Backend: backend, Pods: pods, Skipped: skipped, Reason: fmt.Sprintf(format, a...), Limit: limit}
	r.run.Caps = append(r.run.Caps, c)
	what := "capped"
	if skipped {
		what = "skipped"
	}
	r.logf("bench: %s at %d pods %s: %s", backend, pods, what, c.Reason)
}

// scalePlan is one (pods, labelSets) point of the sweep.
type scalePlan struct{ pods, labelSets int }

func (r *Runner) plan() []scalePlan {
	var out []scalePlan
	if r.Source.Fixed() {
		return []scalePlan{{}}
	}
	for _, p := range r.Spec.Pods {
		out = append(out, scalePlan{pods: p})
	}
	lp := r.Spec.LabelSetPods
	if lp == 0 && len(r.Spec.LabelSets) > 0 {
		for _, p := range r.Spec.Pods {
			if p <= r.Spec.Budget.IptablesMaxPods {
				lp = max(lp, p)
			}
		}
	}
	for _, l := range r.Spec.LabelSets {
		out = append(out, scalePlan{pods: lp, labelSets: min(l, lp)})
	}
	return out
}

// Run runs the sweep. It returns an error only for a failure of the run itself (bad spec, a
// workload that cannot be built); a backend that fails or is missing becomes a cap.
func (r *Runner) Run(ctx context.Context) (*results.Run, error) {
	if err := r.Spec.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	r.run = results.New()
	r.run.Seed = int64(r.Spec.Seed)
	r.run.Config = results.Config{Backends: r.Spec.Backends, Pods: r.Spec.Pods, Duration: time.Duration(r.Spec.Duration), Samples: r.Spec.Samples,
		Extra: map[string]string{"packets": fmt.Sprint(r.Spec.Packets), "churn_events": fmt.Sprint(r.Spec.ChurnEvents),
			"iptables_max_pods": fmt.Sprint(r.Spec.Budget.IptablesMaxPods), "max_phase": time.Duration(r.Spec.Budget.MaxPhase).String()}}
	if len(r.Spec.LabelSets) > 0 {
		r.run.Config.Extra["label_sets"] = strings.Trim(fmt.Sprint(r.Spec.LabelSets), "[]")
	}
	r.hists = NewHistograms()
	r.sizes = map[string][]sizePoint{}
	r.pkt = map[string][]sizePoint{}
	r.podAdd = map[string]*podAddCheck{}
	defer r.closeBed()
	if r.Kernel {
		r.run.Notes = append(r.run.Notes,
			"Per-packet cost (bench/stamp's package doc has the method): each backend at each scale is measured in a testbed of its own, on the compiled state before churn and a frozen flow list (state_digest and flow_digest on every latency entry), in three floor rounds alternating with three backend rounds; new flows are raw packets with a 5-tuple each (dense: back to back; rate=sparse: a millisecond apart), established packets are data segments on real connections. Every stamped packet is checked against the reference; a disagreement fails the run.",
			"eBPF stamps: TCX programs at the head and the tail of the TCX chains of every pod veth, around the datapath (TCX_NEXT on allow); a pod-to-pod sample adds the source veth's ingress part and the destination veth's egress part, the datapath's own conntrack included.",
			"iptables stamps: span nf-path from PREROUTING at priority -500 (before defragmentation and conntrack) to the outgoing veth's TCX egress (after conntrack's confirmation), the headline, compared with eBPF; span nf-filter from FORWARD -2 to +2, the filter table alone.",
			"Floors match the path: per span, per path (allowed through both enforcement points or one, dropped at the source's or the destination's point, closed on kfree_skb as real drops), the same stamps around step programs that pass or drop the packets the reference denies there. A floor round unhooks iptables' rules (the jump and the conntrack rule) so nf_conntrack does not run; the filter table's empty built-in chains stay.",
			"Above the floor: every sample minus one constant, its path's floor median from the same measurement's floor rounds; percentiles are of those differences (clamped at 1 ns and counted). Per-packet growth (the ebpf-flat claim) uses the p50 of denied new flows above their floors.")
	}
	plans := r.plan()
	steps := len(plans) * len(r.Spec.Backends)
	if a := r.Spec.APIServer; a != nil {
		steps += len(a.Pods) * len(a.Backends)
	}
	r.Progress.Total(steps)
	for _, sp := range plans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := r.runScale(ctx, sp); err != nil {
			return nil, err
		}
	}
	r.closeBed()
	if err := r.apiServerSweep(ctx); err != nil {
		return nil, err
	}
	r.finish()
	r.run.Duration = time.Since(start)
	r.Progress.Done()
	return r.run, nil
}

// finish turns what the sweep collected into fits, claims and latency summaries.
func (r *Runner) finish() {
	// After the sweep: the source describes which presets the scales used.
	r.run.Workload = r.Source.Describe()
	r.fits()
	r.claims()
	r.run.PeakRSSBytes = peakRSS()
}

func (r *Runner) runScale(ctx context.Context, sp scalePlan) error {
	t0 := time.Now()
	sc, err := r.Source.Scale(sp.pods, sp.labelSets)
	if err != nil {
		return fmt.Errorf("build workload for %d pods: %w", sp.pods, err)
	}
	genNS := time.Since(t0)
	base := sc.Cluster.Clone()
	t1 := time.Now()
	comp, err := policy.Compile(sc.Cluster, policy.Options{})
	if err != nil {
		return fmt.Errorf("compile workload of %d pods: %w", sc.Pods, err)
	}
	compileNS := time.Since(t1)
	st := comp.State()
	pods := st.NumEndpoints()
	idents := len(st.Identities())
	label := fmt.Sprintf("pods=%d", pods)
	if sp.labelSets > 0 {
		label += fmt.Sprintf("/labelsets=%d", sp.labelSets)
	}
	r.run.Benchmarks = append(r.run.Benchmarks,
		results.Benchmark{Name: "BenchmarkGenerate/" + label, Iters: 1, Metrics: []results.Metric{{Unit: "ns/op", Samples: []float64{float64(genNS)}}}},
		results.Benchmark{Name: "BenchmarkCompile/" + label, Iters: 1, Metrics: []results.Metric{
			{Unit: "ns/op", Samples: []float64{float64(compileNS)}},
			{Unit: "identities", Exact: true, Samples: []float64{float64(idents)}},
			{Unit: "rule-entries", Exact: true, Samples: []float64{float64(st.NumEntries())}},
		}})
	sweep := sp.labelSets == 0
	// One flow list per scale, frozen before any backend runs: every backend's stamped
	// packets belong to it.
	var flows *stamp.FlowList
	if r.Kernel && sweep && r.anyKernelBackend() {
		if flows, err = freezeFlows(st, r.Spec.Seed); err != nil {
			r.run.Notes = append(r.run.Notes, fmt.Sprintf("pods=%d: no per-packet measurement: %v", pods, err))
		}
	}
	for i, name := range r.Spec.Backends {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.Progress.Step(fmt.Sprintf("%s backend=%s", label, name))
		// The first backend uses the compiler built above; later ones get a fresh copy so every
		// backend starts from the same state and sees the same churn.
		c := comp
		if i > 0 {
			c, err = policy.Compile(base.Clone(), policy.Options{})
			if err != nil {
				return fmt.Errorf("compile workload of %d pods: %w", pods, err)
			}
		}
		if err := r.runBackend(ctx, name, label, sweep, sc, c, idents, flows); err != nil {
			return err
		}
	}
	return nil
}

// phaseCtx bounds one backend phase by the budget.
func (r *Runner) phaseCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(r.Spec.Budget.MaxPhase))
}

// runBackend measures one backend at one scale. Its kernel phases run in a testbed of its own,
// built on first use and removed at the end. It returns an error only when a stamped packet
// disagreed with the reference (the run fails); every other failure is a cap.
func (r *Runner) runBackend(ctx context.Context, name, label string, sweep bool, sc *Scenario, comp *policy.Compiler, idents int, flows *stamp.FlowList) error {
	b, err := catalogue.Get(name)
	if err != nil {
		r.capf(name, sc.Pods, true, "", "%v", err)
		return nil
	}
	r.closeBed()
	defer r.closeBed()
	st := comp.State()
	pods := st.NumEndpoints()
	if max := b.MaxPods; max > 0 && pods > max {
		r.capf(name, pods, true, fmt.Sprintf("max %d pods", max), "%s", b.CapReason)
		return nil
	}
	if b.Family.PerIP {
		if max := r.Spec.Budget.IptablesMaxPods; max > 0 && pods > max {
			r.capf(name, pods, true, fmt.Sprintf("max %d pods", max),
				"per-IP rules grow as pods²: one iptables-restore above %d pods exceeds the run's time budget", max)
			return nil
		}
		if est, max := perIPEstimate(st), r.Spec.Budget.IptablesMaxRules; max > 0 && est > max {
			r.capf(name, pods, true, fmt.Sprintf("max %d per-IP rules or set members", max),
				"the state expands to about %d per-IP rules (or set members): above the run's budget of %d", est, max)
			return nil
		}
	}
	env := catalogue.Env{State: st, MapHeadroom: r.Spec.MapHeadroom}
	var be policy.Backend
	// A backend whose state lives in the node namespace is in force there from its first sync:
	// it is opened as the testbed's enforcement, which checks for leftovers when it is closed.
	var inNode *testbed.Enforcement
	if b.Family.InNode {
		bed, err := r.openBed()
		if err != nil {
			r.capf(name, pods, true, "", "%s needs the testbed's node namespace: %v", name, err)
			return nil
		}
		if inNode, err = b.OpenInNode(bed, env); err != nil {
			r.capf(name, pods, true, "", "open %s: %v", name, err)
			return nil
		}
		be = inNode.Backend()
		defer r.takeOut(name, inNode)
	} else {
		if be, err = b.Open(env); err != nil {
			r.capf(name, pods, true, "", "open %s: %v", name, err)
			return nil
		}
		defer be.Close()
	}

	pt := sizePoint{pods: pods, identities: idents}
	if !sweep {
		pt.labelSets = len(st.Identities())
	}
	// Full sync, repeated: the first installs everything, the rest replace it with the same
	// state, which is what a periodic resync costs.
	bn := fmt.Sprintf("BenchmarkSync/backend=%s/%s", name, label)
	var ns, ops []float64
	var last policy.SyncStats
	pctx, cancel := r.phaseCtx(ctx)
	samples := r.Spec.Samples
	if !sweep {
		// Label-set points measure sizes; one sync is enough.
		samples = 1
	}
	for i := 0; i < samples; i++ {
		if pctx.Err() != nil {
			r.capf(name, pods, false, fmt.Sprintf("%s per phase", time.Duration(r.Spec.Budget.MaxPhase)), "full sync stopped after %d of %d samples", i, samples)
			break
		}
		t := time.Now()
		s, err := be.Sync(st)
		d := time.Since(t)
		if err != nil {
			cancel()
			r.capf(name, pods, true, "", "full sync: %v", err)
			return nil
		}
		last = s
		ns = append(ns, float64(d))
		ops = append(ops, float64(s.Ops))
	}
	cancel()
	ms := []results.Metric{{Unit: "ns/op", Samples: ns}, {Unit: "kernel-ops", Exact: true, Samples: ops[:1]}}
	if last.Bytes > 0 {
		ms = append(ms, results.Metric{Unit: "sync-bytes", Exact: true, Samples: []float64{float64(last.Bytes)}})
	}
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: bn, Iters: 1, Metrics: ms})
	r.run.Updates = append(r.run.Updates, results.Update{Backend: name, Pods: pods, Path: "full-sync", Event: results.EventFullSync, ApplyNS: ns, KernelOps: ops, OpsUnit: b.Family.OpsUnit})
	pt.syncNS = median(ns)

	size := r.size(b, be, last, pods, idents)
	pt.size = size
	if sweep {
		r.run.Sizes = append(r.run.Sizes, size)
	} else {
		r.run.Benchmarks = append(r.run.Benchmarks, labelSetSizeBenchmark(size, label))
	}

	if !sweep {
		r.sizes[name] = append(r.sizes[name], pt)
		return nil
	}
	// Per-packet cost on the state as compiled, before churn changes it.
	if r.Kernel && b.CanEnforce() && flows != nil {
		if err := r.packets(ctx, b, pods, st, flows, inNode); err != nil {
			return err
		}
	}
	decider, _ := be.(policy.Decider)
	if decider == nil && inNode != nil && r.Kernel {
		// No program to test-run: converge on real packets through the testbed.
		decider = &packetDecider{ctx: ctx, bed: r.bed}
	}
	r.churn(ctx, b, label, pods, comp, be, decider, &pt)

	if tr, ok := be.(catalogue.TestRunner); ok {
		r.testRuns(ctx, name, pods, st, sc, tr)
	}
	if r.Kernel && b.CanEnforce() {
		r.kernelPhases(ctx, b, pods, st, comp, inNode)
	}
	r.sizes[name] = append(r.sizes[name], pt)
	r.run.PeakRSSBytes = max(r.run.PeakRSSBytes, peakRSS())
	return nil
}

// perIPEstimate is how many per-IP rules (or ipset members) the state expands to: every
// pod-identity entry becomes one rule per member pod. It decides a cap before a sync that
// would not finish in the run's budget is started.
func perIPEstimate(st *policy.State) int {
	members := map[policy.Identity]int{}
	n := 0
	for _, rs := range st.RuleSets() {
		for _, e := range rs.Entries {
			if e.Peer == policy.IdentityAny || e.Peer.IsCIDR() {
				n++
				continue
			}
			m, ok := members[e.Peer]
			if !ok {
				m = len(st.Members(e.Peer))
				members[e.Peer] = m
			}
			n += max(m, 1)
		}
	}
	return n + 2*st.NumEndpoints()
}

func (r *Runner) anyKernelBackend() bool {
	for _, n := range r.Spec.Backends {
		if b, err := catalogue.Get(n); err == nil && b.CanEnforce() {
			return true
		}
	}
	return false
}

// size asks the backend for its exact state, falling back to the counts its last full sync
// reported where its family can size from them.
func (r *Runner) size(b *catalogue.Backend, be policy.Backend, last policy.SyncStats, pods, idents int) results.Size {
	var size results.Size
	if sz, ok := be.(catalogue.Sizer); ok {
		s, err := sz.Size()
		if err != nil {
			r.logf("bench: %s size at %d pods: %v (using sync counts)", b.Name, pods, err)
		} else {
			size = s
		}
	}
	if size.Backend == "" && b.Family.SizeFromCounts != nil {
		if s, ok := b.Family.SizeFromCounts(last); ok {
			size = s
		}
	}
	size.Backend, size.Pods, size.Identities = b.Name, pods, idents
	size.PeakRSSBytes = peakRSS()
	return size
}

// churnKinds are the event types measured, in report order.
var churnKinds = []string{results.EventPodAdd, results.EventPodDelete, results.EventRelabel, results.EventScaleUp,
	results.EventScaleDown, results.EventPolicyAdd, results.EventPolicyUpdate, results.EventPolicyRemove}

// churn applies ChurnEvents events of every kind through the compiler and the backend's
// Update, timing each apply and, with a decider, the convergence to the new verdict.
func (r *Runner) churn(ctx context.Context, b *catalogue.Backend, label string, pods int, comp *policy.Compiler, be policy.Backend, decider policy.Decider, pt *sizePoint) {
	name := b.Name
	ch := newChurner(r.Spec.Seed ^ uint64(pods))
	rng := rand.New(rand.NewPCG(r.Spec.Seed, uint64(pods)))
	pctx, cancel := r.phaseCtx(ctx)
	defer cancel()
	for _, kind := range churnKinds {
		up := results.Update{Backend: name, Pods: pods, Path: b.Path, Event: kind, OpsUnit: b.Family.OpsUnit}
		var entriesChanged int
		for i := 0; i < r.Spec.ChurnEvents; i++ {
			if pctx.Err() != nil {
				r.capf(name, pods, false, fmt.Sprintf("%s per phase", time.Duration(r.Spec.Budget.MaxPhase)), "churn stopped at %s event %d", kind, i)
				r.addUpdate(up, label)
				return
			}
			evs, err := ch.events(comp.Cluster(), kind, r.Spec.ScaleBurst)
			if err != nil {
				r.logf("bench: %s churn %s: %v", name, kind, err)
				break
			}
			probes := convergenceCandidates(comp.State(), evs, rng)
			before := make([]policy.Verdict, len(probes))
			for j, f := range probes {
				before[j] = comp.State().Verdict(f)
			}
			var sizeBefore uint64
			if kind == results.EventPodAdd {
				sizeBefore = r.policyEntries(be)
			}
			var applyNS time.Duration
			var ops int
			start := time.Now()
			failed := false
			for _, ev := range evs {
				d, err := comp.Apply(ev)
				if err != nil {
					r.logf("bench: %s churn %s: compile: %v", name, kind, err)
					failed = true
					break
				}
				entriesChanged += len(d.EntriesAdded) + len(d.EntriesRemoved)
				t := time.Now()
				s, err := be.Update(comp.State(), d)
				applyNS += time.Since(t)
				if err != nil {
					r.capf(name, pods, false, "", "update %s: %v", kind, err)
					failed = true
					break
				}
				ops += s.Ops
			}
			if failed {
				break
			}
			up.ApplyNS = append(up.ApplyNS, float64(applyNS))
			up.KernelOps = append(up.KernelOps, float64(ops))
			if decider != nil {
				if c, ok := converge(decider, comp.State(), probes, before, start, time.Duration(r.Spec.Budget.MaxPhase)/10); ok {
					up.ConvergenceNS = append(up.ConvergenceNS, float64(c))
				}
			}
			if kind == results.EventPodAdd {
				chk := r.podAdd[name]
				if chk == nil {
					chk = &podAddCheck{}
					r.podAdd[name] = chk
				}
				chk.events++
				after := r.policyEntries(be)
				if sizeBefore != 0 || after != 0 {
					chk.measured = true
					chk.policyEntriesBefore += sizeBefore
					chk.policyEntriesAfter += after
				}
			}
		}
		if kind == results.EventPodAdd {
			if chk := r.podAdd[name]; chk != nil {
				chk.entriesChanged += entriesChanged
			}
			pt.podAddNS = median(up.ApplyNS)
		}
		r.addUpdate(up, label)
	}
}

func (r *Runner) addUpdate(up results.Update, label string) {
	if len(up.ApplyNS) == 0 {
		return
	}
	r.run.Updates = append(r.run.Updates, up)
	ms := []results.Metric{{Unit: "ns/op", Samples: up.ApplyNS}, {Unit: "kernel-ops/op", Samples: up.KernelOps}}
	if len(up.ConvergenceNS) > 0 {
		ms = append(ms, results.Metric{Unit: "converge-ns/op", Samples: up.ConvergenceNS})
	}
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{
		Name: fmt.Sprintf("BenchmarkUpdate/backend=%s/%s/event=%s", up.Backend, label, up.Event), Iters: 1, Metrics: ms})
}

// policyEntries is the number of policy entries the backend holds (the eBPF policy map, the
// compiled rule sets), or 0 when it does not say.
func (r *Runner) policyEntries(be policy.Backend) uint64 {
	sz, ok := be.(catalogue.Sizer)
	if !ok {
		return 0
	}
	s, err := sz.Size()
	if err != nil {
		return 0
	}
	return policyMapEntries(s)
}

func policyMapEntries(s results.Size) uint64 {
	var n uint64
	for _, m := range s.Maps {
		if strings.Contains(m.Name, "policy") || m.Name == "rulesets" {
			n += m.Entries
		}
	}
	return n
}

// convergenceCandidates are flows whose verdict an event may change: from random pods to the
// event's pods and from them to random pods, on their declared ports and a policy's ports.
func convergenceCandidates(st *policy.State, evs []policy.Event, rng *rand.Rand) []policy.Flow {
	cl := st.Cluster()
	keys := cl.PodKeys()
	if len(keys) == 0 {
		return nil
	}
	var targets []*policy.Pod
	var ports []uint16
	for _, ev := range evs {
		switch ev.Kind {
		case policy.PodAdd:
			targets = append(targets, ev.Pod)
		case policy.PodDelete, policy.PodRelabel:
			if p, ok := cl.Pods[ev.PodKey]; ok {
				targets = append(targets, p)
			}
		case policy.PolicyAdd, policy.PolicyUpdate, policy.PolicyRemove:
			np := ev.Policy
			if np == nil {
				np = cl.Policies[ev.PolicyKey]
			}
			if np == nil {
				continue
			}
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Port != nil && p.Port.IntValue() > 0 {
						ports = append(ports, uint16(p.Port.IntValue()))
					}
				}
			}
			for range 16 {
				p := cl.Pods[keys[rng.IntN(len(keys))]]
				if p.Namespace == np.Namespace {
					targets = append(targets, p)
				}
			}
		}
	}
	if len(targets) > 8 {
		targets = targets[:8]
	}
	var out []policy.Flow
	for _, t := range targets {
		tp := slices.Clone(ports)
		for _, cp := range t.Ports {
			tp = append(tp, cp.Port)
		}
		if len(tp) == 0 {
			tp = append(tp, 80)
		}
		for range 24 {
			peer := cl.Pods[keys[rng.IntN(len(keys))]]
			port := tp[rng.IntN(len(tp))]
			out = append(out, policy.Flow{Src: peer.IP, Dst: t.IP, Proto: policy.ProtoTCP, Port: port})
			out = append(out, policy.Flow{Src: t.IP, Dst: peer.IP, Proto: policy.ProtoTCP, Port: port})
		}
	}
	return out
}

// converge polls the decider on the first candidate whose verdict the event changed, until it
// gives the new verdict, and returns the time from start (the event) to that probe.
func converge(p policy.Decider, st *policy.State, probes []policy.Flow, before []policy.Verdict, start time.Time, limit time.Duration) (time.Duration, bool) {
	_, real := p.(*packetDecider)
	for i, f := range probes {
		want := st.Verdict(f)
		if want == before[i] {
			continue
		}
		if real && (want != policy.Allow || testbed.CanSend(f) != nil) {
			// A real probe proves a deny only by timing out; converge on newly allowed flows.
			continue
		}
		deadline := start.Add(limit)
		for {
			v, err := p.Verdict(f)
			if err == nil && v == want {
				return time.Since(start), true
			}
			if time.Now().After(deadline) {
				return 0, false
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	return 0, false
}

// packetDecider decides a flow by sending it through the testbed: delivered is allow. A deny
// shows only as a timeout, so converge uses it for flows that became allowed.
type packetDecider struct {
	ctx context.Context
	bed *testbed.Testbed
}

func (p *packetDecider) Verdict(f policy.Flow) (policy.Verdict, error) {
	ok, err := p.bed.Probe(p.ctx, []policy.Flow{f}, testbed.ProbeOptions{Timeout: 50 * time.Millisecond, Concurrency: 1})
	if err != nil {
		return policy.Deny, err
	}
	if ok[0] {
		return policy.Allow, nil
	}
	return policy.Deny, nil
}

// flowClasses samples pod-to-pod flows the state allows and denies.
func flowClasses(st *policy.State, rng *rand.Rand, n int) (allow, deny []policy.Flow) {
	cl := st.Cluster()
	keys := cl.PodKeys()
	if len(keys) < 2 {
		return nil, nil
	}
	for tries := 0; tries < 200*n && (len(allow) < n || len(deny) < n); tries++ {
		src := cl.Pods[keys[rng.IntN(len(keys))]]
		dst := cl.Pods[keys[rng.IntN(len(keys))]]
		if src.IP == dst.IP {
			continue
		}
		port := uint16(80)
		if len(dst.Ports) > 0 {
			cp := dst.Ports[rng.IntN(len(dst.Ports))]
			if cp.Protocol != policy.ProtoTCP {
				continue
			}
			port = cp.Port
		}
		f := policy.Flow{Src: src.IP, Dst: dst.IP, Proto: policy.ProtoTCP, Port: port}
		if st.Verdict(f) == policy.Allow {
			if len(allow) < n {
				allow = append(allow, f)
			}
		} else if len(deny) < n {
			deny = append(deny, f)
		}
	}
	return allow, deny
}

// testRuns records BPF_PROG_TEST_RUN batch means of the backend's programs per verdict.
func (r *Runner) testRuns(ctx context.Context, name string, pods int, st *policy.State, sc *Scenario, tr catalogue.TestRunner) {
	const repeat = 200
	rng := rand.New(rand.NewPCG(r.Spec.Seed, 0x7465))
	allow, deny := flowClasses(st, rng, 32)
	pctx, cancel := r.phaseCtx(ctx)
	defer cancel()
	batches := max(20, r.Spec.Samples*10)
	floorName := ""
	k := HistKey{Kind: results.KindTestRunBatchMeans, Backend: results.BackendFloorName, Pods: pods, Extra: "prog=empty"}
	for i := 0; i < 5; i++ {
		if _, err := tr.TestRunFloor(repeat); err != nil {
			break
		}
	}
	var means []float64
	for i := 0; i < batches && pctx.Err() == nil; i++ {
		d, err := tr.TestRunFloor(repeat)
		if err != nil {
			r.logf("bench: test-run floor: %v", err)
			break
		}
		if err := r.hists.Record(k, int64(d)); err != nil {
			r.logf("bench: %v", err)
		}
		means = append(means, float64(d))
	}
	if len(means) > 0 {
		floorName = fmt.Sprintf("BenchmarkTestRun/backend=%s/pods=%d/path=floor", name, pods)
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: floorName, Iters: repeat,
			Metrics: []results.Metric{{Unit: "bpf_ns/op", Samples: means}}})
	}
	for _, c := range []struct {
		verdict string
		flows   []policy.Flow
	}{{results.VerdictAllow, allow}, {results.VerdictDeny, deny}} {
		if len(c.flows) == 0 {
			continue
		}
		k := HistKey{Kind: results.KindTestRunBatchMeans, Backend: name, Pods: pods, Verdict: c.verdict, Flow: results.FlowNew}
		// Warm-up batches, not recorded: the first runs after a sync meet cold maps.
		for i := 0; i < 5; i++ {
			if _, err := tr.TestRun(c.flows[i%len(c.flows)], repeat); err != nil {
				break
			}
		}
		var means []float64
		for i := 0; i < batches && pctx.Err() == nil; i++ {
			d, err := tr.TestRun(c.flows[i%len(c.flows)], repeat)
			if err != nil {
				r.capf(name, pods, false, "", "BPF_PROG_TEST_RUN: %v", err)
				return
			}
			if err := r.hists.Record(k, int64(d)); err != nil {
				r.logf("bench: %v", err)
			}
			means = append(means, float64(d))
		}
		bn := fmt.Sprintf("BenchmarkTestRun/backend=%s/pods=%d/path=new-%s", name, pods, c.verdict)
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: bn, Iters: repeat,
			Metrics: []results.Metric{{Unit: "bpf_ns/op", Samples: means}}})
		if floorName != "" && len(means) > 0 {
			r.run.Ratios = append(r.run.Ratios, results.Ratio{
				Name: fmt.Sprintf("RatioAboveFloor/backend=%s/pods=%d/path=new-%s", name, pods, c.verdict),
				Num:  results.MetricRef{Benchmark: bn, Unit: "bpf_ns/op"}, Den: results.MetricRef{Benchmark: floorName, Unit: "bpf_ns/op"}})
		}
		if c.verdict == results.VerdictDeny {
			r.pkt[name+"/testrun"] = append(r.pkt[name+"/testrun"], sizePoint{pods: pods, syncNS: median(means)})
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
