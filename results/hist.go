package results

import (
	"fmt"
	"io"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Kinds of latency histogram. The kind says what one recorded value is, so a report never calls a
// histogram of batch means a per-packet distribution.
const (
	// KindStampDelta: each value is one packet's time between the BPF stamp just before and just
	// after the enforcement point, in the kernel (bpf_ktime_get_ns).
	KindStampDelta = "in-kernel stamp delta"
	// KindTestRunBatchMeans: each value is the mean duration BPF_PROG_TEST_RUN reported over one
	// batch of `repeat` runs; the spread is that of batch means, narrower than per-packet spread.
	KindTestRunBatchMeans = "BPF_PROG_TEST_RUN batch means"
	// KindRoundTrip: each value is one request/response round trip measured in user space.
	KindRoundTrip = "user-space round trip"
)

// Verdicts and flow states used as histogram labels.
const (
	VerdictAllow     = "allow"
	VerdictDeny      = "deny"
	FlowNew          = "new"
	FlowEstablished  = "established"
	FlowReply        = "reply" // a packet from a flow's destination back to its source
	BackendFloorName = "floor" // Backend of a histogram that measures the stamping cost alone.
)

// Histogram is a latency distribution with its labels and summary. Values are nanoseconds.
type Histogram struct {
	// Name identifies the histogram within the run, in benchmark style, e.g.
	// "Latency/backend=iptables/pods=10000/verdict=deny/flow=new". Required, unique.
	Name string `json:"name"`
	// Backend, e.g. "ebpf", "iptables", "ipset", or BackendFloorName for the floor itself.
	Backend string `json:"backend"`
	// Pods is the cluster scale.
	Pods int `json:"pods"`
	// Verdict is VerdictAllow or VerdictDeny ("" when mixed).
	Verdict string `json:"verdict,omitempty"`
	// Flow is FlowNew or FlowEstablished ("" when mixed or not applicable).
	Flow string `json:"flow,omitempty"`
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Labels holds any other label (e.g. "attach": "tcx", "stamps": "TCX_NEXT on allow").
	Labels map[string]string `json:"labels,omitempty"`
	// Unit is always "ns".
	Unit string `json:"unit"`
	// Count is the number of recorded values.
	Count int64 `json:"count"`
	// Min, Max and Mean of the recorded values, in ns (HdrHistogram precision).
	Min  int64   `json:"min"`
	Max  int64   `json:"max"`
	Mean float64 `json:"mean"`
	// StdDev of the recorded values, in ns.
	StdDev float64 `json:"stddev"`
	// Percentiles of the recorded values, in ns.
	Percentiles Percentiles `json:"percentiles"`
	// Floor names the histogram (same run, same scale) that measured the stamping cost with an empty
	// enforcement step; "" when none applies (e.g. BPF_PROG_TEST_RUN).
	Floor string `json:"floor,omitempty"`
	// AboveFloor are the percentiles of the per-packet costs above the floor, in ns: with
	// SetAbove, of every value minus one constant, its path's floor median (the per-packet
	// method); with SetFloor, each percentile minus the floor's same percentile (clamped at 0).
	// nil without a floor. Reports show this as the enforcement cost.
	AboveFloor *Percentiles `json:"above_floor,omitempty"`
	// AboveFloorClamped counts the values at or below their floor, recorded at the histogram's
	// minimum (1 ns) in AboveFloor.
	AboveFloorClamped int64 `json:"above_floor_clamped,omitempty"`
	// Floors names every floor subtracted when the histogram pools paths with floors of their
	// own (each sample had its own path's floor median subtracted); Floor is then the floor of
	// the path with the most samples.
	Floors []string `json:"floors,omitempty"`
	// FloorJitter are the percentiles of the floor's own samples above their median (each
	// floor sample minus its path's floor median, recorded at 1 ns when at or below it), in ns:
	// a percentile above the floor holds the floor's jitter too, so a p99 above the floor
	// within the floor's own p99 jitter says nothing about the backend's tail.
	FloorJitter *Percentiles `json:"floor_jitter,omitempty"`
	// Rounds is what the measurement's rounds say about the figure (per-packet histograms).
	Rounds *RoundStats `json:"rounds,omitempty"`
	// StateDigest and FlowDigest identify the compiled state and the frozen flow list a
	// per-packet histogram was measured on (policy.State.Digest, stamp.FlowList.Digest):
	// backends compared at a scale must show equal digests.
	StateDigest string `json:"state_digest,omitempty"`
	FlowDigest  string `json:"flow_digest,omitempty"`
	// HgrmPath is the raw percentile file (WriteHgrm), relative to the directory of results.json.
	HgrmPath string `json:"hgrm_path,omitempty"`
	// Encoded is the histogram itself in HdrHistogram's base64 V2 compressed encoding, so reports can
	// re-plot it (Decode).
	Encoded string `json:"encoded,omitempty"`
}

// Labels of a per-packet histogram measured on a variant of the sweep's headline
// measurement: rate=sparse (new flows a millisecond apart), flows=N (a working set of N flows),
// headroom=H (maps sized at H times the state's entries).
const (
	LabelRate     = "rate"
	LabelFlows    = "flows"
	LabelHeadroom = "headroom"
)

// Variant reports whether h was measured on a variant of the headline measurement (it carries
// one of the variant labels).
func (h Histogram) Variant() bool {
	return h.Labels[LabelRate] != "" || h.Labels[LabelFlows] != "" || h.Labels[LabelHeadroom] != ""
}

// Percentiles in ns. A tail percentile q is given only when at least MinTailSamples values lie
// beyond it (count·(1−q) ≥ MinTailSamples): from fewer, a p99.9 is one or two samples, whatever
// the tail looks like. One without enough samples is 0 and left out of the JSON (every
// recorded value is at least 1 ns, so 0 is never a measured percentile); Has says which.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90,omitempty"`
	P99  float64 `json:"p99,omitempty"`
	P999 float64 `json:"p99_9,omitempty"`
}

