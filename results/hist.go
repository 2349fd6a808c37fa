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

// Percentiles in ns.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
}

// FromHdr fills a Histogram's summary and encoding from h; the caller sets the labels. It does not
// set Floor/AboveFloor (see SetFloor) or HgrmPath.
func FromHdr(name string, h *hdrhistogram.Histogram) (Histogram, error) {
	out := Histogram{Name: name, Unit: "ns", Count: h.TotalCount()}
	if out.Count > 0 {
		out.Min, out.Max, out.Mean, out.StdDev = h.Min(), h.Max(), h.Mean(), h.StdDev()
		out.Percentiles = Percentiles{
			P50:  float64(h.ValueAtQuantile(50)),
			P90:  float64(h.ValueAtQuantile(90)),
			P99:  float64(h.ValueAtQuantile(99)),
			P999: float64(h.ValueAtQuantile(99.9)),
		}
	}
	enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return out, fmt.Errorf("encode histogram %s: %w", name, err)
	}
	out.Encoded = string(enc)
	return out, nil
}

// SetFloor records floor as h's floor and computes AboveFloor.
func (h *Histogram) SetFloor(floor *Histogram) {
	h.Floor = floor.Name
	sub := func(a, b float64) float64 { return max(a-b, 0) }
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
	h.AboveFloor = &Percentiles{
		P50:  float64(above.ValueAtQuantile(50)),
		P90:  float64(above.ValueAtQuantile(90)),
		P99:  float64(above.ValueAtQuantile(99)),
		P999: float64(above.ValueAtQuantile(99.9)),
	}
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
