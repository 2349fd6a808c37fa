package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"netpolbench/bench/stamp"
	"netpolbench/catalogue"
	"netpolbench/internal/needs"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// Where the stamps sit: a family's catalogue.Family.Stamp.
const (
	attachTCX       = catalogue.StampTCX
	attachNetfilter = catalogue.StampNetfilter
)

// openBed builds the run's testbed on first use; a failure is remembered, so every backend
// that needs it is capped with the same reason instead of retrying.
func (r *Runner) openBed() (*testbed.Testbed, error) {
	if r.bed != nil || r.bedErr != nil {
		return r.bed, r.bedErr
	}
	if needs.Root.Check() != nil {
		r.bedErr = testbed.ErrNeedRoot
		return nil, r.bedErr
	}
	r.Progress.Note("building the namespace testbed")
	r.bed, r.bedErr = testbed.New(testbed.Options{})
	return r.bed, r.bedErr
}

func (r *Runner) closeBed() {
	if r.bed != nil {
		if err := r.bed.Close(); err != nil {
			r.logf("bench: close testbed: %v", err)
		}
		r.bed = nil
	}
}

// trafficFlows samples TCP flows the testbed can send: n allowed and n denied.
func trafficFlows(st *policy.State, seed uint64, nAllow, nDeny int) (allow, deny []policy.Flow) {
	rng := rand.New(rand.NewPCG(seed, 0x737461))
	a, d := flowClasses(st, rng, max(nAllow, nDeny))
	a, d = a[:min(len(a), nAllow)], d[:min(len(d), nDeny)]
	for _, f := range a {
		if testbed.CanSend(f) == nil {
			allow = append(allow, f)
		}
	}
	for _, f := range d {
		if testbed.CanSend(f) == nil {
			deny = append(deny, f)
		}
	}
	return allow, deny
}

// floors measures the stamps' own cost at both attach points with nothing enforcing: TCX
// stamps around the empty step program, netfilter stamps around an empty filter table.
func (r *Runner) floors(ctx context.Context, pods int, st *policy.State) {
	bed, err := r.openBed()
	if err != nil {
		return
	}
	for _, a := range []string{attachTCX, attachNetfilter} {
		r.Progress.Note(fmt.Sprintf("pods=%d floor (%s stamps, empty step)", pods, a))
		if err := r.stamped(ctx, bed, results.BackendFloorName, a, pods, st, true); err != nil {
			r.capf(results.BackendFloorName, pods, true, "", "%s floor: %v", a, err)
		}
	}
}

