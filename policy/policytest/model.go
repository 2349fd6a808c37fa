// Package policytest holds what every backend is tested with: the semantic truth tables (the
// upstream Kubernetes e2e model: namespaces x, y, z; pods a, b, c; ports 80 and 81 over TCP,
// UDP and SCTP), cases of policies with hand-written expectations, a comparer that prints the
// verdict matrix with the disagreeing cells marked, and the random world (World) of the
// differential tests: clusters, flows and churn drawn from a seed.
package policytest

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/policy"
)

// Namespaces and Pods of the model.
var (
	Namespaces = []string{"x", "y", "z"}
	Pods       = []string{"a", "b", "c"}
	// Externals are addresses outside the cluster the probes use.
	Externals = []string{"203.0.113.10", "203.0.113.200"}
	// Ports every model pod serves, over every protocol.
	Ports = []uint16{80, 81}
	// Protocols probed; ICMP probes have no port.
	Protocols = []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP}
)

// PodIP is the model address of pod name in namespace ns: 198.18.0.(16*ns + pod + 1).
func PodIP(ns, name string) netip.Addr {
	ni := strings.Index("xyz", ns)
	pi := strings.Index("abc", name)
	return netip.AddrFrom4([4]byte{198, 18, 0, byte(16*ni + pi + 1)})
}

// Model returns the e2e model cluster: namespaces labelled ns=<name>, pods labelled pod=<name>,
// each serving ports named serve-<port>-<proto> (e.g. serve-80-tcp).
func Model() *policy.Cluster {
	c := policy.NewCluster()
	nss, pods := ModelObjects()
	for _, ns := range nss {
		if err := c.AddNamespace(ns); err != nil {
			panic(err)
		}
	}
	for _, p := range pods {
		if err := c.AddPod(p); err != nil {
			panic(err)
		}
	}
	return c
}

// ModelObjects returns the model's namespaces and pods as Kubernetes objects, as written
// through an API server (each pod with its address in status.podIP).
func ModelObjects() ([]*corev1.Namespace, []*corev1.Pod) {
	var nss []*corev1.Namespace
	var pods []*corev1.Pod
	for _, ns := range Namespaces {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"ns": ns}}})
		for _, name := range Pods {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"pod": name}}}
			ctr := corev1.Container{Name: "cont", Image: "registry.k8s.io/e2e-test-images/agnhost:2.53"}
			for _, port := range Ports {
				for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
					ctr.Ports = append(ctr.Ports, corev1.ContainerPort{
						Name:          fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(proto))),
						ContainerPort: int32(port), Protocol: proto})
				}
			}
			p.Spec.Containers = []corev1.Container{ctr}
			p.Status.PodIP = PodIP(ns, name).String()
			pods = append(pods, p)
		}
	}
	return nss, pods
}

// Endpoint is a probe end: a model pod ("x/a") or an external address.
type Endpoint string

// Addr resolves an endpoint of the model to its address.
func (e Endpoint) Addr() netip.Addr {
	if ns, name, ok := strings.Cut(string(e), "/"); ok {
		return PodIP(ns, name)
	}
	return netip.MustParseAddr(string(e))
}

// Ends returns every probe end: the nine pods, then the externals.
func Ends() []Endpoint {
	var out []Endpoint
	for _, ns := range Namespaces {
		for _, p := range Pods {
			out = append(out, Endpoint(ns+"/"+p))
		}
	}
	for _, e := range Externals {
		out = append(out, Endpoint(e))
	}
	return out
}

// Probe is one cell of a truth table.
type Probe struct {
	From, To Endpoint
	Proto    policy.Protocol
	Port     uint16
}

// Flow converts a probe to a flow.
func (p Probe) Flow() policy.Flow {
	return policy.Flow{Src: p.From.Addr(), Dst: p.To.Addr(), Proto: p.Proto, Port: p.Port}
}

// Grid returns every probe of the model: every pair of ends with at least one pod, every port
// and protocol (ICMP once, without a port).
func Grid() []Probe {
	var out []Probe
	for _, from := range Ends() {
		for _, to := range Ends() {
			if !strings.Contains(string(from), "/") && !strings.Contains(string(to), "/") {
				continue
			}
			for _, proto := range Protocols {
				if proto == policy.ProtoICMP {
					out = append(out, Probe{from, to, proto, 0})
					continue
				}
				for _, port := range Ports {
					out = append(out, Probe{from, to, proto, port})
				}
			}
		}
	}
	return out
}
