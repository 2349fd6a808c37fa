package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"netpolbench/bench/stamp"
	"netpolbench/catalogue"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// Runner runs a sweep and returns its results.
//
// The sweep is a sequence of phases: per scale the workload (generate and compile), then per
// backend its full syncs and size, BPF_PROG_TEST_RUN, real-packet stamps (in a testbed of the
// backend's own), round trips, churn and churn under load. Every per-packet phase of every backend runs on the scale's
// frozen state (the compiled cluster before any churn), and churn replays one event list per
// scale on every backend. After each phase the run is checkpointed: with Dir set, results.json,
// bench.txt and the .hgrm files there hold every finished phase. When the context ends, the
// phase under way is abandoned (its figures are dropped), the run records where it stopped, and
// Run returns ErrInterrupted; Resume continues such a run.
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
	// Dir is the run directory. When set, the run is written there after every phase, so an
	// interrupted or killed run keeps what it measured (see RunDir).
	Dir string
	// Describe, when set, fills what the run records about its host and invocation; it is
	// called once, before the first phase of a new run (a resumed run keeps what it had).
	Describe func(*results.Run)

	bed    *testbed.Testbed
	bedErr error

	run      *results.Run
	hists    *Histograms
	restored []results.Histogram    // latency summarized for good: finished scales, and phases a resumed run had finished
	sizes    map[string][]sizePoint // backend → sizes over the sweep
	pkt      map[string][]sizePoint // "backend/testrun" → test-run new-deny batch mean over the sweep (ns)
	podAdd   map[string]*podAddCheck
	// out are the backend units ("pods=100/backend=ipset") capped before or at their sync:
	// nothing more is measured for them.
	out map[string]bool

	ctx      context.Context
	current  string        // the phase under way
	last     []byte        // the run as of its last finished phase (results.json)
	prior    time.Duration // wall time of the run's earlier segments (before a resume)
	segStart time.Time
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

// interrupting reports whether the run is being stopped: errors then come from the teardown
// under way, not from a backend, and are neither caps nor worth a line.
func (r *Runner) interrupting() bool { return r.ctx != nil && r.ctx.Err() != nil }

func (r *Runner) capf(backend string, pods int, skipped bool, limit, format string, a ...any) {
	r.addCap(results.Cap{Backend: backend, Pods: pods, Skipped: skipped, Reason: fmt.Sprintf(format, a...), Limit: limit})
}

