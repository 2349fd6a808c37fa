package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"netpolbench/catalogue"
)

// Spec is a sweep: which backends to measure at which scales, on which workload, within
// which budgets. It is read from sweep.yaml (--spec) or built from flags; DefaultSpec is what
// `make bench` runs and QuickSpec what CI runs.
type Spec struct {
	// Seed seeds the workload and every random choice of the run (default 1).
	Seed uint64 `json:"seed"`
	// Preset is the workloads preset the scales are derived from (default "default"); ignored
	// when Workload is set.
	Preset string `json:"preset,omitempty"`
	// Workload is an inline workloads spec (the same YAML `netpolbench gen --spec` reads); its
	// pods count is replaced by each scale's.
	Workload json.RawMessage `json:"workload,omitempty"`
	// Pods is the pod-count sweep (required unless a cluster file is given).
	Pods []int `json:"pods"`
	// LabelSets is an optional sweep of distinct label sets (identities) at LabelSetPods pods.
	LabelSets []int `json:"labelSets,omitempty"`
	// LabelSetPods is the pod count of the label-set sweep (default: the largest pods value
	// every backend runs at).
	LabelSetPods int `json:"labelSetPods,omitempty"`
	// Backends are the backends to measure (default: compiled, ebpf, iptables, ipset).
	Backends []string `json:"backends"`
	// Samples is how many times each timing is repeated (default 5).
	Samples int `json:"samples,omitempty"`
	// Duration bounds each traffic phase (round trips, throughput, churn under load; default 2s).
	Duration Duration `json:"duration,omitempty"`
	// Packets is the number of stamped samples each per-packet point of a backend and scale
	// (verdict and flow state: allowed new, denied new, established) gets at least, over the
	// rounds of its backend; it also bounds the round trips (default 10000).
	Packets int `json:"packets,omitempty"`
	// PacketRate is the one rate of every headline per-packet measurement, packets per second
	// (new flows and established segments alike; default 10000): floor and backend rounds of
	// every backend at every scale, so no figure is measured at a rate its own cost set. It
	// must stay below what the slowest backend sustains at the largest scale it runs (ipset at
	// 10,000 pods took 12,000–14,000 new flows a second back to back); each figure records the
	// rate it achieved.
	PacketRate float64 `json:"packetRate,omitempty"`
	// SparsePods are the scales whose per-packet measurement is repeated with new flows
	// spaced a millisecond apart (rate=sparse, a twentieth of the samples, no established
	// traffic): warm against cold caches; for eBPF also five times denser than the headline
	// (rate=dense, 50,000 new flows/s). None by default; `make bench` runs them at 1,000 pods
	// (about 7 s per backend on a 2-core machine), and for eBPF at CachePods too.
	SparsePods []int `json:"sparsePods,omitempty"`
	// CachePods are the scales where the eBPF datapath's per-packet measurement is repeated
	// with one thing changed at a time: the rate (rate=sparse, rate=dense, as at SparsePods),
	// a working set of 65,536 flows instead of the frozen list's 1,024 (flows=65536), and maps
	// sized at 8× the state's entries instead of MapHeadroom's (headroom=8). None by default;
	// `make bench` runs them at 10,000 pods, where they take about 25 s on a 2-core machine
	// (the headroom pass in a fresh testbed and install of its own).
	CachePods []int `json:"cachePods,omitempty"`
	// ChurnEvents is the number of events applied per event type (default 3).
	ChurnEvents int `json:"churnEvents,omitempty"`
	// ScaleBurst is the number of pods in a scale-up or scale-down burst (default 10).
	ScaleBurst int `json:"scaleBurst,omitempty"`
	// Budget caps the backends that do not scale.
	Budget Budget `json:"budget,omitempty"`
	// MapHeadroom sizes the eBPF maps at this many times the entries of the state a backend is
	// opened for, so churn that grows the state finds room (0: datapath.DefaultHeadroom, 2; at
	// least 1 otherwise). A full map names it.
	MapHeadroom float64 `json:"mapHeadroom,omitempty"`
	// APIServer is the end-to-end phase through a Kubernetes API server (nil: none; see
	// APIServerSpec).
	APIServer *APIServerSpec `json:"apiServer,omitempty"`
}

