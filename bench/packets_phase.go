package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"netpolbench/bench/stamp"
	"netpolbench/catalogue"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// Flows of a scale's frozen flow list: allowed and denied each.
const packetFlowsPerVerdict = 512

// sparseRate is the new-flow rate of the sparse pass, packets per second: a millisecond
// between packets, long enough for other work to push the maps' lines out of the caches.
const sparseRate = 1000

// denseRate is the new-flow rate of the dense pass (eBPF, where the sparse pass runs):
// 20 µs between packets, five times the headline's rate, so the maps' lines stay hot.
const denseRate = 50000

// Cache experiments, eBPF only, at Spec.CachePods: what the cost of a new flow depends on
// besides the number of map operations, each varied alone at one scale, state and rate.
const (
	// cacheBackend is the backend the experiments run on.
	cacheBackend = "ebpf"
	// wideFlowsPerVerdict sizes the wide working set: 64k flows, so the headline pass's
	// packets of a measurement meet each flow at most once (the frozen list's 1,024 flows meet
	// each about twenty times).
	wideFlowsPerVerdict = 32768
)

// cacheHeadrooms are the map sizes of the headroom experiment, times the state's entries: the
// same entries in tables 8× their size, against the headline's Spec.MapHeadroom (2×).
var cacheHeadrooms = []float64{8}

// freezeFlows draws a scale's flow list of n allowed and n denied flows from the cluster of st
// before any backend runs. short names the classes of flows the cluster had too few of (""
// when every quota is full): the list then holds another mix of paths than other scales'.
func freezeFlows(st *policy.State, seed uint64, n int) (fl *stamp.FlowList, short string, err error) {
	flows := packetFlows(st.Cluster(), seed, n, n)
	if fl, err = stamp.NewFlowList(flows); err != nil {
		return nil, "", err
	}
	if fl.Len() == 0 {
		return nil, "", errors.New("freeze flows: the cluster has no flow the testbed can send")
	}
	return fl, flowMixShort(flows, n, n), nil
}

// errVerdict marks a per-packet measurement whose packets disagreed with the reference: the
// run fails with it.
var errVerdict = stamp.ErrVerdictMismatch

// packetPass is one measurement of a backend at a scale: the headline (variant "", at
// Spec.PacketRate, established traffic included) or a variant of it.
type packetPass struct {
	variant string
	flows   *stamp.FlowList
	rate    float64
	samples int
	// established adds the established traffic.
	established bool
}

// packetPhase runs one pass of the per-packet method for one backend at one scale, in bed
// (which no backend but this one has touched) through sw, and records it. A disagreement
// with the reference is returned (wrapping stamp.ErrVerdictMismatch) for the runner to fail
// the run; other failures too, for a cap.
func (r *Runner) packetPhase(ctx context.Context, name string, pods int, stateDigest string, bed *testbed.Testbed, sw PacketSwitch, lk packetLookups, p packetPass) error {
	rounds := packetRounds
	if p.variant != "" {
		rounds = variantRounds
	}
	plan := packetPlan(p.flows, p.samples, rounds, p.rate, p.established)
	plan.Lookups = lk
	res, err := MeasurePackets(ctx, bed, sw, plan)
	if err != nil {
		if res != nil && errors.Is(err, errVerdict) {
			return fmt.Errorf("%s: %w", strings.TrimSpace(fmt.Sprintf("%s at %d pods %s", name, pods, p.variant)), err)
		}
		return err
	}
	if err := r.recordPackets(name, pods, p.variant, stateDigest, res); err != nil {
		return err
	}
	r.logf("bench: %s: %d samples checked in %s at %g new flows/s", strings.TrimSpace(fmt.Sprintf("%s at %d pods %s", name, pods, p.variant)),
		res.Check.Samples, res.Elapsed.Round(1e6), math.Round(res.backendRate()))
	return nil
}

