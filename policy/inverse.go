package policy

import (
	"fmt"
	"maps"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
)

// Inverse returns the event that undoes ev, for the cluster as it is before ev is applied:
// applying ev and then its inverse leaves the cluster's objects as they were. A benchmark that
// writes churn through an API server returns the cluster to where it started this way, so
// every backend meets the same events on the same cluster. An event the cluster would reject
// has no inverse, and neither has a namespace relabel that would create the namespace (no
// event removes one).
func (c *Cluster) Inverse(ev Event) (Event, error) {
	switch ev.Kind {
	case PodAdd:
		if ev.Pod == nil {
			return Event{}, fmt.Errorf("inverse of %s: no pod", ev.Kind)
		}
		if _, ok := c.Pods[ev.Pod.Key()]; ok {
			return Event{}, fmt.Errorf("inverse of %s: pod %s exists", ev.Kind, ev.Pod.Key())
		}
		return Event{Kind: PodDelete, PodKey: ev.Pod.Key()}, nil
	case PodDelete, PodRelabel:
		p, ok := c.Pods[ev.PodKey]
		if !ok {
			return Event{}, fmt.Errorf("inverse of %s: no pod %s", ev.Kind, ev.PodKey)
		}
		if ev.Kind == PodRelabel {
			return Event{Kind: PodRelabel, PodKey: ev.PodKey, Labels: maps.Clone(p.Labels)}, nil
		}
		cp := *p
		cp.Labels, cp.Ports = maps.Clone(p.Labels), slices.Clone(p.Ports)
		return Event{Kind: PodAdd, Pod: &cp}, nil
	case PolicyAdd, PolicyUpdate:
		if ev.Policy == nil {
			return Event{}, fmt.Errorf("inverse of %s: no policy", ev.Kind)
		}
		key := ev.Policy.Namespace + "/" + ev.Policy.Name
		old, ok := c.Policies[key]
		switch {
		case ev.Kind == PolicyAdd && ok:
			return Event{}, fmt.Errorf("inverse of %s: policy %s exists", ev.Kind, key)
		case ev.Kind == PolicyAdd:
			return Event{Kind: PolicyRemove, PolicyKey: key}, nil
		case !ok:
			return Event{}, fmt.Errorf("inverse of %s: no policy %s", ev.Kind, key)
		}
		return Event{Kind: PolicyUpdate, Policy: cleanPolicy(old)}, nil
	case PolicyRemove:
		old, ok := c.Policies[ev.PolicyKey]
		if !ok {
			return Event{}, fmt.Errorf("inverse of %s: no policy %s", ev.Kind, ev.PolicyKey)
		}
		return Event{Kind: PolicyAdd, Policy: cleanPolicy(old)}, nil
	case NamespaceRelabel:
		ns, ok := c.Namespaces[ev.Namespace]
		if !ok {
			return Event{}, fmt.Errorf("inverse of %s: namespace %s does not exist (nothing would remove it)", ev.Kind, ev.Namespace)
		}
		return Event{Kind: NamespaceRelabel, Namespace: ev.Namespace, Labels: maps.Clone(ns.Labels)}, nil
	}
	return Event{}, fmt.Errorf("inverse of event kind %d: unknown", ev.Kind)
}

// cleanPolicy is a copy of np that can be written again: its spec and labels, none of the
// server's metadata (a create with a resource version is refused).
func cleanPolicy(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	out := &networkingv1.NetworkPolicy{Spec: *np.Spec.DeepCopy()}
	out.Namespace, out.Name, out.Labels = np.Namespace, np.Name, maps.Clone(np.Labels)
	return out
}
