package policy

import (
	"fmt"
	"maps"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkCluster checks that a cluster holds only what its Add methods accept, and that its
// indexes agree with its maps: every namespace, pod and policy would be added again as it is,
// pods have unique IPv4 addresses, and every pod and policy has its namespace.
func checkCluster(c *Cluster) error {
	for name, ns := range c.Namespaces {
		if ns.Name != name || ns.Labels[NamespaceNameLabel] != name {
			return fmt.Errorf("namespace %q: filed under %q, labels %v", ns.Name, name, ns.Labels)
		}
		if err := NewCluster().AddNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: ns.Labels}}); err != nil {
			return fmt.Errorf("namespace %q would not be added again: %v", name, err)
		}
	}
	if len(c.podsByIP) != len(c.Pods) {
		return fmt.Errorf("%d pods, %d pod IPs", len(c.Pods), len(c.podsByIP))
	}
	for key, p := range c.Pods {
		if p.Key() != key || c.podsByIP[p.IP] != p || !p.IP.Is4() || c.Namespaces[p.Namespace] == nil {
			return fmt.Errorf("pod %s: filed under %q, IP %s indexed to %v, namespace known %v", p.Key(), key, p.IP, c.podsByIP[p.IP], c.Namespaces[p.Namespace] != nil)
		}
		again, err := PodFromK8s(podToK8s(p))
		if err != nil {
			return fmt.Errorf("pod %s would not be added again: %v", key, err)
		}
		if !reflect.DeepEqual(again, p) {
			return fmt.Errorf("pod %s reads back as %+v, holds %+v", key, again, p)
		}
	}
	if len(c.compiled) != len(c.Policies) {
		return fmt.Errorf("%d policies, %d compiled", len(c.Policies), len(c.compiled))
	}
	indexed := 0
	for key, np := range c.Policies {
		cp := c.compiled[key]
		if cp == nil || cp.np != np || cp.key != key || c.byNS[cp.ns][key] != cp || c.Namespaces[cp.ns] == nil {
			return fmt.Errorf("policy %s: compiled %v, indexed in namespace %q: %v", key, cp != nil, np.Namespace, c.byNS[np.Namespace][key] != nil)
		}
		if _, err := compilePolicy(DefaultPolicy(np)); err != nil {
			return fmt.Errorf("policy %s would not be added again: %v", key, err)
		}
	}
	for _, m := range c.byNS {
		indexed += len(m)
	}
	if indexed != len(c.Policies) {
		return fmt.Errorf("%d policies, %d indexed by namespace", len(c.Policies), indexed)
	}
	return nil
}

// podToK8s writes a pod back as a Pod object, each port in a container of its own: a name may
// be declared in two containers, but only once in one.
func podToK8s(p *Pod) *corev1.Pod {
	out := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: maps.Clone(p.Labels)},
		Status:     corev1.PodStatus{PodIP: p.IP.String()},
	}
	for i, cp := range p.Ports {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "x",
			Ports: []corev1.ContainerPort{{Name: cp.Name, ContainerPort: int32(cp.Port), Protocol: corev1.Protocol(cp.Protocol.String())}}})
	}
	return out
}
