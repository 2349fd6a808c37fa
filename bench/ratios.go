package bench

import (
	"fmt"
	"slices"
	"strings"

	"netpolbench/results"
)

// ratioReference is the backend every other one is held against in the same-run ratios
// between backends: the identity datapath the suite exists to compare.
const ratioReference = "ebpf"

// Prefixes of the between-backend ratios declared at the end of a run.
const (
	ratioPacketPrefix = "RatioPacket/"
	ratioUpdatePrefix = "RatioUpdate/"
	updateStreamBench = "BenchmarkUpdateStream/"
)

// declareBackendRatios declares the same-run ratios between each backend and the reference
// (ebpf) that the gate may hold: per-packet cost of new flows above the matched floor, for
// each scale and verdict (the two backends' round medians, paired in order; established
// packets and replies cost tens of ns, within the floors' drift, and are not paired); and the
// apply time of the scale's churn list, event by event (both applied the identical list, so
// event i of one is event i of the other). Which of them are stable enough to gate is decided
// by measuring their spread over repeated runs (netpolbench gate spread), not here.
//
// It is idempotent: a resumed run declares them again from everything it holds.
func (r *Runner) declareBackendRatios() {
	r.run.Ratios = slices.DeleteFunc(r.run.Ratios, func(x results.Ratio) bool {
		return strings.HasPrefix(x.Name, ratioPacketPrefix) || strings.HasPrefix(x.Name, ratioUpdatePrefix)
	})
	r.run.Benchmarks = slices.DeleteFunc(r.run.Benchmarks, func(b results.Benchmark) bool {
		return strings.HasPrefix(b.Name, updateStreamBench)
	})
	r.declarePacketRatios()
	r.declareUpdateRatios()
}

// packetKey is a BenchmarkPacket name without its backend and attach point: what must be
// equal for two backends' per-packet figures to be compared.
func packetKey(name string) (backend, key string, ok bool) {
	rest, ok := strings.CutPrefix(name, "BenchmarkPacket/backend=")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	backend = parts[0]
	var keep []string
	for _, p := range parts[1:] {
		if !strings.HasPrefix(p, "attach=") {
			keep = append(keep, p)
		}
	}
	return backend, strings.Join(keep, "/"), true
}

func (r *Runner) declarePacketRatios() {
	const unit = "above-floor-ns/op"
	type point struct {
		name string
		n    int
	}
	ref := map[string]point{}
	var others []struct {
		backend, key string
		p            point
	}
	for i := range r.run.Benchmarks {
		b := &r.run.Benchmarks[i]
		backend, key, ok := packetKey(b.Name)
		if !ok || !strings.HasSuffix(key, "/flow="+results.FlowNew) {
			continue
		}
		m := b.Metric(unit)
		if m == nil || len(m.Samples) == 0 {
			continue
		}
		p := point{b.Name, len(m.Samples)}
		if backend == ratioReference {
			ref[key] = p
		} else {
			others = append(others, struct {
				backend, key string
				p            point
			}{backend, key, p})
		}
	}
	for _, o := range others {
		rp, ok := ref[o.key]
		if !ok || rp.n != o.p.n {
			continue
		}
		r.run.Ratios = append(r.run.Ratios, results.Ratio{
			Name: fmt.Sprintf("%sbackend=%s/vs=%s/%s", ratioPacketPrefix, o.backend, ratioReference, o.key),
			Num:  results.MetricRef{Benchmark: o.p.name, Unit: unit},
			Den:  results.MetricRef{Benchmark: rp.name, Unit: unit},
		})
	}
}

// declareUpdateRatios pairs, per scale, every backend that applied the whole churn list with
// the reference: one benchmark per backend holds its apply times in list order (kinds in
// report order), and the ratio divides them event by event.
func (r *Runner) declareUpdateRatios() {
	type key struct {
		backend string
		pods    int
	}
	streams := map[key][]float64{}
	digests := map[key]string{}
	complete := map[key]bool{}
	var order []key
	for _, kind := range churnKinds {
		for _, u := range r.run.Updates {
			if u.Event != kind || len(u.ApplyNS) == 0 {
				continue
			}
			k := key{u.Backend, u.Pods}
			if _, seen := complete[k]; !seen {
				complete[k] = true
				order = append(order, k)
			}
			if u.Capped || (digests[k] != "" && digests[k] != u.EventsDigest) {
				complete[k] = false
			}
			digests[k] = u.EventsDigest
			streams[k] = append(streams[k], u.ApplyNS...)
		}
	}
	name := func(k key) string { return fmt.Sprintf("%sbackend=%s/pods=%d", updateStreamBench, k.backend, k.pods) }
	for _, k := range order {
		if !complete[k] {
			continue
		}
		r.run.Benchmarks = append(r.run.Benchmarks, results.Benchmark{Name: name(k), Iters: 1,
			Metrics: []results.Metric{{Unit: "ns/op", Samples: streams[k]}}})
	}
	for _, k := range order {
		ref := key{ratioReference, k.pods}
		if k.backend == ratioReference || !complete[k] || !complete[ref] ||
			digests[k] != digests[ref] || len(streams[k]) != len(streams[ref]) {
			continue
		}
		r.run.Ratios = append(r.run.Ratios, results.Ratio{
			Name: fmt.Sprintf("%sbackend=%s/vs=%s/pods=%d", ratioUpdatePrefix, k.backend, ratioReference, k.pods),
			Num:  results.MetricRef{Benchmark: name(k), Unit: "ns/op"},
			Den:  results.MetricRef{Benchmark: name(ref), Unit: "ns/op"},
			// Event i is the same event in every run of the spec and seed (events_digest).
			Paired: true,
		})
	}
}
