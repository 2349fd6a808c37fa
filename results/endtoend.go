package results

import "time"

// KindEnforcement: each value is one churn event written through a Kubernetes API server,
// timed from the start of its write to one stage of its enforcement (Labels "stage", "qps" and,
// for the latencies of one kind of event, "event"; see the Stage constants). Values are
// nanoseconds on one clock: the agent ran in the process that wrote.
const KindEnforcement = "API write to enforcement"

// Stages of an event's way from its API write to enforcement (histogram label "stage"). Each
// is timed from the start of the write, except StageAgent and the two latencies ClusterLoader2
// defines, which say what their span is.
const (
	StageAck     = "ack"     // the API server acknowledged the write (a pod add: its status write)
	StageWatch   = "watch"   // the agent's informer delivered the watch event
	StageDequeue = "dequeue" // the agent's worker took the object off its queue
	StageCompute = "compute" // the compiler had the delta
	StageApply   = "apply"   // the backend acknowledged the delta
	StageProbe   = "probe"   // the first probe packet with the event's new verdict was sent
	// StageAgent is the agent's own share: watch event received to backend applied.
	StageAgent = "agent"
	// StageReachability is ClusterLoader2's pod creation reachability latency, for pod adds:
	// from the acknowledged write to the first probe packet with the new verdict.
	StageReachability = "reachability"
	// StageEnforcement is ClusterLoader2's policy enforcement latency, for policy adds,
	// updates and removes: from the acknowledged write to the first probe packet with the new
	// verdict.
	StageEnforcement = "enforcement"
)

// APIServer names where an end-to-end run wrote (EndToEnd.APIServer).
const (
	// APIServerEmbedded: the embedded control plane, etcd and kube-apiserver on this machine.
	APIServerEmbedded = "embedded"
	// APIServerCluster: a real cluster, through the user's kubeconfig.
	APIServerCluster = "cluster"
)

// EndToEnd is one run of churn written through an API server at a set rate while the agent,
// in the writing process, enforced what the API server held with one backend. Its latencies
// are the KindEnforcement histograms of the same backend, pods and qps.
type EndToEnd struct {
	Backend string `json:"backend"`
	// Pods is the scale of the cluster written before the churn.
	Pods int `json:"pods"`
	// QPS is the write rate asked for, in churn events per second (a pod add is one event of
	// two requests: create and status).
	QPS float64 `json:"qps"`
	// APIServer is APIServerEmbedded or APIServerCluster.
	APIServer string `json:"apiserver"`
	// Events is the length of the run's event list, the same for every backend at the scale;
	// EventsDigest identifies it.
	Events       int    `json:"events"`
	EventsDigest string `json:"events_digest,omitempty"`
	// Writes is how many were written, Failed how many writes the API server refused,
	// Samples how many writes were paired with the agent's enforcement and Unmatched how many
	// were not within the settle time (a write that changes nothing the agent enforces, such
	// as a relabel to the same labels, never is).
	Writes    int `json:"writes"`
	Failed    int `json:"failed,omitempty"`
	Samples   int `json:"samples"`
	Unmatched int `json:"unmatched,omitempty"`
	// Probe says how the probe stage was measured ("real packets in the testbed"), or why it
	// was not.
	Probe string `json:"probe"`
	// Probed counts the events whose probe saw the new verdict; ProbesFailed those whose probe
	// did not within the settle time; ProbesSkipped those left unprobed because enough probes
	// were running already. ProbeError is the last probe's failure, or says that the prober's
	// own model of the writes, on which it picked its flows, did not match what the agent
	// enforced at the end.
	Probed        int    `json:"probed"`
	ProbesFailed  int    `json:"probes_failed,omitempty"`
	ProbesSkipped int    `json:"probes_skipped,omitempty"`
	ProbeError    string `json:"probe_error,omitempty"`
	// ProbesEarly counts probed events whose first packet with the new verdict was sent more
	// than a millisecond before the agent had computed the event's delta, so before the
	// backend could change (a packet sent a little earlier may meet the change in the kernel):
	// the flow had that verdict from another event, which the prober avoids but cannot rule
	// out. Their probe stage is recorded all the same.
	ProbesEarly int `json:"probes_early,omitempty"`
	// DurationNS is from the first write to the last acknowledgement; LagNS the most a write
	// started after it was due (the writers fell behind the rate); DrainNS from the last
	// acknowledgement to the last paired write's enforcement: the agent's queue when the
	// writes ended, near 0 while it keeps up with the rate.
	DurationNS int64 `json:"duration_ns"`
	LagNS      int64 `json:"lag_ns"`
	DrainNS    int64 `json:"drain_ns"`
	// AgentStartNS is how long the agent took to list the cluster, compile it and sync the
	// backend before the backend's first run at this scale.
	AgentStartNS int64 `json:"agent_start_ns,omitempty"`
	// Requests counts the API server's requests during the run by "VERB resource[/sub]", and
	// WatchEvents the watch events it sent by resource (apiserver_request_total and
	// apiserver_watch_events_total over the run; every client's, the agent's list and watches
	// included).
	Requests    map[string]int64 `json:"requests,omitempty"`
	WatchEvents map[string]int64 `json:"watch_events,omitempty"`
}

// KeptUp reports whether the agent kept up with the rate: every write was paired, and its queue
// held under a second of work when the writes ended.
func (e EndToEnd) KeptUp() bool {
	return e.Unmatched == 0 && e.Failed == 0 && e.DrainNS < int64(time.Second)
}

// Achieved is the write rate the run reached, in events per second (0 without a duration).
func (e EndToEnd) Achieved() float64 {
	if e.DurationNS <= 0 {
		return 0
	}
	return float64(e.Writes) / (float64(e.DurationNS) / 1e9)
}