// packets measures a backend's per-packet cost at one scale in the backend's own testbed:
// through inNode when its sync put it in force there (iptables), else through an install of
// its own with room for the stamps, taken out afterwards. The headline pass always runs, at
// the sweep's one rate; the sparse one at Spec.SparsePods, in the same testbed (the
// testbed's source ports never repeat a 5-tuple); and for eBPF at Spec.CachePods, the cache
// experiments. Only a disagreement with the reference is returned; any other failure is a
// cap.
func (r *Runner) packets(ctx context.Context, b *catalogue.Backend, s *scale, inNode *testbed.Enforcement) error {
	name, pods := b.Name, s.pods
	passes := []packetPass{{flows: s.flows, rate: r.Spec.PacketRate, samples: r.Spec.Packets, established: true}}
	cache := name == cacheBackend && slices.Contains(r.Spec.CachePods, pods)
	if slices.Contains(r.Spec.SparsePods, pods) || cache {
		// At a millisecond a packet, a twentieth of the headline's samples keeps the pass to
		// seconds (its p99 is then not given); the sparse pass is about new flows, so it sends
		// no established traffic.
		passes = append(passes, packetPass{variant: results.LabelRate + "=sparse", flows: s.flows, rate: sparseRate, samples: max(r.Spec.Packets/20, 100)})
		if name == cacheBackend {
			// The same flows five times denser than the headline: warm caches against the
			// sparse pass's cold ones, at two scales (SparsePods and CachePods).
			passes = append(passes, packetPass{variant: results.LabelRate + "=dense", flows: s.flows, rate: denseRate, samples: r.Spec.Packets})
		}
	}
	if cache {
		if wide, err := s.wideFlows(r.Spec.Seed); err != nil {
			r.capf(name, pods, false, "", "per-packet cost (flows=%d): %v", 2*wideFlowsPerVerdict, err)
		} else {
			passes = append(passes, packetPass{variant: fmt.Sprintf("%s=%d", results.LabelFlows, wide.Len()), flows: wide, rate: r.Spec.PacketRate, samples: r.Spec.Packets})
		}
	}
	if err := r.packetPasses(ctx, b, s, inNode, r.Spec.MapHeadroom, passes); err != nil {
		return err
	}
	if !cache || inNode != nil {
		return nil
	}
	for _, h := range cacheHeadrooms {
		p := packetPass{variant: fmt.Sprintf("%s=%g", results.LabelHeadroom, h), flows: s.flows, rate: r.Spec.PacketRate, samples: r.Spec.Packets}
		if err := r.packetPasses(ctx, b, s, nil, h, []packetPass{p}); err != nil {
			return err
		}
	}
	return nil
}

// packetPasses runs passes in one fresh testbed, with the backend in force there: inNode, or
// an install of its own with maps sized at headroom times the state's entries. A backend that
// cannot be put in force is capped, as skipped when the passes hold the headline.
func (r *Runner) packetPasses(ctx context.Context, b *catalogue.Backend, s *scale, inNode *testbed.Enforcement, headroom float64, passes []packetPass) error {
	name, pods := b.Name, s.pods
	headline := passes[0].variant == ""
	bed, err := r.openBed()
	if err != nil {
		r.capf(name, pods, headline, "", "per-packet cost: %v", err)
		return nil
	}
	e := inNode
	if e == nil {
		if e, _, err = b.Enforce(bed, catalogue.Env{State: s.frozen, Stamped: true, MapHeadroom: headroom}); err != nil {
			r.capf(name, pods, headline, "", "per-packet cost: enforce in the testbed: %v", err)
			return nil
		}
		defer r.takeOut(name, e)
	}
	sw, err := switchOf(b, e)
	if err != nil {
		r.capf(name, pods, headline, "", "per-packet cost: %v", err)
		return nil
	}
	// Whatever happens, the backend is left in the path for the phases after this one.
	defer func() {
		if err := sw.In(nil, nil); err != nil {
			r.logf("bench: %s: put back in the packet path: %v", name, err)
		}
	}()
	lk, _ := e.Backend().(packetLookups)
	for _, p := range passes {
		what := "headline"
		if p.variant != "" {
			what = p.variant
		}
		r.Progress.Note(fmt.Sprintf("pods=%d backend=%s per-packet cost (%s, %s stamps)", pods, name, what, sw.Attach()))
		if err := r.packetPhase(ctx, name, pods, s.stateDigest(), bed, sw, lk, p); err != nil {
			if errors.Is(err, errVerdict) {
				return err
			}
			r.capf(name, pods, false, "", "per-packet cost (%s): %v", what, err)
		}
	}
	return nil
}

// wideFlows is the scale's wide flow list of the cache experiment, drawn once.
func (s *scale) wideFlows(seed uint64) (*stamp.FlowList, error) {
	if s.wide == nil {
		fl, _, err := freezeFlows(s.frozen, seed, wideFlowsPerVerdict)
		if err != nil {
			return nil, err
		}
		s.wide = fl
	}
	return s.wide, nil
}
