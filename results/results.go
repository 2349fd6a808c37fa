// Package results is the schema of a benchmark run: what the benchmark (bench/) writes and what the
// reports and the regression gate read. It is the only package both sides share, so it holds data
// and its encodings (JSON, Go benchmark format, .hgrm) and nothing that measures or renders.
//
// A run is saved as results.json (Save/Load) beside its raw .hgrm percentile files and a Go
// benchmark-format text file (WriteBenchfmt) that benchstat reads unchanged.
//
// Units: durations in JSON are integer nanoseconds unless the field name says otherwise
// (…MS milliseconds, …US microseconds); sizes are bytes. Every slice may be empty: a report shows a
// section without data as "not measured".
package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// SchemaVersion is written into every Run and checked by Load. Bump the suffix when a field changes
// meaning or is removed; adding an optional field does not need a bump.
const SchemaVersion = "netpolbench.results/v1"

// ErrUnknownSchema is returned (wrapped) by Load for a file whose schema is not SchemaVersion.
var ErrUnknownSchema = errors.New("unknown results schema")

// Run is one benchmark run: where and how it ran, and everything it measured.
type Run struct {
	// Schema is SchemaVersion. Required.
	Schema string `json:"schema"`
	// Start is when the run began (UTC). Required.
	Start time.Time `json:"start"`
	// Duration is the wall-clock length of the whole run, in nanoseconds.
	Duration time.Duration `json:"duration_ns"`
	// Machine is the host the run measured.
	Machine Machine `json:"machine"`
	// Kernel is the kernel release (uname -r), e.g. "6.18.0-1-amd64".
	Kernel string `json:"kernel"`
	// Tools are the versions of the tools the run used.
	Tools Tools `json:"tools"`
	// GitRevision is the netpolbench commit (with "-dirty" when the tree had changes), or "" when unknown.
	GitRevision string `json:"git_revision,omitempty"`
	// Seed seeds every random choice of the run (workload generation, flow sampling).
	Seed int64 `json:"seed"`
	// Workload is the workload spec exactly as given (sweep.yaml converted to JSON, or the generator's
	// parameters); the report prints it, nothing interprets it.
	Workload json.RawMessage `json:"workload,omitempty"`
	// Config is the sweep the run was asked for.
	Config Config `json:"config"`
	// Caps lists backend/scale combinations the run skipped or limited, with the reason.
	Caps []Cap `json:"caps,omitempty"`

	// Benchmarks are results in Go's benchmark vocabulary; WriteBenchfmt writes them for benchstat
	// and the gate compares them.
	Benchmarks []Benchmark `json:"benchmarks,omitempty"`
	// Ratios declares which timings the gate compares as same-run ratios (see Ratio).
	Ratios []Ratio `json:"ratios,omitempty"`
	// Latency holds per-packet latency distributions.
	Latency []Histogram `json:"latency,omitempty"`
	// Sizes holds the state each backend installed, per scale. Exact figures.
	Sizes []Size `json:"sizes,omitempty"`
	// PeakRSSBytes is the suite's own peak resident memory over the whole run (getrusage maxrss), in bytes.
	PeakRSSBytes uint64 `json:"peak_rss_bytes,omitempty"`
	// Updates holds the cost of applying full syncs and churn events.
	Updates []Update `json:"updates,omitempty"`
	// Churn holds churn-under-load timelines.
	Churn []ChurnTimeline `json:"churn,omitempty"`
	// EndToEnd holds churn runs written through a Kubernetes API server and enforced by the
	// agent; their latencies are the KindEnforcement histograms.
	EndToEnd []EndToEnd `json:"end_to_end,omitempty"`
	// Fits holds growth exponents fitted over the scale sweep.
	Fits []Fit `json:"fits,omitempty"`
	// Claims are the seed claims, each confirmed, refuted or not measured by this run's figures.
	Claims []Claim `json:"claims,omitempty"`
	// Notes are free-form remarks for the report (e.g. "eBPF stamps: TCX_NEXT on allow").
	Notes []string `json:"notes,omitempty"`

	// Complete is set once the run finished every phase it planned. A file without the field
	// was written before runs recorded their progress, always at the end, and reads as
	// complete.
	Complete bool `json:"complete"`
	// Progress records the phases finished, where an unfinished run stopped and what resuming
	// it must match; nil in files written before runs recorded it.
	Progress *Progress `json:"progress,omitempty"`
}

// New returns an empty Run with the schema set and Start = now (UTC).
func New() *Run {
	return &Run{Schema: SchemaVersion, Start: time.Now().UTC()}
}

