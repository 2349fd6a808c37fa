package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"netpolbench/bench/stamp"
	"netpolbench/catalogue"
	"netpolbench/policy"
	"netpolbench/testbed"
)

// Flows of a scale's frozen flow list: allowed and denied each.
const packetFlowsPerVerdict = 512

// sparseRate is the new-flow rate of the sparse pass, packets per second: a millisecond
// between packets, long enough for other work to push the maps' lines out of the caches.
const sparseRate = 1000

// freezeFlows draws a scale's flow list from the cluster of st before any backend runs.
func freezeFlows(st *policy.State, seed uint64) (*stamp.FlowList, error) {
	fl, err := stamp.NewFlowList(packetFlows(st.Cluster(), seed, packetFlowsPerVerdict, packetFlowsPerVerdict))
	if err != nil {
		return nil, err
	}
	if fl.Len() == 0 {
		return nil, errors.New("freeze flows: the cluster has no flow the testbed can send")
	}
	return fl, nil
}

// errVerdict marks a per-packet measurement whose packets disagreed with the reference: the
// run fails with it.
var errVerdict = stamp.ErrVerdictMismatch

// packetPhase runs the per-packet method for one backend at one scale, in bed (which no other
// backend has touched) through sw, and records it; rate 0 is the dense pass, sparseRate the
// sparse one (recorded with rate=sparse). A disagreement with the reference is returned
// (wrapping stamp.ErrVerdictMismatch) for the runner to fail the run; other failures too, for
// a cap.
func (r *Runner) packetPhase(ctx context.Context, name string, pods int, stateDigest string, fl *stamp.FlowList, bed *testbed.Testbed, sw PacketSwitch, lk packetLookups, rate float64) error {
	samples := r.Spec.Packets
	if rate > 0 {
		// At a millisecond a packet, a fifth of the dense pass's samples keeps the pass to
		// seconds.
		samples = max(samples/5, 100)
	}
	res, err := MeasurePackets(ctx, bed, sw, packetPlan(fl, samples, rate))
	if err != nil {
		if res != nil && errors.Is(err, errVerdict) {
			return fmt.Errorf("%s at %d pods: %w", name, pods, err)
		}
		return err
	}
	variant := ""
	if rate > 0 {
		variant = "rate=sparse"
	}
	deny, err := r.recordPackets(name, pods, variant, stateDigest, res, lk)
	if err != nil {
		return err
	}
	if rate == 0 {
		r.pkt[name] = append(r.pkt[name], sizePoint{pods: pods, syncNS: max(deny, 1)})
	}
	r.logf("bench: %s at %d pods %s: %d samples checked in %s", name, pods, variant, res.Check.Samples, res.Elapsed.Round(1e6))
	return nil
}

// packets measures a backend's per-packet cost at one scale in the backend's own testbed:
// through inNode when its sync put it in force there (iptables), else through an install of
// its own with room for the stamps, taken out afterwards. The dense pass always runs, the
// sparse one at Spec.SparsePods. Only a disagreement with the reference is returned; any
// other failure is a cap.
func (r *Runner) packets(ctx context.Context, b *catalogue.Backend, pods int, st *policy.State, flows *stamp.FlowList, inNode *testbed.Enforcement) error {
	name := b.Name
	bed, err := r.openBed()
	if err != nil {
		r.capf(name, pods, true, "", "per-packet cost: %v", err)
		return nil
	}
	e := inNode
	if e == nil {
		if e, _, err = b.Enforce(bed, catalogue.Env{State: st, Stamped: true, MapHeadroom: r.Spec.MapHeadroom}); err != nil {
			r.capf(name, pods, true, "", "per-packet cost: enforce in the testbed: %v", err)
			return nil
		}
		defer r.takeOut(name, e)
	}
	sw, err := switchOf(b, e)
	if err != nil {
		r.capf(name, pods, true, "", "per-packet cost: %v", err)
		return nil
	}
	// Whatever happens, the backend is left in the path for the phases after this one.
	defer func() {
		if err := sw.In(nil, nil); err != nil {
			r.logf("bench: %s: put back in the packet path: %v", name, err)
		}
	}()
	lk, _ := e.Backend().(packetLookups)
	digest := st.Digest()
	rates := []float64{0}
	if slices.Contains(r.Spec.SparsePods, pods) {
		rates = append(rates, sparseRate)
	}
	for _, rate := range rates {
		what := "dense"
		if rate > 0 {
			what = "sparse"
			// The programs' counters hold the dense pass's packets: keep them to it.
			lk = nil
		}
		r.Progress.Note(fmt.Sprintf("pods=%d backend=%s per-packet cost (%s, %s stamps)", pods, name, what, sw.Attach()))
		if err := r.packetPhase(ctx, name, pods, digest, flows, bed, sw, lk, rate); err != nil {
			if errors.Is(err, errVerdict) {
				return err
			}
			r.capf(name, pods, false, "", "per-packet cost (%s): %v", what, err)
		}
	}
	return nil
}
