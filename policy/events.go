package policy

import (
	networkingv1 "k8s.io/api/networking/v1"
)

// EventKind is the kind of a churn event.
type EventKind uint8

const (
	PodAdd EventKind = iota
	PodDelete
	PodRelabel
	PolicyAdd
	PolicyUpdate
	PolicyRemove
	NamespaceRelabel
)

var eventKindNames = [...]string{"pod-add", "pod-delete", "pod-relabel", "policy-add", "policy-update", "policy-remove",
	"namespace-relabel"}

func (k EventKind) String() string {
	if int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return "unknown"
}

// Event is one churn event. Which fields are used depends on Kind:
// PodAdd: Pod. PodDelete: PodKey. PodRelabel: PodKey and Labels (the pod's new, complete label
// set). PolicyAdd and PolicyUpdate: Policy. PolicyRemove: PolicyKey. NamespaceRelabel:
// Namespace and Labels (the namespace's new, complete label set; NamespaceNameLabel is always
// added), creating the namespace if the cluster has none of that name.
type Event struct {
	Kind      EventKind
	Pod       *Pod
	PodKey    string
	Labels    map[string]string
	Policy    *networkingv1.NetworkPolicy
	PolicyKey string
	Namespace string
}