// stamped sends the allowed and denied flows of st through the testbed with the stamps
// attached at attach, and records every sampled packet. With floor set, the stamps surround
// the empty step instead of a backend.
func (r *Runner) stamped(ctx context.Context, bed *testbed.Testbed, backend, attach string, pods int, st *policy.State, floor bool) error {
	// An allowed flow is a handshake and a close (about six stamped packets), a denied one a
	// single SYN that costs the probe's whole timeout; size both so the phase takes seconds.
	allow, deny := trafficFlows(st, r.Spec.Seed, max(1, r.Spec.Packets/6), max(1, r.Spec.Packets/4))
	if len(allow)+len(deny) == 0 {
		return errors.New("no flows the testbed can send")
	}
	s, err := stamp.Load(stamp.Options{PodRange: testbed.PodRange})
	if err != nil {
		return err
	}
	defer s.Close()
	err = bed.InNode(func() error {
		if attach == attachNetfilter {
			return s.AttachNetfilter()
		}
		for _, v := range bed.PodVeths() {
			if err := s.AttachTCX(v.Index); err != nil {
				return err
			}
			if floor {
				if err := s.AttachStep(v.Index); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := bed.FlushConntrack(); err != nil {
		return err
	}
	flows := append(append([]policy.Flow(nil), allow...), deny...)
	pctx, cancel := context.WithTimeout(ctx, time.Duration(r.Spec.Duration)+30*time.Second)
	defer cancel()
	t0 := time.Now()
	delivered, err := bed.Probe(pctx, flows, testbed.ProbeOptions{Timeout: 150 * time.Millisecond, Concurrency: 64})
	r.logf("bench: %s at %d pods (%s): %d flows probed in %s", backend, pods, attach, len(flows), time.Since(t0).Truncate(time.Millisecond))
	if err != nil {
		return fmt.Errorf("send stamped traffic: %w", err)
	}
	if !floor {
		wrong := 0
		for i, f := range flows {
			if delivered[i] != (st.Verdict(f) == policy.Allow) {
				wrong++
			}
		}
		if wrong > 0 {
			r.logf("bench: %s at %d pods: %d of %d stamped flows were delivered against the compiled verdict", backend, pods, wrong, len(flows))
			r.run.Notes = append(r.run.Notes, fmt.Sprintf("%s at %d pods: %d of %d stamped flows disagreed with the compiled verdict", backend, pods, wrong, len(flows)))
		}
	}
	var n int
	raw := map[HistKey][]float64{}
	var order []HistKey
	for {
		smps, err := s.Drain(300 * time.Millisecond)
		if err != nil {
			return err
		}
		if len(smps) == 0 {
			break
		}
		for _, smp := range smps {
			k := HistKey{Kind: results.KindStampDelta, Backend: backend, Pods: pods, Attach: attach, Verdict: results.VerdictAllow, Flow: results.FlowEstablished}
			if smp.Dropped {
				k.Verdict = results.VerdictDeny
			}
			if smp.New() {
				k.Flow = results.FlowNew
			}
			if err := r.hists.Record(k, int64(smp.Delta)); err != nil {
				return err
			}
			if _, ok := raw[k]; !ok {
				order = append(order, k)
			}
			raw[k] = append(raw[k], float64(smp.Delta))
			n++
		}
	}
	for _, k := range order {
		r.packetBenchmark(k, raw[k])
	}
	c, err := s.Counters()
	if err != nil {
		return err
	}
	if c.Lost > 0 || c.Unpaired > 0 {
		r.logf("bench: %s at %d pods (%s): %d stamp samples lost, %d unpaired", backend, pods, attach, c.Lost, c.Unpaired)
	}
	if n == 0 {
		return errors.New("no stamped packet was sampled")
	}
	return nil
}

// takeOut closes an enforcement, which checks that nothing of the backend is left in the
// testbed; a leftover is logged, and the next backend's Enforce refuses to start over it.
func (r *Runner) takeOut(name string, e *testbed.Enforcement) {
	if err := e.Close(); err != nil {
		r.logf("bench: %s: take enforcement out of the testbed: %v", name, err)
	}
}

// recordPacketCost keeps the p50 of denied new flows above the floor for the growth fit: the
// path that walks a backend's whole rule set for the destination.
func (r *Runner) recordPacketCost(name, attach string, pods int) {
	k := HistKey{Kind: results.KindStampDelta, Backend: name, Pods: pods, Attach: attach, Verdict: results.VerdictDeny, Flow: results.FlowNew}
	h := r.hists.Get(k)
	if h == nil || h.TotalCount() == 0 {
		return
	}
	fk, ok := r.hists.floorFor(k)
	if !ok {
		return
	}
	cost := float64(h.ValueAtQuantile(50) - r.hists.Get(fk).ValueAtQuantile(50))
	r.pkt[name] = append(r.pkt[name], sizePoint{pods: pods, syncNS: max(cost, 1)})
}

// packetBenchmark turns one stamped class into a benchmark the gate can compare: the medians
// of Samples consecutive chunks of the deltas (in arrival order) as repeated samples, and,
// for a backend, a same-run ratio to the floor of its attach point.
func (r *Runner) packetBenchmark(k HistKey, deltas []float64) {
	// At least eight chunks: a U test (benchstat's) cannot reach α = 0.05 with fewer than
	// about five samples a side.
	chunks := max(r.Spec.Samples, 8)
	if len(deltas) < 2*chunks {
		return
	}
	per := len(deltas) / chunks
	var meds []float64
	for i := 0; i < chunks; i++ {
		meds = append(meds, median(deltas[i*per:(i+1)*per]))
	}
	name := func(k HistKey) string {
		return fmt.Sprintf("BenchmarkPacket/backend=%s/pods=%d/attach=%s/verdict=%s/flow=%s", k.Backend, k.Pods, k.Attach, k.Verdict, k.Flow)
	}
	r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: name(k), Iters: per,
		Metrics: []results.Metric{{Unit: "stamp_ns/op", Samples: meds}}})
	// No gated ratio for real-packet stamps: on a shared 2-core VM two runs of the same binary
	// moved their ratio to the floor by up to 87%, so only the BPF_PROG_TEST_RUN ratios and the
	// exact figures are gated; these stay in the results, the report and benchstat's input.
}
