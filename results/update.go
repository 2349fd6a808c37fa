package results

// Churn event types (Update.Event, ChurnMark.Event).
const (
	EventFullSync     = "full-sync"
	EventPodAdd       = "pod-add"
	EventPodDelete    = "pod-delete"
	EventRelabel      = "relabel"
	EventScaleUp      = "scale-up"
	EventScaleDown    = "scale-down"
	EventPolicyAdd    = "policy-add"
	EventPolicyUpdate = "policy-update"
	EventPolicyRemove = "policy-remove"
)

// EventTypes lists the event types in the order reports show them.
var EventTypes = []string{EventFullSync, EventPodAdd, EventPodDelete, EventRelabel, EventScaleUp,
	EventScaleDown, EventPolicyAdd, EventPolicyUpdate, EventPolicyRemove}

// Update is the cost of applying one kind of change with one backend and apply path.
type Update struct {
	Backend string `json:"backend"`
	Pods    int    `json:"pods"`
	// Path is the apply path, e.g. "full-restore", "partial-restore", "map-diff".
	Path string `json:"path,omitempty"`
	// Event is one of the Event constants.
	Event string `json:"event"`
	// ApplyNS are samples of the time to apply the change (from handing the delta to the backend to
	// its return), in ns.
	ApplyNS []float64 `json:"apply_ns"`
	// KernelOps are samples of the kernel operations the apply needed (map updates + deletes, or
	// restore lines), one per ApplyNS sample when measured.
	KernelOps []float64 `json:"kernel_ops,omitempty"`
	// OpsUnit names what KernelOps counts, e.g. "map ops" or "restore lines".
	OpsUnit string `json:"ops_unit,omitempty"`
	// ConvergenceNS are samples of the time from the event to the first probe that saw the new
	// verdict, in ns; empty when not measured.
	ConvergenceNS []float64 `json:"convergence_ns,omitempty"`
	// EventsDigest identifies the churn event list the samples come from (SHA-256, hex): every
	// backend at a scale replays the same list, so equal digests say they applied the same
	// events. "" for full syncs.
	EventsDigest string `json:"events_digest,omitempty"`
	// Capped is set when the backend stopped within this kind's events (a churn cap,
	// Cap.Phase PhaseChurn): the samples are of fewer events than the other backends' and are
	// left out of comparisons.
	Capped bool `json:"capped,omitempty"`
}

// ChurnTimeline is a steady, bounded packet stream between pods that stay allowed, measured in
// intervals while a churn stream runs.
type ChurnTimeline struct {
	Backend string `json:"backend"`
	Pods    int    `json:"pods"`
	// IntervalMS is the width of one point's interval, in ms.
	IntervalMS float64 `json:"interval_ms"`
	// RatePPS is the offered packet rate, in packets per second.
	RatePPS float64 `json:"rate_pps,omitempty"`
	// Points are the intervals in time order.
	Points []ChurnPoint `json:"points"`
	// Events marks when churn events were applied.
	Events []ChurnMark `json:"events,omitempty"`
	// EventsDigest identifies the event list applied under load (SHA-256, hex), the same for
	// every backend at a scale.
	EventsDigest string `json:"events_digest,omitempty"`
	// Capped is set when the backend did not apply the whole list within the phase budget: its
	// timeline then covers fewer events than the others' and is not compared with them.
	Capped bool `json:"capped,omitempty"`
}

// ChurnPoint is one interval of a churn timeline.
type ChurnPoint struct {
	// TMS is the interval's start, in ms since the stream began.
	TMS float64 `json:"t_ms"`
	// Sent and Lost count packets sent in the interval and those never answered.
	Sent int64 `json:"sent"`
	Lost int64 `json:"lost"`
	// P50US, P99US and MaxUS are the latency of answered packets in the interval, in µs.
	P50US float64 `json:"p50_us"`
	P99US float64 `json:"p99_us"`
	MaxUS float64 `json:"max_us"`
}

// ChurnMark is one churn event on a timeline.
type ChurnMark struct {
	// TMS is when the event was applied, in ms since the stream began.
	TMS float64 `json:"t_ms"`
	// Event is one of the Event constants.
	Event string `json:"event"`
	// DurationMS is how long its apply took, in ms.
	DurationMS float64 `json:"duration_ms,omitempty"`
	// Detail is free text, e.g. "relabel 50 pods app=a→app=b".
	Detail string `json:"detail,omitempty"`
}