func (r *Runner) addCap(c results.Cap) {
	if r.interrupting() {
		return
	}
	r.run.Caps = append(r.run.Caps, c)
	what := "capped"
	if c.Skipped {
		what = "skipped"
	}
	if c.Phase != "" {
		what += " in " + c.Phase
	}
	r.logf("bench: %s at %d pods %s: %s", c.Backend, c.Pods, what, c.Reason)
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

// label names a scale in benchmark style: "pods=1000", "pods=1000/labelsets=10". A fixed
// source's scale is named after the pods it has, known only once it is built.
func (sp scalePlan) label(pods int) string {
	l := fmt.Sprintf("pods=%d", pods)
	if sp.labelSets > 0 {
		l += fmt.Sprintf("/labelsets=%d", sp.labelSets)
	}
	return l
}

// errStopped unwinds the sweep when the context ended; Run turns it into ErrInterrupted.
var errStopped = errors.New("stopped")

// Run runs the sweep, or continues the one Resume loaded. It returns an error only for a failure
// of the run itself (bad spec, a workload that cannot be built, results that cannot be written,
// a stamped packet that disagrees with the reference: then with the run as it stood after its
// last finished phase, its stop recorded) and, wrapping ErrInterrupted, when ctx ends first; a
// backend that fails or is missing becomes a cap.
func (r *Runner) Run(ctx context.Context) (*results.Run, error) {
	if err := r.Spec.Validate(); err != nil {
		return nil, err
	}
	r.ctx, r.segStart, r.current = ctx, time.Now(), ""
	if r.run == nil {
		if err := r.start(); err != nil {
			return nil, err
		}
	}
	defer r.closeBed()
	if r.Dir != "" {
		if err := os.MkdirAll(r.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("create run directory: %w", err)
		}
	}
	if err := r.checkpoint("", 0); err != nil {
		return nil, err
	}
	plans := r.plan()
	steps := len(plans) * len(r.Spec.Backends)
	if a := r.Spec.APIServer; a != nil {
		steps += len(a.Pods) * len(a.Backends)
	}
	r.Progress.Total(steps)
	for i := 0; i <= len(plans); i++ {
		err := ctx.Err()
		switch {
		case err != nil:
		case i < len(plans):
			err = r.runScale(ctx, plans[i])
		default:
			// Last, the end-to-end phase, with the other phases' testbeds gone.
			r.closeBed()
			err = r.apiServerSweep(ctx)
		}
		if err != nil {
			r.closeBed()
			if ctx.Err() != nil {
				return r.interrupted(ctx)
			}
			// A failure of the run: the file says where, with what it measured before.
			run, werr := r.stop(err.Error())
			return run, errors.Join(err, werr)
		}
	}
	r.finish()
	r.run.Complete = true
	r.run.Progress.Stopped = nil
	if err := r.checkpoint("", 0); err != nil {
		return nil, err
	}
	r.Progress.Done()
	return r.run, nil
}

// start creates the run: its configuration, notes and progress record.
func (r *Runner) start() error {
	r.run = results.New()
	r.run.Seed = int64(r.Spec.Seed)
	r.run.Config = results.Config{Backends: r.Spec.Backends, Pods: r.Spec.Pods, Duration: time.Duration(r.Spec.Duration), Samples: r.Spec.Samples,
		Extra: map[string]string{"packets": fmt.Sprint(r.Spec.Packets), "churn_events": fmt.Sprint(r.Spec.ChurnEvents),
			"iptables_max_pods": fmt.Sprint(r.Spec.Budget.IptablesMaxPods), "max_phase": time.Duration(r.Spec.Budget.MaxPhase).String()}}
	if len(r.Spec.LabelSets) > 0 {
		r.run.Config.Extra["label_sets"] = strings.Trim(fmt.Sprint(r.Spec.LabelSets), "[]")
	}
	key, err := r.resumeKey()
	if err != nil {
		return err
	}
	r.run.Progress = &results.Progress{Binary: ThisBinary(), Resume: key}
	r.hists = NewHistograms()
	r.sizes = map[string][]sizePoint{}
	r.pkt = map[string][]sizePoint{}
	r.podAdd = map[string]*podAddCheck{}
	r.out = map[string]bool{}
	if r.Kernel {
		r.run.Notes = append(r.run.Notes,
			fmt.Sprintf("Per-packet cost (bench/stamp's package doc has the method): each backend at each scale is measured in a testbed of its own, on the compiled state before churn and a frozen flow list (state_digest and flow_digest on every latency entry), in %d floor rounds alternating with %d backend rounds (%d each for a variant), every backend's at one rate, %g packets/s (each figure's rounds record the rate achieved); new flows are raw packets with a 5-tuple each, never repeated within a testbed (variants: rate=sparse, a millisecond apart; for eBPF, rate=dense, 50,000 a second, flows=N, a working set of N flows, headroom=H, maps sized at H times the state's entries), established packets are data segments on real connections. Every stamped packet is checked against the reference; a disagreement fails the run, as does a new-flow packet the eBPF datapath's own counters saw take an established or reply verdict.", packetRounds, packetRounds, variantRounds, r.Spec.PacketRate),
			"eBPF stamps: TCX programs at the head and the tail of the TCX chains of every pod veth, around the datapath (TCX_NEXT on allow); a pod-to-pod sample adds the source veth's ingress part and the destination veth's egress part, the datapath's own conntrack included.",
			"iptables stamps: span nf-path from PREROUTING at priority -500 (before defragmentation and conntrack) to the outgoing veth's TCX egress (after conntrack's confirmation), the headline, compared with eBPF; span nf-filter from FORWARD -2 to +2, the filter table alone.",
			"Floors match the path: per span, per path (allowed through both enforcement points or one, dropped at the source's or the destination's point, closed on kfree_skb as real drops), the same stamps around step programs that pass or drop the packets the reference denies there. A floor round unhooks iptables' rules (the jump and the conntrack rule) or deletes nftables' base chain, so nf_conntrack does not run; iptables' floor keeps the filter table's empty built-in chains, nftables' has no chain at all.",
			"Above the floor: every sample minus one constant, its path's floor median from the same measurement's floor rounds; percentiles are of those differences (clamped at 1 ns and counted); a tail percentile is given only with ten values beyond it. Each figure's p50 carries a 95% interval from resampling rounds (a backend round with its floor round). Per-packet growth (the ebpf-flat claim) is fitted per path of new flows (allowed, denied at the source, denied at the destination), each exponent with its interval from the same resampling.")
	}
	r.run.Notes = append(r.run.Notes,
		"Every backend's per-packet figures at a scale (BPF_PROG_TEST_RUN and real packets) and its sizes are measured on the same compiled state, before churn; churn then replays one event list per scale on every backend, and a backend that does not finish it measures nothing after it.")
	if r.Describe != nil {
		r.Describe(r.run)
	}
	return nil
}

// finish turns what the sweep collected into fits, claims and latency summaries.
func (r *Runner) finish() {
	// After the sweep: the source describes which presets the scales used.
	r.run.Workload = r.Source.Describe()
	r.run.Fits, r.run.Claims = nil, nil
	r.fits()
	r.claims()
	r.declareBackendRatios()
}

// phase runs fn as the phase id, unless the run finished it before it was resumed, and then
// checkpoints the run. When ctx ends first it returns errStopped, and when fn fails the run
// (an error, not a cap) that error; either way the phase is not recorded: Run rolls its
// figures back.
func (r *Runner) phase(ctx context.Context, id string, fn func() error) error {
	if r.run.PhaseDone(id) {
		return nil
	}
	if ctx.Err() != nil {
		return errStopped
	}
	r.current = id
	r.Progress.Note("phase " + id)
	t := time.Now()
	if err := fn(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errStopped
	}
	r.current = ""
	return r.checkpoint(id, time.Since(t))
}

// scale is one point of the sweep while the runner measures there.
type scale struct {
	label string
	// sweep is set for a point of the pods sweep; label-set points measure sizes only.
	sweep        bool
	pods, idents int
	// base is the cluster as built: every backend compiles its own copy.
	base *policy.Cluster
	// frozen is the compiled state every per-packet phase and size is measured on. Nothing
	// churns it. flows is the frozen flow list of the per-packet phases (nil when the cluster
	// has none the testbed can send).
	frozen *policy.State
	flows  *stamp.FlowList
	// wide is the wide flow list of the cache experiments (wideFlows), drawn on first use.
	wide *stamp.FlowList
	// digest is frozen's digest (stateDigest); testRun the flows of BPF_PROG_TEST_RUN.
	digest  string
	testRun *testRunFlows
	// churn and underLoad are the event lists every backend replays, built on first use.
	churn, underLoad *churnList
	// stream is the allowed UDP flow of churn under load (ok false when there is none).
	stream   policy.Flow
	streamOK bool
}

// unitPhases are the phases of one backend at one scale of the pods sweep, in order; the
// label-set sweep runs the first only. A phase a backend cannot run (test runs without
// programs) finishes at once and is not recorded.
const (
	phaseSync      = "sync"
	phaseTestRun   = "testrun"
	phasePackets   = "packets"
	phaseRoundTrip = "roundtrips"
	phaseChurn     = results.PhaseChurn
	phaseUnderLoad = "churn-under-load"
)

// lastPhase is the last phase a backend runs at a scale: once it is recorded, so are all the
// others (phases are recorded in order).
func (r *Runner) lastPhase(b *catalogue.Backend, sweep bool) string {
	switch {
	case !sweep:
		return phaseSync
	case r.Kernel && b.CanEnforce():
		return phaseUnderLoad
	}
	return phaseChurn
}

// unitDone reports whether backend name has nothing left to measure at the scale labelled
// label.
func (r *Runner) unitDone(label, name string, sweep bool) bool {
	unit := label + "/backend=" + name
	if r.out[unit] {
		return true
	}
	b, err := catalogue.Get(name)
	if err != nil {
		return r.run.PhaseDone(unit + "/" + phaseSync)
	}
	return r.run.PhaseDone(unit + "/" + r.lastPhase(b, sweep))
}

func (r *Runner) runScale(ctx context.Context, sp scalePlan) error {
	sweep := sp.labelSets == 0
	if !r.Source.Fixed() {
		// A resumed run skips a scale it finished without building its workload.
		label := sp.label(sp.pods)
		done := r.run.PhaseDone(label + "/workload")
		for _, name := range r.Spec.Backends {
			done = done && r.unitDone(label, name, sweep)
		}
		if done {
			r.Progress.Note("done before: " + label)
			return nil
		}
	}
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
	s := &scale{sweep: sweep, pods: st.NumEndpoints(), idents: len(st.Identities()), base: base, frozen: st}
	s.label = sp.label(s.pods)
	err = r.phase(ctx, s.label+"/workload", func() error {
		r.run.Benchmarks = append(r.run.Benchmarks,
			results.Benchmark{Name: "BenchmarkGenerate/" + s.label, Iters: 1, Metrics: []results.Metric{{Unit: "ns/op", Samples: []float64{float64(genNS)}}}},
			results.Benchmark{Name: "BenchmarkCompile/" + s.label, Iters: 1, Metrics: []results.Metric{
				{Unit: "ns/op", Samples: []float64{float64(compileNS)}},
				{Unit: "identities", Exact: true, Samples: []float64{float64(s.idents)}},
				{Unit: "rule-entries", Exact: true, Samples: []float64{float64(st.NumEntries())}},
			}})
		return nil
	})
	if err != nil {
		return err
	}
	// One flow list per scale, frozen before any backend runs: every backend's stamped packets
	// and test runs belong to it. It depends on the cluster and the seed alone, so a resumed run
	// draws the same one.
	if sweep {
		var short string
		if s.flows, short, err = freezeFlows(st, r.Spec.Seed, packetFlowsPerVerdict); err != nil {
			r.logf("bench: %s: no per-packet measurement: %v", s.label, err)
		} else if short != "" {
			// The run says so (once, a resumed run draws the same list): pooled figures of this
			// scale then weigh the paths otherwise.
			note := fmt.Sprintf("%s: the frozen flow list lacks flows of some classes, so its mix of paths differs from other scales': %s.", s.label, short)
			if !slices.Contains(r.run.Notes, note) {
				r.run.Notes = append(r.run.Notes, note)
			}
			r.logf("bench: %s", note)
		}
	}
	for _, name := range r.Spec.Backends {
		if ctx.Err() != nil {
			return errStopped
		}
		r.Progress.Step(fmt.Sprintf("%s backend=%s", s.label, name))
		if r.unitDone(s.label, name, sweep) {
			continue
		}
		if err := r.runBackend(ctx, s, name); err != nil {
			return err
		}
	}
	return r.freeze()
}

// freeze sets the latency of a finished scale aside as summarized, so later checkpoints do not
// summarize and encode it again (every phase would otherwise pay for every histogram of the
// run so far). Without a run directory the histograms stay live, for Write to write their
// .hgrm files.
func (r *Runner) freeze() error {
	if r.Dir == "" {
		return nil
	}
	lat, err := r.latency(r.Dir)
	if err != nil {
		return err
	}
	r.restored, r.hists = lat, NewHistograms()
	return nil
}

// phaseCtx bounds one backend phase by the budget.
func (r *Runner) phaseCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(r.Spec.Budget.MaxPhase))
}

