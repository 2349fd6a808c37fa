package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
)

// Diff names the first difference between the objects of two clusters in the namespaces keep
// accepts (nil: all): the labels of a namespace with pods, a pod's labels, address or ports, a
// policy's spec, or one missing on either side; "" when they hold the same. It compares what enforcement is compiled from, so two compilers
// that applied the same changes in different orders, with different identity numbers, have
// clusters without a difference; it costs a pass over the objects, unlike rendering and
// comparing their states.
func (c *Cluster) Diff(o *Cluster, keep func(namespace string) bool) string {
	if keep == nil {
		keep = func(string) bool { return true }
	}
	populated := map[string]bool{}
	for _, cl := range []*Cluster{c, o} {
		for _, p := range cl.Pods {
			populated[p.Namespace] = true
		}
	}
	for _, name := range union(c.NamespaceNames(), o.NamespaceNames()) {
		a, b := c.Namespaces[name], o.Namespaces[name]
		switch {
		case !keep(name):
		case !populated[name]:
			// Without pods, a namespace's labels select nothing: an API server's system
			// namespaces are on one side only.
		case a == nil || b == nil:
			return fmt.Sprintf("namespace %s only on one side", name)
		case !maps.Equal(a.Labels, b.Labels):
			return fmt.Sprintf("namespace %s: labels %v against %v", name, a.Labels, b.Labels)
		}
	}
	inKept := func(key string) bool { ns, _, _ := strings.Cut(key, "/"); return keep(ns) }
	for _, key := range union(c.PodKeys(), o.PodKeys()) {
		a, b := c.Pods[key], o.Pods[key]
		switch {
		case !inKept(key):
		case a == nil || b == nil:
			return fmt.Sprintf("pod %s only on one side", key)
		case !maps.Equal(a.Labels, b.Labels):
			return fmt.Sprintf("pod %s: labels %v against %v", key, a.Labels, b.Labels)
		case a.IP != b.IP:
			return fmt.Sprintf("pod %s: address %s against %s", key, a.IP, b.IP)
		case !slices.Equal(a.Ports, b.Ports):
			return fmt.Sprintf("pod %s: ports %v against %v", key, a.Ports, b.Ports)
		}
	}
	for _, key := range union(c.PolicyKeys(), o.PolicyKeys()) {
		a, b := c.Policies[key], o.Policies[key]
		switch {
		case !inKept(key):
		case a == nil || b == nil:
			return fmt.Sprintf("policy %s only on one side", key)
		case !equality.Semantic.DeepEqual(a.Spec, b.Spec):
			return fmt.Sprintf("policy %s: specs differ", key)
		}
	}
	return ""
}

// union merges two sorted lists without duplicates.
func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}
