package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"netpolbench/results"
)

// Histogram range: 1 ns to 60 s at 3 significant digits, enough for a stamp delta of a few
// nanoseconds and a round trip stalled by a seconds-long rule rewrite alike.
const (
	histMin    = 1
	histMax    = 60_000_000_000
	histDigits = 3
)

// HistKey labels one latency distribution.
type HistKey struct {
	// Kind is one of results.Kind*.
	Kind    string
	Backend string
	Pods    int
	// Verdict is results.VerdictAllow or VerdictDeny ("" when mixed).
	Verdict string
	// Flow is results.FlowNew or FlowEstablished ("" when not applicable).
	Flow string
	// Attach names where the stamps sat: "tcx" or "netfilter" ("" for other kinds).
	Attach string
	// Extra is any other label, e.g. prog=to_container.
	Extra string
}

// Name is the histogram's name in benchmark style, unique within a run.
func (k HistKey) Name() string {
	prefix := map[string]string{
		results.KindStampDelta:        "Latency",
		results.KindTestRunBatchMeans: "TestRun",
		results.KindRoundTrip:         "RoundTrip",
	}[k.Kind]
	if prefix == "" {
		prefix = "Hist"
	}
	parts := []string{prefix, "backend=" + k.Backend, fmt.Sprintf("pods=%d", k.Pods)}
	if k.Attach != "" {
		parts = append(parts, "attach="+k.Attach)
	}
	if k.Extra != "" {
		parts = append(parts, k.Extra)
	}
	if k.Verdict != "" {
		parts = append(parts, "verdict="+k.Verdict)
	}
	if k.Flow != "" {
		parts = append(parts, "flow="+k.Flow)
	}
	return strings.Join(parts, "/")
}

// Histograms collects HdrHistograms by key. Not safe for concurrent use.
type Histograms struct {
	m     map[HistKey]*hdrhistogram.Histogram
	order []HistKey
	// clamped counts values outside the range, recorded at the nearest bound.
	clamped int64
	extra   map[HistKey]*histExtra
}

// histExtra is what a per-packet histogram carries beyond its values.
type histExtra struct {
	// above is the distribution of the values each minus its path's floor median; floor names
	// that floor's histogram; clamped counts values at or below the floor.
	above   *hdrhistogram.Histogram
	floor   HistKey
	clamped int64
	// stateDigest and flowDigest identify what the values were measured on.
	stateDigest, flowDigest string
	// rounds, jitter and floors: see SetRounds.
	rounds *results.RoundStats
	jitter *hdrhistogram.Histogram
	floors []HistKey
}

// NewHistograms returns an empty collection.
func NewHistograms() *Histograms {
	return &Histograms{m: map[HistKey]*hdrhistogram.Histogram{}, extra: map[HistKey]*histExtra{}}
}

func (h *Histograms) get(k HistKey) *hdrhistogram.Histogram {
	hist, ok := h.m[k]
	if !ok {
		hist = hdrhistogram.New(histMin, histMax, histDigits)
		h.m[k] = hist
		h.order = append(h.order, k)
	}
	return hist
}

// Merge adds every value of from (recorded in the same range) to k.
func (h *Histograms) Merge(k HistKey, from *hdrhistogram.Histogram) error {
	if dropped := h.get(k).Merge(from); dropped > 0 {
		return fmt.Errorf("merge into %s: %d values out of range", k.Name(), dropped)
	}
	return nil
}

// SetAbove links k to its floor's histogram and to above, the distribution of k's values each
// minus the floor's median (clamped of them at or below it): Results then reports the
// percentiles of above as k's cost above the floor.
func (h *Histograms) SetAbove(k, floor HistKey, above *hdrhistogram.Histogram, clamped int64) {
	x := h.extraOf(k)
	x.above, x.floor, x.clamped = above, floor, clamped
}

// SetRounds records what the rounds of k's measurement say about it, the floor's jitter (the
// floor samples of k's selection above their path's median) and, for k pooling paths, every
// floor subtracted.
func (h *Histograms) SetRounds(k HistKey, rounds *results.RoundStats, jitter *hdrhistogram.Histogram, floors []HistKey) {
	x := h.extraOf(k)
	x.rounds, x.jitter, x.floors = rounds, jitter, floors
}