// unit is one backend at one scale while the runner measures it.
type unit struct {
	r    *Runner
	s    *scale
	b    *catalogue.Backend
	name string
	id   string // "pods=1000/backend=ebpf"
	// comp is the backend's own compiler: at the frozen state until churn.
	comp *policy.Compiler
	// be is the backend the sync and churn phases drive; inNode is its enforcement when its
	// family keeps its state in the testbed's node namespace.
	be     policy.Backend
	inNode *testbed.Enforcement
	// enf is a backend of another family put in force in the testbed for real packets, synced
	// to enfState.
	enf      *testbed.Enforcement
	enfState *policy.State
	// abandoned is set when a call into the backend outlived the run's stop: nothing touches
	// the backend again; its state goes with the testbed's namespaces and the process.
	abandoned atomic.Bool
	// churned is set once comp and be hold the state after the whole churn list.
	churned bool
}

func (u *unit) phaseID(name string) string { return u.id + "/" + name }

// runBackend measures one backend at one scale. Its real-packet phases run in a testbed of its
// own, built on first use and removed at the end. It returns an error for a failure of the run:
// results that cannot be written, or a stamped packet that disagreed with the reference.
func (r *Runner) runBackend(ctx context.Context, s *scale, name string) error {
	u := &unit{r: r, s: s, name: name, id: s.label + "/backend=" + name}
	r.closeBed()
	defer r.closeBed()
	defer u.close()
	b, err := catalogue.Get(name)
	if err != nil {
		return r.phase(ctx, u.phaseID(phaseSync), func() error {
			r.out[u.id] = true
			r.capf(name, s.pods, true, "", "%v", err)
			return nil
		})
	}
	u.b = b
	// Every backend compiles its own copy of the scale's cluster, so each starts from the
	// frozen state and churn on one never reaches another.
	if u.comp, err = policy.Compile(s.base.Clone(), policy.Options{}); err != nil {
		return fmt.Errorf("compile workload of %d pods: %w", s.pods, err)
	}
	if r.run.PhaseDone(u.phaseID(phaseSync)) {
		// A resumed run: open and sync again, untimed, to measure what is left.
		if err := u.open(); err != nil {
			return r.phase(ctx, u.nextPhase(), func() error { u.capSkipped("resume: open %s: %v", name, err); return nil })
		}
		var serr error
		if !u.call(ctx, func() { _, serr = u.be.Sync(u.comp.State()) }) {
			return errStopped
		}
		if serr != nil {
			return r.phase(ctx, u.nextPhase(), func() error { u.capSkipped("resume: sync %s: %v", name, serr); return nil })
		}
	} else if err := r.phase(ctx, u.phaseID(phaseSync), func() error { u.syncPhase(ctx); return nil }); err != nil {
		return err
	}
	if r.out[u.id] || !s.sweep {
		return nil
	}
	steps := []struct {
		name string
		run  func(context.Context) error
		want bool
	}{
		{phaseTestRun, u.testRunPhase, true},
		{phasePackets, u.packetsPhase, r.Kernel && b.CanEnforce()},
		{phaseRoundTrip, u.roundTripPhase, r.Kernel && b.CanEnforce()},
		{phaseChurn, u.churnPhase, true},
		{phaseUnderLoad, u.underLoadPhase, r.Kernel && b.CanEnforce()},
	}
	for _, st := range steps {
		if !st.want {
			continue
		}
		if st.name == phasePackets && s.flows == nil {
			continue
		}
		id := u.phaseID(st.name)
		if r.run.PhaseDone(id) {
			if st.name == phaseChurn {
				u.replayChurn(ctx)
			}
			continue
		}
		if st.name == phaseTestRun {
			if _, ok := u.be.(catalogue.TestRunner); !ok {
				continue
			}
		}
		if err := r.phase(ctx, id, func() error { return st.run(ctx) }); err != nil {
			return err
		}
	}
	r.run.PeakRSSBytes = max(r.run.PeakRSSBytes, peakRSS())
	return nil
}