// Budget caps backends that become impractical at scale; a capped combination is recorded as a
// cap with its reason, never silently left out.
type Budget struct {
	// IptablesMaxPods is the largest scale iptables-family backends run at (default 10000:
	// above it one iptables-restore of O(pods²) rules takes minutes).
	IptablesMaxPods int `json:"iptablesMaxPods,omitempty"`
	// IptablesMaxRules caps iptables-family backends by the rules their own plan says a full
	// sync writes, computed before anything is applied (default 500000: a restore of 142,000
	// rules took 7 s with iptables-nft, so this many takes about half a minute, and every churn
	// event rewrites a share of them).
	IptablesMaxRules int `json:"iptablesMaxRules,omitempty"`
	// IpsetMaxMembers caps them by the ipset members their plan writes (default 2000000: 600,708
	// members and 51,526 rules, ipset at 10,000 pods, synced in 10.7 s; the plan and the sets'
	// restore payload grow with members, about 50 bytes each).
	IpsetMaxMembers int `json:"ipsetMaxMembers,omitempty"`
	// NftablesMaxElements caps nftables by the set and map elements its plan writes (default
	// 10000000: the 100,000-pod table, 5.8 million elements, is one nft transaction that took
	// 16.5 s, nft itself 2.7 GB at its peak, about 2.8 µs and 460 bytes an element; twice that
	// would take the whole phase budget for one sync and over 5 GB).
	NftablesMaxElements int `json:"nftablesMaxElements,omitempty"`
	// MaxPhase bounds any single backend phase; a phase that passes it is cut short and capped
	// (default 30s).
	MaxPhase Duration `json:"maxPhase,omitempty"`
}

// Duration is a time.Duration that reads and writes as "10s" in YAML and JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string like \"10s\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// DefaultSpec is `make bench`: 100 to 100,000 pods; eBPF in both map layouts, iptables and
// ipset capped by their per-IP rule budget, nftables by its set elements.
func DefaultSpec() Spec {
	return Spec{
		Seed:   1,
		Preset: "default",
		// 3,000 gives iptables a third point under its rule budget.
		Pods: []int{100, 1000, 3000, 10000, 100000},
		// Identities at a fixed pod count: policy entries against label sets alone.
		LabelSets:    []int{10, 50, 200},
		LabelSetPods: 1000,
		Backends:     []string{"compiled", "ebpf", "ebpf-cilium", "iptables", "ipset", "nftables"},
		SparsePods:   []int{1000},
		CachePods:    []int{10000},
		// Under 10 minutes for the whole sweep on 2 cores: a capped backend's phase stops
		// sooner (iptables at 3,000 pods, ipset at 10,000, nftables at 100,000), and the
		// traffic phases are shorter.
		Duration:  Duration(1500 * time.Millisecond),
		Budget:    Budget{MaxPhase: Duration(15 * time.Second)},
		APIServer: DefaultAPIServer(),
	}.withDefaults()
}

// QuickSpec is the small sweep CI runs and gates against a committed baseline: under two
// minutes on 2 cores.
func QuickSpec() Spec {
	s := Spec{
		Seed:        1,
		Preset:      "default",
		Pods:        []int{100, 1000},
		Backends:    []string{"compiled", "ebpf", "iptables", "ipset"},
		Samples:     3,
		Duration:    Duration(time.Second),
		Packets:     400,
		ChurnEvents: 3,
		ScaleBurst:  10,
		Budget:      Budget{IptablesMaxPods: 1000, MaxPhase: Duration(10 * time.Second)},
	}
	return s.withDefaults()
}

// WithDefaults fills what the spec leaves unset (LoadSpec and the presets do it already; a
// spec changed afterwards, as by command-line flags, calls it again).
func (s Spec) WithDefaults() Spec { return s.withDefaults() }