// Machine describes the host.
type Machine struct {
	// CPUModel is /proc/cpuinfo's "model name", e.g. "AMD EPYC 7B13".
	CPUModel string `json:"cpu_model"`
	// Cores is the number of online CPUs the run could use.
	Cores int `json:"cores"`
	// MemoryBytes is the total memory (MemTotal), in bytes.
	MemoryBytes uint64 `json:"memory_bytes"`
	// Hostname is informative only.
	Hostname string `json:"hostname,omitempty"`
}

// Tools are tool versions as each prints them (first line of --version); "" when absent.
type Tools struct {
	Go       string `json:"go"`
	Clang    string `json:"clang,omitempty"`
	Iptables string `json:"iptables,omitempty"`
	Ipset    string `json:"ipset,omitempty"`
	Bpftool  string `json:"bpftool,omitempty"`
	Nft      string `json:"nft,omitempty"`
}

// Config is the sweep the run was asked for.
type Config struct {
	// Backends are the backend names measured, e.g. ["ebpf", "iptables", "ipset"].
	Backends []string `json:"backends"`
	// Pods is the pod-count sweep, e.g. [100, 1000, 10000, 100000].
	Pods []int `json:"pods"`
	// Duration is the per-measurement duration budget, in nanoseconds.
	Duration time.Duration `json:"duration_ns,omitempty"`
	// Samples is the number of repeated samples per timing metric (benchstat's -count).
	Samples int `json:"samples,omitempty"`
	// Extra holds any other flag that shaped the run (name → value as given).
	Extra map[string]string `json:"extra,omitempty"`
}

// Cap records a backend/scale combination that was skipped or limited.
type Cap struct {
	Backend string `json:"backend"`
	// Pods is the scale capped; 0 means every scale.
	Pods int `json:"pods,omitempty"`
	// Skipped is true when nothing was measured for it; false when it ran with a limit.
	Skipped bool `json:"skipped"`
	// Reason says why, e.g. "iptables-restore of 4.2M rules exceeds the 10 min budget".
	Reason string `json:"reason"`
	// Limit is the limit that applied, as text, e.g. "max 20000 pods" or "60 s apply timeout".
	Limit string `json:"limit,omitempty"`
	// Phase is the phase the cap stopped, e.g. PhaseChurn; "" when it stopped the backend at
	// that scale before its first phase.
	Phase string `json:"phase,omitempty"`
	// Planned is the state the backend's own plan said a full sync would write (rules, set
	// members, map entries), computed without applying it, when the cap was decided by it or
	// the backend could plan. Exact.
	Planned *Size `json:"planned,omitempty"`
}

// Phases a cap can stop (Cap.Phase).
const (
	// PhaseChurn is the churn phase: the scale's event list replayed on every backend. A
	// backend capped there did not apply the whole list, so its state afterwards is not the
	// other backends': every figure it would measure after churn is left out of comparisons
	// and claims (see ChurnCapped).
	PhaseChurn = "churn"
	// PhaseEndToEnd is the end-to-end phase: churn written through an API server (EndToEnd).
	// A backend capped there was measured, or not, by the other phases independently.
	PhaseEndToEnd = "end-to-end"
)

// ChurnCapped reports whether backend did not finish the churn list at pods pods: figures it
// measured after churn describe another cluster than the other backends' and must not be
// compared with theirs.
func (run *Run) ChurnCapped(backend string, pods int) bool {
	for _, c := range run.Caps {
		if c.Backend == backend && c.Pods == pods && c.Phase == PhaseChurn {
			return true
		}
	}
	return false
}

// Save writes run as indented JSON to path, setting Schema when it is empty. The write is
// atomic (WriteFileAtomic): a reader or a killed writer never leaves a half-written file.
func Save(path string, run *Run) error {
	b, err := Encode(run)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// Encode renders run as Save writes it, setting Schema when it is empty.
func Encode(run *Run) ([]byte, error) {
	if run.Schema == "" {
		run.Schema = SchemaVersion
	}
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode results: %w", err)
	}
	return append(b, '\n'), nil
}

// Load reads a Run from path. A file of another schema gives an error wrapping ErrUnknownSchema.
func Load(path string) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	run, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return run, nil
}

// Decode parses a Run from JSON and checks its schema.
func Decode(b []byte) (*Run, error) {
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("decode results: %w", err)
	}
	if head.Schema != SchemaVersion {
		return nil, fmt.Errorf("%w %q, want %q (rerun the bench with this netpolbench to get a comparable file)",
			ErrUnknownSchema, head.Schema, SchemaVersion)
	}
	// Files without "complete" predate progress records and were written only at the end.
	run := Run{Complete: true}
	if err := json.Unmarshal(b, &run); err != nil {
		return nil, fmt.Errorf("decode results: %w", err)
	}
	return &run, nil
}