// nextPhase is the first phase of the unit the run has not recorded.
func (u *unit) nextPhase() string {
	for _, p := range []string{phaseSync, phaseTestRun, phasePackets, phaseRoundTrip, phaseChurn, phaseUnderLoad} {
		if !u.r.run.PhaseDone(u.phaseID(p)) {
			return u.phaseID(p)
		}
	}
	return u.phaseID(phaseUnderLoad)
}

// capSkipped records that nothing more of the unit is measured, and why.
func (u *unit) capSkipped(format string, a ...any) {
	u.r.out[u.id] = true
	u.r.capf(u.name, u.s.pods, true, "", format, a...)
}

// stopGrace is how long a backend call may run on after the run was told to stop before it is
// abandoned: stopping stays within about two seconds of the signal.
const stopGrace = time.Second

// call runs fn, a call into the backend that may block for seconds (a restore of a large
// ruleset), so that the run can stop while it is under way: once ctx ends, fn has stopGrace to
// return, then it is abandoned and the unit is marked so nothing touches the backend again. It
// reports whether fn returned.
func (u *unit) call(ctx context.Context, fn func()) bool {
	if u.abandoned.Load() {
		return false
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	}
	select {
	case <-done:
		return true
	case <-time.After(stopGrace):
		u.abandoned.Store(true)
		return false
	}
}

