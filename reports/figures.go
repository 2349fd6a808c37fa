package reports

import (
	"math"
	"slices"
	"sort"

	"netpolbench/results"
)

// The headline figures the first screen, its four plots and the terminal summary compare, read
// from a run in one place: when the run records a figure differently (floors per path, a new
// backend's size fields), this file is what changes.

// controls are backends that enforce nothing in a kernel: the sweep measures them as a lower
// bound, but they are not a dataplane a platform could pick, so no verdict names them cheapest.
var controls = map[string]string{
	"compiled":  "a control: the compiled state looked up in user space, no kernel",
	"reference": "a control: the reference evaluator",
}

func isControl(backend string) bool {
	_, ok := controls[backend]
	return ok || backend == results.BackendFloorName
}

// scaleKey is one backend at one scale.
type scaleKey struct {
	backend string
	pods    int
}

// packetCost is a per-packet cost above the stamping floor, in ns.
type packetCost struct{ P50, P99 float64 }

// spread is a timing's median and the range of its samples, in ns.
type spread struct{ Median, Min, Max float64 }

// stateSize is the state a backend installed at one scale.
type stateSize struct {
	// Rules are iptables or nftables rules; Members are ipset members or nftables set and map
	// elements; MapEntries are eBPF map entries.
	Rules, Members, MapEntries uint64
	// Bytes is what the backend wrote: the iptables-restore or nft input, or the maps' key and
	// value bytes, in bytes.
	Bytes uint64
}

// Entries is every object of the state: rules, set members and map entries.
func (s stateSize) Entries() uint64 { return s.Rules + s.Members + s.MapEntries }

// figures are the headline figures of a run, per backend and scale.
type figures struct {
	// backends lists every backend with a figure: the run's configured order first.
	backends []string
	// scales lists the pod counts with a figure, ascending.
	scales []int
	packet map[scaleKey]packetCost
	// attach is the attach point of each backend's per-packet figures ("tcx", "netfilter"):
	// it says which span they were stamped over.
	attach map[string]string
	// events maps a churn event kind (not full sync) to its median apply time, in ns.
	events map[scaleKey]map[string]float64
	sync   map[scaleKey]spread
	state  map[scaleKey]stateSize
}

