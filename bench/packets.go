package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf/link"

	"netpolbench/bench/stamp"
	"netpolbench/catalogue"
	"netpolbench/datapath"
	"netpolbench/policy"
	"netpolbench/testbed"
)

// Lengths (IP total length, bytes) that mark a new-flow packet with the reference's fate for
// the floor's step programs: allowed, denied by the source's egress policy (dropped at the
// source's point), denied by the destination's ingress policy (dropped at the destination's).
// In floor rounds the steps drop exactly the packets the backend drops, where it drops them;
// backends never look at lengths.
const (
	markPass       = 64
	markDropSource = 68
	markDropDest   = 72
)

func markOf(f stamp.ExpectedFlow) int {
	switch {
	case f.Verdict == policy.Allow:
		return markPass
	case f.DeniedAt == policy.Egress:
		return markDropSource
	}
	return markDropDest
}

// PacketSwitch is a backend in force in the testbed it was synced in that can step out of the
// packet path and back without losing its state (catalogue.Switch), so floor and backend rounds
// alternate at the cost of a few attachments. A TCX backend goes back in just before the
// after-stamps, so the stamps stay attached around it.
type PacketSwitch interface {
	catalogue.Switch
	// Attach is where the stamps go: attachTCX or attachNetfilter.
	Attach() string
}

// enforcedSwitch is a catalogue backend's enforcement as a PacketSwitch.
type enforcedSwitch struct {
	catalogue.Switch
	attach string
}

func (e enforcedSwitch) Attach() string { return e.attach }

// switchOf returns the enforcement e of b as a PacketSwitch, or an error when the backend in
// force cannot step out of the path.
func switchOf(b *catalogue.Backend, e *testbed.Enforcement) (PacketSwitch, error) {
	sw, ok := e.Backend().(catalogue.Switch)
	if !ok || b.Family.Stamp == "" {
		return nil, fmt.Errorf("%w: %s cannot step out of the packet path for its floor", catalogue.ErrUnavailable, b.Name)
	}
	return enforcedSwitch{Switch: sw, attach: b.Family.Stamp}, nil
}

// PacketPlan is one per-packet measurement of a backend at a scale.
type PacketPlan struct {
	// Flows is the frozen flow list (required): every packet belongs to one of its flows
	// and is checked against the flow's expected verdict.
	Flows *stamp.FlowList
	// Rounds is the number of floor and backend rounds each, alternating floor first
	// (default 8): figures cluster by round, so the rounds are many and short, and the spread
	// of their medians says how far one round's figure can be trusted.
	Rounds int
	// New is the number of new-flow packets per round, sent in flow order, allowed and
	// denied flows interleaved (required).
	New int
	// Established is the number of data segments per round, over one connection per
	// allowed TCP flow (up to maxConnections); 0 sends none.
	Established int
	// Rate is the rate of new-flow packets and of segments, packets per second; 0 sends back
	// to back, at whatever rate the path under measurement takes them (so a slower backend
	// is measured at a lower rate than a faster one, and its floor rounds at a higher one).
	Rate float64
	// Warmup is the number of new-flow packets sent and checked at the start of every round
	// but not kept (default 64): the first packets after an attachment meet cold code.
	Warmup int
	// Timeout bounds each round's sending (default 30 s).
	Timeout time.Duration
	// Lookups, when set, are the backend's own counters of the verdicts it gave and the map
	// operations it made (the eBPF datapath): each backend round reads them around its
	// new-flow and its established traffic, and a new-flow packet that took the established
	// or the reply verdict fails the measurement.
	Lookups packetLookups
}

// packetLookups is implemented by a backend in force whose programs count their verdicts and
// map operations (the eBPF datapath).
type packetLookups interface {
	Lookups() (map[datapath.MetricKey]datapath.Lookups, error)
}

// maxConnections caps the connections of a round's established traffic.
const maxConnections = 64

func (p PacketPlan) withDefaults() (PacketPlan, error) {
	if p.Flows == nil || p.Flows.Len() == 0 {
		return p, errors.New("measure packets: no flow list")
	}
	if p.New <= 0 {
		return p, errors.New("measure packets: no new-flow packets planned")
	}
	if p.Rounds == 0 {
		p.Rounds = 8
	}
	if p.Warmup == 0 {
		p.Warmup = 64
	}
	if p.Timeout == 0 {
		p.Timeout = 30 * time.Second
	}
	if p.Rounds < 1 || p.Warmup < 0 || p.Established < 0 || p.Rate < 0 {
		return p, fmt.Errorf("measure packets: rounds %d, warm-up %d, established %d, rate %g", p.Rounds, p.Warmup, p.Established, p.Rate)
	}
	return p, nil
}