// close takes out and closes what the unit opened, unless a call into it was abandoned.
func (u *unit) close() {
	if u.abandoned.Load() {
		return
	}
	if u.enf != nil {
		u.r.takeOut(u.name, u.enf)
		u.enf = nil
	}
	if u.inNode != nil {
		u.r.takeOut(u.name, u.inNode)
	} else if u.be != nil {
		u.be.Close()
	}
	u.be, u.inNode = nil, nil
}

// admit decides the caps that apply before the backend is opened: its own pod limit, and for
// per-IP families the run's budget on pods and on the size the backend's own plan says a full
// sync would write. It records the cap and reports false when one applies.
func (u *unit) admit() bool {
	r, b, pods := u.r, u.b, u.s.pods
	var planned *results.Size
	capped := func(limit, format string, a ...any) bool {
		r.out[u.id] = true
		r.addCap(results.Cap{Backend: u.name, Pods: pods, Skipped: true, Limit: limit, Reason: fmt.Sprintf(format, a...), Planned: planned})
		return false
	}
	if max := b.MaxPods; max > 0 && pods > max {
		return capped(fmt.Sprintf("max %d pods", max), "%s", b.CapReason)
	}
	if !b.Family.PlanBudget {
		return true
	}
	if p, ok, err := b.PlannedSize(catalogue.Env{State: u.s.frozen, MapHeadroom: r.Spec.MapHeadroom}); err != nil {
		r.logf("bench: %s at %d pods: %v", u.name, pods, err)
	} else if ok {
		planned = &p
	}
	if max := r.Spec.Budget.IptablesMaxPods; b.Family.PerIP && max > 0 && pods > max {
		plan := "per-IP rules grow as pods²"
		if planned != nil && planned.Iptables != nil && planned.Iptables.IpsetMembers > 0 {
			plan = fmt.Sprintf("its plan writes %d rules and %d set members", planned.Iptables.Rules, planned.Iptables.IpsetMembers)
		}
		return capped(fmt.Sprintf("max %d pods", max),
			"%s: one iptables-restore above %d pods exceeds the run's time budget", plan, max)
	}
	if planned != nil && planned.Nftables != nil {
		nft := planned.Nftables
		if max := r.Spec.Budget.NftablesMaxElements; max > 0 && nft.Elements > uint64(max) {
			return capped(fmt.Sprintf("max %d set elements", max),
				"its plan writes %d set and map elements and %d rules: one nft transaction of more than %d elements exceeds the run's time and memory budget",
				nft.Elements, nft.Rules, max)
		}
		return true
	}
	if planned == nil || planned.Iptables == nil {
		return true
	}
	rules, members := planned.Iptables.Rules, planned.Iptables.IpsetMembers
	plan := fmt.Sprintf("its plan writes %d rules", rules)
	if members > 0 {
		plan += fmt.Sprintf(" and %d set members", members)
	}
	if max := r.Spec.Budget.IptablesMaxRules; max > 0 && rules > uint64(max) {
		return capped(fmt.Sprintf("max %d rules", max), "%s: a restore of more than %d rules exceeds the run's time budget", plan, max)
	}
	if max := r.Spec.Budget.IpsetMaxMembers; max > 0 && members > uint64(max) {
		return capped(fmt.Sprintf("max %d set members", max), "%s: more than %d set members exceed the run's time and memory budget", plan, max)
	}
	return true
}