func collectFigures(run *results.Run) *figures {
	f := &figures{packet: map[scaleKey]packetCost{}, attach: map[string]string{}, events: map[scaleKey]map[string]float64{},
		sync: map[scaleKey]spread{}, state: map[scaleKey]stateSize{}}
	seenB, seenS := map[string]bool{}, map[int]bool{}
	saw := func(k scaleKey) {
		if !seenB[k.backend] {
			seenB[k.backend] = true
			f.backends = append(f.backends, k.backend)
		}
		if !seenS[k.pods] {
			seenS[k.pods] = true
			f.scales = append(f.scales, k.pods)
		}
	}
	for _, h := range run.Latency {
		// Allowed new flows: the first packet of a connection the policy lets through, which
		// every allowed connection pays, and whose floor (the allowed path's) matches it.
		if h.Backend == results.BackendFloorName || h.Kind != results.KindStampDelta || h.Flow != results.FlowNew ||
			h.Verdict != results.VerdictAllow || h.AboveFloor == nil || h.Count == 0 || detail(h) {
			continue
		}
		k := scaleKey{h.Backend, h.Pods}
		if _, dup := f.packet[k]; !dup {
			f.packet[k] = packetCost{P50: h.AboveFloor.P50, P99: h.AboveFloor.P99}
			f.attach[h.Backend] = h.Labels["attach"]
			saw(k)
		}
	}
	// The first update of a kind per backend and scale is the sweep's own: a label-set point
	// at the same pod count records its single full sync later.
	for _, u := range run.Updates {
		// A kind the backend stopped within (a churn cap) has fewer events than the others'.
		if len(u.ApplyNS) == 0 || u.Capped {
			continue
		}
		k := scaleKey{u.Backend, u.Pods}
		if u.Event == results.EventFullSync {
			if _, dup := f.sync[k]; !dup {
				lo, hi := minMax(u.ApplyNS)
				f.sync[k] = spread{Median: median(u.ApplyNS), Min: lo, Max: hi}
				saw(k)
			}
			continue
		}
		if f.events[k] == nil {
			f.events[k] = map[string]float64{}
		}
		if _, dup := f.events[k][u.Event]; !dup {
			f.events[k][u.Event] = median(u.ApplyNS)
			saw(k)
		}
	}
	for _, s := range run.Sizes {
		k := scaleKey{s.Backend, s.Pods}
		if _, dup := f.state[k]; dup {
			continue
		}
		st := stateSize{MapEntries: s.TotalEntries(), Bytes: s.TotalMapBytes()}
		if ipt := s.Iptables; ipt != nil {
			st.Rules, st.Members = ipt.Rules, ipt.IpsetMembers
			st.Bytes += ipt.RestoreBytes
		}
		if nft := s.Nftables; nft != nil {
			st.Rules, st.Members = st.Rules+nft.Rules, st.Members+nft.Elements
			st.Bytes += nft.Bytes
		}
		if st.Entries() == 0 && st.Bytes == 0 {
			continue
		}
		f.state[k] = st
		saw(k)
	}
	// The sweep's scales: the label-set points of a sweep record a full sync at their own pod
	// count, which is not a scale of the sweep unless it is also in the pods list. A run whose
	// figures match none of its configured scales keeps them all rather than show nothing.
	if sweep := run.Config.Pods; len(sweep) > 0 && slices.ContainsFunc(f.scales, func(n int) bool { return slices.Contains(sweep, n) }) {
		f.scales = slices.DeleteFunc(f.scales, func(n int) bool { return !slices.Contains(sweep, n) })
	}
	sort.Ints(f.scales)
	// The run's own order of backends (the sweep's), then any other in first-seen order.
	var ordered []string
	for _, b := range run.Config.Backends {
		if seenB[b] && !slices.Contains(ordered, b) {
			ordered = append(ordered, b)
		}
	}
	for _, b := range f.backends {
		if !slices.Contains(ordered, b) {
			ordered = append(ordered, b)
		}
	}
	f.backends = ordered
	return f
}

// dataplanes are the backends a verdict compares: every one with figures but the controls.
func (f *figures) dataplanes() []string {
	var out []string
	for _, b := range f.backends {
		if !isControl(b) {
			out = append(out, b)
		}
	}
	return out
}

// eventKinds lists, in report order, the churn event kinds every backend in backends measured
// at pods: a per-event comparison over kinds one backend lacks (it was capped mid-churn) would
// compare different work.
func (f *figures) eventKinds(backends []string, pods int) []string {
	var kinds []string
	for _, ev := range results.EventTypes {
		if ev == results.EventFullSync {
			continue
		}
		all, any := true, false
		for _, b := range backends {
			evs := f.events[scaleKey{b, pods}]
			if evs == nil {
				continue // not measured at all: left out of the comparison, not of the kinds
			}
			any = true
			if _, ok := evs[ev]; !ok {
				all = false
			}
		}
		if all && any {
			kinds = append(kinds, ev)
		}
	}
	return kinds
}

// geomean is the geometric mean of a backend's median apply times over kinds, in ns; ok is
// false when it lacks one of them or has a non-positive time. A geometric mean weighs every
// kind alike whatever its magnitude, so the ratio of two backends' geomeans is the geomean of
// their per-kind ratios (as benchstat summarizes benchmarks).
func (f *figures) geomean(backend string, pods int, kinds []string) (float64, bool) {
	evs := f.events[scaleKey{backend, pods}]
	if evs == nil || len(kinds) == 0 {
		return 0, false
	}
	sum := 0.0
	for _, k := range kinds {
		v, ok := evs[k]
		if !ok || v <= 0 {
			return 0, false
		}
		sum += math.Log(v)
	}
	return math.Exp(sum / float64(len(kinds))), true
}
