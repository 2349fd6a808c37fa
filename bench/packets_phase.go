package bench

import (
	"context"
	"errors"
	"fmt"

	"netpolbench/bench/stamp"
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