// PacketSample is one stamped packet, classified.
type PacketSample struct {
	Path  stamp.Path
	State stamp.State
	// Flow indexes the flow list.
	Flow int32
	// Delta is the stamped time, ns.
	Delta uint64
}

// PacketRound is one round of a measurement.
type PacketRound struct {
	// Floor is set for a round with the step programs between the stamps.
	Floor bool
	// Samples are the round's samples in arrival order: those of its new-flow traffic
	// (packets and their replies) first, NewEnd of them, then those of its established
	// traffic.
	Samples []PacketSample
	NewEnd  int
	// New and Established are what the generator sent (warm-up not counted).
	New, Established testbed.SendStats
	// Received is the number of packets the node received in the round, replies included:
	// each was sampled once per span.
	Received uint64
	// ConntrackGrowth is how many entries the node's conntrack table gained over the round
	// (0 or less when nothing holds conntrack's hooks); ConntrackKnown is false when the
	// kernel's statistics could not be read.
	ConntrackGrowth int64
	ConntrackKnown  bool
	// NewLookups and EstablishedLookups are what the backend's own counters gained over the
	// round's new-flow and established traffic (backend rounds with PacketPlan.Lookups).
	NewLookups, EstablishedLookups map[datapath.MetricKey]datapath.Lookups
}

// PacketResult is one per-packet measurement: the rounds, and the check of every sample
// against the flow list.
type PacketResult struct {
	Attach     string
	FlowDigest string
	// Rate is the rate the plan asked for, packets per second (0: back to back).
	Rate   float64
	Rounds []PacketRound
	// Check tallies every sample of every round, warm-up included.
	Check    stamp.Check
	Counters stamp.Counters
	// Elapsed is the wall time of the whole measurement, ns.
	Elapsed time.Duration
}

// Lookups sums what the backend's counters gained over the backend rounds' new-flow traffic
// (established false) or their established traffic (true); nil without counters.
func (r *PacketResult) Lookups(established bool) map[datapath.MetricKey]datapath.Lookups {
	var out map[datapath.MetricKey]datapath.Lookups
	for _, rd := range r.Rounds {
		part := rd.NewLookups
		if established {
			part = rd.EstablishedLookups
		}
		for k, l := range part {
			if out == nil {
				out = map[datapath.MetricKey]datapath.Lookups{}
			}
			out[k] = out[k].Add(l)
		}
	}
	return out
}

// backendRate is the mean achieved new-flow rate of the backend rounds, packets per second.
func (r *PacketResult) backendRate() float64 {
	var rates []float64
	for _, rd := range r.Rounds {
		if !rd.Floor {
			rates = append(rates, rd.New.Rate())
		}
	}
	return mean(rates)
}

// ErrNewFlowNotNew is returned (wrapped, with stamp.ErrVerdictMismatch) when a backend's own
// counters show that a new-flow packet met a conntrack entry: it took the established or the
// reply verdict, so it was timed on another path than a new flow's.
var ErrNewFlowNotNew = errors.New("a new-flow packet took the established or the reply verdict")

// MeasurePackets runs plan in bed with sw's backend: Rounds pairs of a floor round (sw out,
// the step programs between the stamps) and a backend round (sw in), floor first. Each round
// sends the same traffic; every sample is matched to its flow and checked. A sample that
// disagrees with its flow's verdict, or belongs to no flow, fails the measurement with
// stamp.ErrVerdictMismatch (the result is still returned, for the report). bed must be a
// testbed no other backend has enforced in: nothing another backend left may sit in the path
// of either kind of round.
func MeasurePackets(ctx context.Context, bed *testbed.Testbed, sw PacketSwitch, plan PacketPlan) (*PacketResult, error) {
	plan, err := plan.withDefaults()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	s, err := stamp.Load(stamp.Options{PodRange: testbed.PodRange, StepDropSource: markDropSource, StepDropDest: markDropDest})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	gen, err := bed.NewGenerator()
	if err != nil {
		return nil, err
	}
	defer gen.Close()
	m := &packetRun{bed: bed, sw: sw, s: s, gen: gen, plan: plan,
		res: &PacketResult{Attach: sw.Attach(), FlowDigest: plan.Flows.Digest(), Rate: plan.Rate}}
	m.traffic()
	if err := m.attach(); err != nil {
		return m.res, fmt.Errorf("measure packets: %w", err)
	}
	for r := 0; r < 2*plan.Rounds; r++ {
		if err := ctx.Err(); err != nil {
			return m.res, err
		}
		if err := m.round(ctx, r%2 == 0); err != nil {
			return m.res, fmt.Errorf("measure packets: round %d: %w", r+1, err)
		}
	}
	if err := s.Detach(); err != nil {
		return m.res, err
	}
	if m.res.Counters, err = s.Counters(); err != nil {
		return m.res, err
	}
	m.res.Elapsed = time.Since(start)
	if m.res.Counters.Lost > 0 {
		return m.res, fmt.Errorf("measure packets: the ring buffer lost %d samples", m.res.Counters.Lost)
	}
	return m.res, m.res.Check.Err()
}

