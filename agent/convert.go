package agent

import (
	"cmp"
	"errors"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/policy"
)

// Snapshot builds the cluster the agent enforces from whole lists of objects, with the rules
// the agent applies object by object: pods that are no policy endpoint (policy.ErrNotEndpoint:
// no IPv4 address yet, finished, on the host's network) are left out, and so are pods and
// policies the suite cannot enforce (each with a warning) and a pod whose address another pod
// already holds (the first by key keeps it). It is what a fresh compile of an API
// server's contents starts from.
func Snapshot(namespaces []*corev1.Namespace, pods []*corev1.Pod, policies []*networkingv1.NetworkPolicy, opts policy.Options) (*policy.Cluster, []string) {
	c := policy.NewCluster()
	var warnings []string
	for _, ns := range namespaces {
		if err := c.AddNamespace(ns); err != nil {
			warnings = append(warnings, err.Error())
		}
	}
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	for _, p := range pods {
		if err := c.AddPod(p); err != nil && !errors.Is(err, policy.ErrNotEndpoint) {
			warnings = append(warnings, "skip "+err.Error())
		}
	}
	for _, np := range policies {
		if err := policy.CheckPolicy(np, opts); err != nil {
			warnings = append(warnings, "skip "+err.Error())
			continue
		}
		if err := c.AddPolicy(np); err != nil {
			warnings = append(warnings, "skip "+err.Error())
		}
	}
	return c, warnings
}

// slimPod keeps what enforcement reads of a pod, so an informer's cache of 100,000 pods holds
// a fraction of their full objects (managed fields, conditions, container statuses ...).
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, Labels: p.Labels,
			ResourceVersion: p.ResourceVersion, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for _, c := range p.Spec.Containers {
		if len(c.Ports) > 0 {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	return out, nil
}