// SetDigests records the state and flow-list digests k was measured on.
func (h *Histograms) SetDigests(k HistKey, state, flows string) {
	x := h.extraOf(k)
	x.stateDigest, x.flowDigest = state, flows
}

func (h *Histograms) extraOf(k HistKey) *histExtra {
	x := h.extra[k]
	if x == nil {
		x = &histExtra{}
		h.extra[k] = x
	}
	return x
}

// Record adds one value in ns. Values outside 1 ns..60 s are clamped and counted, so a
// distribution never silently loses a sample; any other RecordValue error is returned.
func (h *Histograms) Record(k HistKey, ns int64) error {
	hist := h.get(k)
	if ns < histMin {
		ns = histMin
		h.clamped++
	} else if ns > histMax {
		ns = histMax
		h.clamped++
	}
	if err := hist.RecordValue(ns); err != nil {
		return fmt.Errorf("record %d ns in %s: %w", ns, k.Name(), err)
	}
	return nil
}

// Count returns how many values k holds.
func (h *Histograms) Count(k HistKey) int64 {
	if hist, ok := h.m[k]; ok {
		return hist.TotalCount()
	}
	return 0
}

// Get returns the histogram of k, or nil.
func (h *Histograms) Get(k HistKey) *hdrhistogram.Histogram { return h.m[k] }

// Clamped reports how many values were clamped into range.
func (h *Histograms) Clamped() int64 { return h.clamped }

// Keys returns the keys in first-recorded order.
func (h *Histograms) Keys() []HistKey { return append([]HistKey(nil), h.order...) }

// Results summarises every histogram for results.json, writes each one's .hgrm percentile
// file into dir (when dir is not ""), and links per-packet histograms to their floor as
// SetAbove told.
func (h *Histograms) Results(dir string) ([]results.Histogram, error) {
	keys := h.Keys()
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].Name() < keys[j].Name() })
	byName := map[string]*results.Histogram{}
	out := make([]results.Histogram, 0, len(keys))
	for _, k := range keys {
		hist := h.m[k]
		r, err := results.FromHdr(k.Name(), hist)
		if err != nil {
			return nil, err
		}
		r.Backend, r.Pods, r.Verdict, r.Flow, r.Kind = k.Backend, k.Pods, k.Verdict, k.Flow, k.Kind
		labels := map[string]string{}
		if k.Attach != "" {
			labels["attach"] = k.Attach
		}
		if k.Extra != "" {
			for _, kv := range strings.Split(k.Extra, "/") {
				if key, val, ok := strings.Cut(kv, "="); ok {
					labels[key] = val
				}
			}
		}
		if len(labels) > 0 {
			r.Labels = labels
		}
		if dir != "" {
			file := strings.NewReplacer("/", "_", "=", "-").Replace(k.Name()) + ".hgrm"
			if err := writeHgrm(filepath.Join(dir, file), hist); err != nil {
				return nil, err
			}
			r.HgrmPath = file
		}
		out = append(out, r)
	}
	for i := range out {
		byName[out[i].Name] = &out[i]
	}
	for i, k := range keys {
		if x := h.extra[k]; x != nil {
			out[i].StateDigest, out[i].FlowDigest = x.stateDigest, x.flowDigest
			if x.above != nil {
				out[i].SetAbove(x.floor.Name(), x.above, x.clamped)
			}
			out[i].Rounds = x.rounds
			if x.jitter != nil && x.jitter.TotalCount() > 0 {
				j := results.PercentilesOf(x.jitter)
				out[i].FloorJitter = &j
			}
			for _, f := range x.floors {
				if n := f.Name(); !slices.Contains(out[i].Floors, n) {
					out[i].Floors = append(out[i].Floors, n)
				}
			}
		}
	}
	return out, nil
}

// writeHgrm writes a histogram's .hgrm file atomically, and not at all when the file already
// holds it: the runner writes a run's files after every phase, and most histograms are done.
func writeHgrm(path string, hist *hdrhistogram.Histogram) error {
	var b bytes.Buffer
	if err := results.WriteHgrm(&b, hist); err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b.Bytes()) {
		return nil
	}
	return results.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b.Bytes())
		return err
	})
}