// MinTailSamples is how many values must lie beyond a tail percentile for it to be given.
const MinTailSamples = 10

// TailShown reports whether count values are enough for the percentile q (0..100): at least
// MinTailSamples of them beyond it.
func TailShown(count int64, q float64) bool {
	// 100−99.9 is a hair under 0.1 in floating point: without the slack, 10,000 values would
	// not give a p99.9 from their ten largest.
	return float64(count)*(100-q)/100 >= MinTailSamples-1e-6
}

// PercentilesOf summarises h, leaving out the tail percentiles it has too few values for.
func PercentilesOf(h *hdrhistogram.Histogram) Percentiles {
	n := h.TotalCount()
	if n == 0 {
		return Percentiles{}
	}
	at := func(q float64) float64 {
		if !TailShown(n, q) {
			return 0
		}
		return float64(h.ValueAtQuantile(q))
	}
	return Percentiles{P50: float64(h.ValueAtQuantile(50)), P90: at(90), P99: at(99), P999: at(99.9)}
}

// Has reports whether the percentile q (50, 90, 99 or 99.9) was given.
func (p Percentiles) Has(q float64) bool {
	switch q {
	case 50:
		return p.P50 > 0
	case 90:
		return p.P90 > 0
	case 99:
		return p.P99 > 0
	case 99.9:
		return p.P999 > 0
	}
	return false
}