// open opens the backend, in the testbed's node namespace when its family keeps its state
// there.
func (u *unit) open() error {
	env := catalogue.Env{State: u.comp.State(), MapHeadroom: u.r.Spec.MapHeadroom}
	if u.b.Family.InNode {
		bed, err := u.r.openBed()
		if err != nil {
			return fmt.Errorf("%s needs the testbed's node namespace: %w", u.name, err)
		}
		if u.inNode, err = u.b.OpenInNode(bed, env); err != nil {
			return err
		}
		u.be = u.inNode.Backend()
		return nil
	}
	be, err := u.b.Open(env)
	if err != nil {
		return err
	}
	u.be = be
	return nil
}

// syncPhase opens the backend and times full syncs of the frozen state (the first installs
// it, the rest replace it with the same state, which is what a periodic resync costs), then
// records the backend's size.
func (u *unit) syncPhase(ctx context.Context) {
	r, s, name := u.r, u.s, u.name
	if !u.admit() {
		return
	}
	if err := u.open(); err != nil {
		u.capSkipped("open %s: %v", name, err)
		return
	}
	st := u.comp.State()
	bn := fmt.Sprintf("BenchmarkSync/backend=%s/%s", name, s.label)
	var ns, ops []float64
	var last policy.SyncStats
	pctx, cancel := r.phaseCtx(ctx)
	defer cancel()
	samples := r.Spec.Samples
	if !s.sweep {
		// Label-set points measure sizes; one sync is enough.
		samples = 1
	}
	deadline, _ := pctx.Deadline()
	for i := 0; i < samples; i++ {
		// A sample that would end past the budget, judged by the one before, is not started:
		// it would be cut anyway, after spending the time.
		if pctx.Err() != nil || i > 0 && time.Until(deadline) < time.Duration(ns[i-1]) {
			if ctx.Err() == nil {
				r.capf(name, s.pods, false, fmt.Sprintf("%s per phase", time.Duration(r.Spec.Budget.MaxPhase)), "full sync stopped after %d of %d samples", i, samples)
			}
			break
		}
		var d time.Duration
		var st2 policy.SyncStats
		var err error
		if !u.call(ctx, func() {
			t := time.Now()
			st2, err = u.be.Sync(st)
			d = time.Since(t)
		}) {
			return
		}
		if err != nil {
			u.capSkipped("full sync: %v", err)
			return
		}
		last = st2
		ns = append(ns, float64(d))
		ops = append(ops, float64(st2.Ops))
	}
	if len(ns) == 0 {
		return
	}
	ms := []results.Metric{{Unit: "ns/op", Samples: ns}, {Unit: "kernel-ops", Exact: true, Samples: ops[:1]}}
	if last.Bytes > 0 {
		ms = append(ms, results.Metric{Unit: "sync-bytes", Exact: true, Samples: []float64{float64(last.Bytes)}})
	}
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: bn, Iters: 1, Metrics: ms})
	r.run.Updates = append(r.run.Updates, results.Update{Backend: name, Pods: s.pods, Path: "full-sync", Event: results.EventFullSync, ApplyNS: ns, KernelOps: ops, OpsUnit: u.b.Family.OpsUnit})

	pt := sizePoint{pods: s.pods, identities: s.idents, syncNS: median(ns)}
	size := r.size(u.b, u.be, last, s.pods, s.idents)
	pt.size = size
	if s.sweep {
		r.run.Sizes = append(r.run.Sizes, size)
	} else {
		pt.labelSets = len(st.Identities())
		r.run.Benchmarks = append(r.run.Benchmarks, labelSetSizeBenchmark(size, s.label))
	}
	r.sizes[name] = append(r.sizes[name], pt)
}