func (s Spec) withDefaults() Spec {
	if s.Seed == 0 {
		s.Seed = 1
	}
	if s.Preset == "" && len(s.Workload) == 0 {
		s.Preset = "default"
	}
	if len(s.Backends) == 0 {
		s.Backends = []string{"compiled", "ebpf", "iptables", "ipset"}
	}
	if s.Samples == 0 {
		s.Samples = 5
	}
	if s.Duration == 0 {
		s.Duration = Duration(2 * time.Second)
	}
	if s.Packets == 0 {
		s.Packets = 10000
	}
	if s.PacketRate == 0 {
		s.PacketRate = 10000
	}
	if s.ChurnEvents == 0 {
		s.ChurnEvents = 3
	}
	if s.ScaleBurst == 0 {
		s.ScaleBurst = 10
	}
	if s.Budget.IptablesMaxPods == 0 {
		s.Budget.IptablesMaxPods = 10000
	}
	if s.Budget.IptablesMaxRules == 0 {
		s.Budget.IptablesMaxRules = 500000
	}
	if s.Budget.IpsetMaxMembers == 0 {
		s.Budget.IpsetMaxMembers = 2000000
	}
	if s.Budget.NftablesMaxElements == 0 {
		s.Budget.NftablesMaxElements = 10000000
	}
	if s.Budget.MaxPhase == 0 {
		s.Budget.MaxPhase = Duration(30 * time.Second)
	}
	if s.APIServer != nil {
		a := *s.APIServer
		a.withDefaults(s.Backends)
		s.APIServer = &a
	}
	return s
}

// Validate checks the spec and reports every problem at once.
func (s *Spec) Validate() error {
	var errs []string
	for _, p := range s.Pods {
		if p < 1 || p > 131070 {
			errs = append(errs, fmt.Sprintf("pods: %d out of range 1..131070", p))
		}
	}
	for _, l := range s.LabelSets {
		if l < 1 {
			errs = append(errs, fmt.Sprintf("labelSets: %d must be ≥ 1", l))
		}
	}
	for _, n := range s.Backends {
		b, err := catalogue.Get(n)
		switch {
		case err != nil:
			errs = append(errs, "backends: "+err.Error())
		case !b.CanBench():
			errs = append(errs, fmt.Sprintf("backends: %s cannot be benchmarked (have %s)", n,
				strings.Join(catalogue.Names((*catalogue.Backend).CanBench), ", ")))
		}
	}
	if s.Samples < 1 || s.Samples > 1000 {
		errs = append(errs, fmt.Sprintf("samples: %d out of range 1..1000", s.Samples))
	}
	if s.Packets < 1 || s.Packets > 1000000 {
		errs = append(errs, fmt.Sprintf("packets: %d out of range 1..1000000", s.Packets))
	}
	if s.PacketRate < 100 || s.PacketRate > 1e6 {
		errs = append(errs, fmt.Sprintf("packetRate: %g out of range 100..1000000 packets/s", s.PacketRate))
	}
	if time.Duration(s.Duration) <= 0 {
		errs = append(errs, "duration: must be positive")
	}
	if s.MapHeadroom != 0 && (s.MapHeadroom < 1 || s.MapHeadroom > 1000) {
		errs = append(errs, fmt.Sprintf("mapHeadroom: %g out of range 1..1000", s.MapHeadroom))
	}
	if s.APIServer != nil {
		errs = append(errs, s.APIServer.validate()...)
	}
	if len(errs) > 0 {
		return errors.New("invalid sweep: " + strings.Join(errs, "; "))
	}
	return nil
}

// LoadSpec reads a sweep file (YAML or JSON), rejecting unknown fields, fills defaults and
// validates it.
func LoadSpec(file string) (Spec, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Spec{}, fmt.Errorf("read sweep: %w", err)
	}
	var s Spec
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return Spec{}, fmt.Errorf("parse sweep %s: %w", file, err)
	}
	s = s.withDefaults()
	if err := s.Validate(); err != nil {
		return Spec{}, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

func (d Duration) String() string { return time.Duration(d).String() }