type packetRun struct {
	bed  *testbed.Testbed
	sw   PacketSwitch
	s    *stamp.Stamps
	gen  *testbed.Generator
	plan PacketPlan
	res  *PacketResult
	// newPkts are the new-flow packets of a round in sending order; est the flows of the
	// established connections.
	newPkts []testbed.NewPacket
	est     []policy.Flow
}

// traffic lays out a round's traffic: allowed and denied flows interleaved, each new-flow
// packet marked with its flow's fate.
func (m *packetRun) traffic() {
	var allow, deny []stamp.ExpectedFlow
	for _, f := range m.plan.Flows.Flows() {
		if f.Verdict == policy.Allow {
			allow = append(allow, f)
			if f.Proto == policy.ProtoTCP && len(m.est) < maxConnections {
				m.est = append(m.est, f.Flow)
			}
		} else {
			deny = append(deny, f)
		}
	}
	for i := 0; i < max(len(allow), len(deny)); i++ {
		for _, fs := range [][]stamp.ExpectedFlow{allow, deny} {
			if i < len(fs) {
				m.newPkts = append(m.newPkts, testbed.NewPacket{Flow: fs[i].Flow, Len: markOf(fs[i])})
			}
		}
	}
}

// round switches what sits between the stamps (the steps or the backend), sends the round's
// traffic and collects its samples.
func (m *packetRun) round(ctx context.Context, floor bool) error {
	if floor {
		if err := m.sw.Out(); err != nil {
			return err
		}
		if err := m.attachSteps(); err != nil {
			return err
		}
	} else {
		if err := m.s.DetachSteps(); err != nil {
			return err
		}
		var in, eg link.Anchor
		if m.sw.Attach() == attachTCX {
			in, eg = m.s.TCXAnchors()
		}
		if err := m.sw.In(in, eg); err != nil {
			return err
		}
	}
	rd := PacketRound{Floor: floor}
	entries, ctErr := m.bed.NodeConntrackEntries()
	if m.plan.Warmup > 0 {
		if _, err := m.gen.SendNew(ctx, m.newPkts, testbed.SendOptions{Count: m.plan.Warmup, Timeout: m.plan.Timeout}); err != nil {
			return err
		}
		if err := m.collect(nil); err != nil {
			return err
		}
	}
	rx0, err := m.bed.NodeRxPackets()
	if err != nil {
		return err
	}
	var lk0 map[datapath.MetricKey]datapath.Lookups
	counted := !floor && m.plan.Lookups != nil
	if counted {
		if lk0, err = m.plan.Lookups.Lookups(); err != nil {
			return err
		}
	}
	rd.New, err = m.gen.SendNew(ctx, m.newPkts, testbed.SendOptions{Count: m.plan.New, Rate: m.plan.Rate, Timeout: m.plan.Timeout})
	if err != nil {
		return err
	}
	if err := m.collect(&rd); err != nil {
		return err
	}
	rd.NewEnd = len(rd.Samples)
	if counted {
		lk1, err := m.plan.Lookups.Lookups()
		if err != nil {
			return err
		}
		rd.NewLookups, lk0 = datapath.LookupsSince(lk1, lk0), lk1
		if err := newFlowsStayedNew(rd.Samples[:rd.NewEnd], rd.NewLookups); err != nil {
			return err
		}
	}
	if m.plan.Established > 0 && len(m.est) > 0 {
		rd.Established, err = m.gen.SendEstablished(ctx, m.est, testbed.SendOptions{Count: m.plan.Established, Rate: m.plan.Rate, Timeout: m.plan.Timeout})
		if err != nil {
			return err
		}
		if err := m.collect(&rd); err != nil {
			return err
		}
		if counted {
			lk1, err := m.plan.Lookups.Lookups()
			if err != nil {
				return err
			}
			rd.EstablishedLookups = datapath.LookupsSince(lk1, lk0)
		}
	}
	if after, err := m.bed.NodeConntrackEntries(); err == nil && ctErr == nil {
		rd.ConntrackGrowth, rd.ConntrackKnown = after-entries, true
	}
	if err := m.covered(&rd, rx0); err != nil {
		return err
	}
	m.res.Rounds = append(m.res.Rounds, rd)
	return nil
}

// attach puts the stamps around the enforcement point, for the whole measurement.
func (m *packetRun) attach() error {
	return m.bed.InNode(func() error {
		switch m.sw.Attach() {
		case attachTCX:
			for _, v := range m.bed.PodVeths() {
				if err := m.s.AttachTCX(v.Index); err != nil {
					return err
				}
			}
			return nil
		case attachNetfilter:
			if err := m.s.AttachNetfilter(); err != nil {
				return err
			}
			var out []int
			for _, v := range append(m.bed.PodVeths(), m.bed.OutsideVeth()) {
				out = append(out, v.Index)
			}
			return m.s.AttachNetfilterPath(out...)
		}
		return fmt.Errorf("stamps cannot attach at %q", m.sw.Attach())
	})
}