// testRunPhase records BPF_PROG_TEST_RUN batch means of the backend's programs, synced to the
// frozen state.
func (u *unit) testRunPhase(ctx context.Context) error {
	if tr, ok := u.be.(catalogue.TestRunner); ok {
		u.r.testRuns(ctx, u.name, u.s, tr)
	}
	return nil
}

// stateDigest is the digest of the scale's frozen state, computed once.
func (s *scale) stateDigest() string {
	if s.digest == "" {
		s.digest = s.frozen.Digest()
	}
	return s.digest
}

// testRunFlows are the flows BPF_PROG_TEST_RUN runs at a scale.
type testRunFlows struct {
	allow, deny []policy.Flow
	// digest is the digest of both together; floor the digest of no flow at all (the empty
	// program's batches run a fixed packet of no flow).
	digest, floor string
}

// testRunFlowsOf takes the test runs' flows from the scale's frozen flow list: those between
// two pods, whose first packet meets both programs, as it does in the testbed. Every backend
// at the scale runs the same ones.
func (s *scale) testRunFlowsOf() (*testRunFlows, error) {
	if s.testRun != nil {
		return s.testRun, nil
	}
	if s.flows == nil {
		return nil, errors.New("no frozen flow list at this scale")
	}
	var kept []stamp.ExpectedFlow
	t := &testRunFlows{}
	for _, f := range s.flows.Flows() {
		_, src := s.frozen.EndpointByIP(f.Src)
		_, dst := s.frozen.EndpointByIP(f.Dst)
		if !src || !dst {
			continue
		}
		kept = append(kept, f)
		if f.Verdict == policy.Allow {
			t.allow = append(t.allow, f.Flow)
		} else {
			t.deny = append(t.deny, f.Flow)
		}
	}
	all, err := stamp.NewFlowList(kept)
	if err != nil {
		return nil, err
	}
	none, err := stamp.NewFlowList(nil)
	if err != nil {
		return nil, err
	}
	t.digest, t.floor = all.Digest(), none.Digest()
	s.testRun = t
	return t, nil
}

