// Package driver writes clusters and churn through a Kubernetes API server, as users and
// kubelets would, and measures how long each write takes to be enforced.
//
// Writer creates a generated cluster (namespaces, then pods and policies from concurrent
// writers) and applies churn events: a pod is created without an address and then given one
// through the status subresource, as its kubelet would; relabels and policy updates are JSON
// patches; deletions are immediate. Run writes events at a set rate (open loop: an event is due
// at i/QPS whether or not earlier ones were acknowledged; one object's events stay in order)
// and a Matcher pairs each write with the agent's observation of the object at the written
// resource version or later. Every stage of a Sample is timed from the write's start: the
// API server's acknowledgement, the watch event at the agent, its dequeue, the delta, the
// backend's acknowledgement, and, with a Prober, the first packet sent with the event's new
// verdict. Run asks the Prober about every event in order before writing it (so the Prober can
// follow the cluster as the writes leave it) and probes after the acknowledgement, at most
// Config.Probes events at once. Load is what the API server counted meanwhile: requests by verb
// and resource, and watch events sent, from its /metrics.
//
// The agent runs in the driver's process so that both sides' times come from one clock.
package driver