// attachSteps puts the step programs where the enforcement was.
func (m *packetRun) attachSteps() error {
	return m.bed.InNode(func() error {
		if m.sw.Attach() == attachNetfilter {
			return m.s.AttachNetfilterStep()
		}
		for _, v := range m.bed.PodVeths() {
			if err := m.s.AttachStep(v.Index); err != nil {
				return err
			}
		}
		return nil
	})
}

// collect drains the ring buffer until it stays empty, checks every sample and, with rd,
// keeps it.
func (m *packetRun) collect(rd *PacketRound) error {
	for wait := 200 * time.Millisecond; ; wait = 20 * time.Millisecond {
		smps, err := m.s.Drain(wait)
		if err != nil {
			return err
		}
		if len(smps) == 0 {
			return nil
		}
		for _, smp := range smps {
			mt, ok := m.res.Check.Add(m.plan.Flows, smp)
			if !ok || rd == nil {
				continue
			}
			rd.Samples = append(rd.Samples, PacketSample{Path: smp.Path(), State: mt.State, Flow: int32(mt.Flow), Delta: smp.Delta})
		}
	}
}

// covered checks that the stamps saw every packet the node received in the round once per
// span, draining late samples for a while: a packet they missed (nested in another on its CPU)
// would leave its path's figures silently short. Packets a loaded machine dropped before the
// node are neither received nor sampled.
func (m *packetRun) covered(rd *PacketRound, rx0 uint64) error {
	spans := []stamp.Span{stamp.SpanTCX}
	if m.sw.Attach() == attachNetfilter {
		spans = []stamp.Span{stamp.SpanNetfilterFilter, stamp.SpanNetfilterPath}
	}
	for deadline := time.Now().Add(2 * time.Second); ; {
		rx1, err := m.bed.NodeRxPackets()
		if err != nil {
			return err
		}
		rd.Received = rx1 - rx0
		short := ""
		for _, sp := range spans {
			n := 0
			for _, smp := range rd.Samples {
				if smp.Path.Span() == sp {
					n++
				}
			}
			switch {
			case uint64(n) > rd.Received:
				return fmt.Errorf("%s stamps sampled %d packets, the node received %d", sp, n, rd.Received)
			case uint64(n) < rd.Received && short == "":
				short = fmt.Sprintf("%s stamps sampled %d of the %d packets the node received", sp, n, rd.Received)
			}
		}
		if short == "" {
			return nil
		}
		if time.Now().After(deadline) {
			c, _ := m.s.Counters()
			return fmt.Errorf("%s (stamp counters %+v)", short, c)
		}
		if err := m.collect(rd); err != nil {
			return err
		}
	}
}

// programsCrossed is how many enforcement programs of a TCX backend a sample of path p went
// through: two for a pod-to-pod packet that reached the destination's point, else one.
func programsCrossed(p stamp.Path) uint64 {
	switch p {
	case stamp.PathTCXBoth, stamp.PathTCXDropEgress:
		return 2
	}
	return 1
}

// newFlowsStayedNew checks a backend round's new-flow traffic against the verdicts the
// backend's own counters gave over it: every established and reply verdict must be a packet
// the stamps saw as such, one per program it crossed. New-flow packets carry 5-tuples no
// packet had before, and the only packets coming back are their replies (resets of TCP SYNs),
// so the counters' established verdicts must be none and their replies exactly the replies'
// crossings; more means a new-flow packet met a conntrack entry and was timed as something
// else. It returns an error wrapping ErrNewFlowNotNew and stamp.ErrVerdictMismatch.
func newFlowsStayedNew(samples []PacketSample, lk map[datapath.MetricKey]datapath.Lookups) error {
	var want [2]uint64 // established, reply
	for _, s := range samples {
		switch s.State {
		case stamp.StateEstablished:
			want[0] += programsCrossed(s.Path)
		case stamp.StateReply:
			want[1] += programsCrossed(s.Path)
		}
	}
	var got [2]uint64
	for k, l := range lk {
		switch k.Reason {
		case datapath.ReasonAllowEstablished:
			got[0] += l.Packets
		case datapath.ReasonAllowReply:
			got[1] += l.Packets
		}
	}
	if got != want {
		return fmt.Errorf("%w: %w: the backend gave %d established and %d reply verdicts, its stamped packets account for %d and %d",
			stamp.ErrVerdictMismatch, ErrNewFlowNotNew, got[0], got[1], want[0], want[1])
	}
	return nil
}