// enforcement is the backend in force in the testbed for the real-packet phases, synced to
// st: the unit's own for a family InNode, else one put in force (and taken out by close or by
// the next call).
func (u *unit) enforcement(ctx context.Context, st *policy.State) (*testbed.Enforcement, bool) {
	if u.inNode != nil {
		return u.inNode, true
	}
	if u.enf != nil && u.enfState == st {
		return u.enf, true
	}
	if u.enf != nil {
		u.r.takeOut(u.name, u.enf)
		u.enf = nil
	}
	bed, err := u.r.openBed()
	if err != nil {
		u.r.capf(u.name, u.s.pods, true, "", "real-packet phases: %v", err)
		return nil, false
	}
	var e *testbed.Enforcement
	if !u.call(ctx, func() {
		e, _, err = u.b.Enforce(bed, catalogue.Env{State: st, Stamped: true, MapHeadroom: u.r.Spec.MapHeadroom})
	}) {
		return nil, false
	}
	if err != nil {
		u.r.capf(u.name, u.s.pods, true, "", "enforce in the testbed: %v", err)
		return nil, false
	}
	u.enf, u.enfState = e, st
	return e, true
}

// packetsPhase measures the backend's per-packet cost on the frozen state and flow list, in the
// unit's own testbed (package bench's per-packet method, Runner.packets). A stamped packet that
// disagrees with the reference fails the run.
func (u *unit) packetsPhase(ctx context.Context) error {
	return u.r.packets(ctx, u.b, u.s, u.inNode)
}

// roundTripPhase measures TCP round trips and UDP throughput through the backend in force,
// synced to the frozen state.
func (u *unit) roundTripPhase(ctx context.Context) error {
	if _, ok := u.enforcement(ctx, u.s.frozen); ok {
		u.r.roundTrips(ctx, u.r.bed, u.name, u.s.pods, u.s.frozen, u.s.stateDigest())
	}
	return nil
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
	return candidatesOf(st.Cluster(), st.Cluster().PodKeys(), evs, rng)
}

// candidatesOf is convergenceCandidates on cl whose pod keys, sorted, are keys (a caller
// drawing for every event of a long stream keeps them, instead of sorting them each time).
func candidatesOf(cl *policy.Cluster, keys []string, evs []policy.Event, rng *rand.Rand) []policy.Flow {
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
			// Pods of the policy's namespace, the only ones it can select (keys sort by
			// namespace first).
			lo := sort.SearchStrings(keys, np.Namespace+"/")
			hi := sort.SearchStrings(keys, np.Namespace+"0") // '0' follows '/'
			if n := hi - lo; n > 0 {
				for range min(n, 16) {
					targets = append(targets, cl.Pods[keys[lo+rng.IntN(n)]])
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

// testRuns records BPF_PROG_TEST_RUN batch means of the backend's programs per verdict, over
// the scale's test-run flows, each histogram labelled with the frozen state's digest and that
// flow list's.
func (r *Runner) testRuns(ctx context.Context, name string, s *scale, tr catalogue.TestRunner) {
	const repeat = 200
	pods := s.pods
	flows, err := s.testRunFlowsOf()
	if err != nil {
		r.capf(name, pods, false, "", "BPF_PROG_TEST_RUN: %v", err)
		return
	}
	allow, deny := flows.allow, flows.deny
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
	r.hists.SetDigests(k, s.stateDigest(), flows.floor)
	if len(means) > 0 {
		fn := fmt.Sprintf("BenchmarkTestRun/backend=%s/pods=%d/path=floor", name, pods)
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: fn, Iters: repeat,
			Metrics: []results.Metric{{Unit: "bpf_ns/op", Samples: means}}})
		// The kernel reports a test run's time per repeat in whole ns: over a floor of a few
		// ns, one ns is a fifth of the ratio, and a floor that rounds the other way moves it by
		// more than any minimum effect. A ratio to the floor is declared only where a ns is
		// at most a twentieth of it.
		if median(means) >= minRatioFloorNS {
			floorName = fn
		}
	}
	for _, c := range []struct {
		verdict string
		flows   []policy.Flow
	}{{results.VerdictAllow, allow}, {results.VerdictDeny, deny}} {
		if len(c.flows) == 0 {
			continue
		}
		k := HistKey{Kind: results.KindTestRunBatchMeans, Backend: name, Pods: pods, Verdict: c.verdict, Flow: results.FlowNew}
		r.hists.SetDigests(k, s.stateDigest(), flows.digest)
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

// minRatioFloorNS is the smallest test-run floor, in ns, that a ratio is declared over.
const minRatioFloorNS = 20

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