// RoundStats is what the rounds of a per-packet measurement say about one of its figures: the
// method alternates floor and backend rounds, so each backend round gives the figure once and
// each floor round gives the floor once.
type RoundStats struct {
	// Rounds is the number of backend rounds (as many floor rounds ran between them).
	Rounds int `json:"rounds"`
	// AboveP50 is each backend round's median above the floor (its samples each minus its
	// path's floor median), ns, in round order; Spread is their max − min, ns.
	AboveP50 []float64 `json:"above_p50"`
	Spread   float64   `json:"spread"`
	// FloorP50 is each floor round's median of the same selection of floor samples (each
	// minus its path's floor median: 0 for a floor that held still), ns; FloorDrift is their
	// max − min, ns.
	FloorP50   []float64 `json:"floor_p50"`
	FloorDrift float64   `json:"floor_drift"`
	// P50Lo and P50Hi bound the p50 above the floor: a 95% interval from resampling the
	// rounds (a backend round with the floor round before it), so it carries the floor's
	// drift and the rounds' spread.
	P50Lo float64 `json:"p50_lo"`
	P50Hi float64 `json:"p50_hi"`
	// Noisy is set when the floor's drift is at least NoisyShare of the p50 above the floor:
	// the figure is not much larger than how far the floor itself moved.
	Noisy bool `json:"noisy,omitempty"`
	// RateAsked is the rate the rounds were paced at, packets per second (0: back to back);
	// Rate and FloorRate are the mean achieved new-flow rates of the backend and the floor
	// rounds.
	RateAsked float64 `json:"rate_asked"`
	Rate      float64 `json:"rate"`
	FloorRate float64 `json:"floor_rate"`
}

// NoisyShare is the share of a figure that its floor's drift must reach for RoundStats.Noisy.
const NoisyShare = 0.25

// FromHdr fills a Histogram's summary and encoding from h; the caller sets the labels. It does not
// set Floor/AboveFloor (see SetFloor) or HgrmPath.
func FromHdr(name string, h *hdrhistogram.Histogram) (Histogram, error) {
	out := Histogram{Name: name, Unit: "ns", Count: h.TotalCount()}
	if out.Count > 0 {
		out.Min, out.Max, out.Mean, out.StdDev = h.Min(), h.Max(), h.Mean(), h.StdDev()
		out.Percentiles = PercentilesOf(h)
	}
	enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return out, fmt.Errorf("encode histogram %s: %w", name, err)
	}
	out.Encoded = string(enc)
	return out, nil
}

// SetFloor records floor as h's floor and computes AboveFloor, each percentile minus the
// floor's same one (a percentile either lacks is left out).
func (h *Histogram) SetFloor(floor *Histogram) {
	h.Floor = floor.Name
	sub := func(a, b float64) float64 {
		if a == 0 || b == 0 {
			return 0
		}
		return max(a-b, 0)
	}
	h.AboveFloor = &Percentiles{
		P50:  sub(h.Percentiles.P50, floor.Percentiles.P50),
		P90:  sub(h.Percentiles.P90, floor.Percentiles.P90),
		P99:  sub(h.Percentiles.P99, floor.Percentiles.P99),
		P999: sub(h.Percentiles.P999, floor.Percentiles.P999),
	}
}

// SetAbove records floor as h's floor and AboveFloor as the percentiles of above, the
// distribution of h's values each minus its floor constant, clamped values counted.
func (h *Histogram) SetAbove(floor string, above *hdrhistogram.Histogram, clamped int64) {
	h.Floor = floor
	p := PercentilesOf(above)
	h.AboveFloor = &p
	h.AboveFloorClamped = clamped
}

// Decode returns the HdrHistogram behind h, or an error when h has no encoding.
func (h *Histogram) Decode() (*hdrhistogram.Histogram, error) {
	if h.Encoded == "" {
		return nil, fmt.Errorf("decode histogram %s: no encoding stored", h.Name)
	}
	d, err := hdrhistogram.Decode([]byte(h.Encoded))
	if err != nil {
		return nil, fmt.Errorf("decode histogram %s: %w", h.Name, err)
	}
	return d, nil
}

// WriteHgrm writes h's percentile distribution in HdrHistogram's text (.hgrm) format, values in the
// recorded unit (ns), 5 ticks per half distance as HdrHistogram's tools print.
func WriteHgrm(w io.Writer, h *hdrhistogram.Histogram) error {
	if _, err := h.PercentilesPrint(w, 5, 1); err != nil {
		return fmt.Errorf("write hgrm: %w", err)
	}
	return nil
}

// FindLatency returns the histogram with the given name, or nil.
func (run *Run) FindLatency(name string) *Histogram {
	for i := range run.Latency {
		if run.Latency[i].Name == name {
			return &run.Latency[i]
		}
	}
	return nil
}
