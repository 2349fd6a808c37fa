package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// Protocol is an IP protocol number. ProtoAny in an Entry matches every protocol.
type Protocol uint8

const (
	ProtoAny  Protocol = 0
	ProtoICMP Protocol = 1
	ProtoTCP  Protocol = 6
	ProtoUDP  Protocol = 17
	ProtoSCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case ProtoAny:
		return "ANY"
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// ParseProtocol reads a Kubernetes protocol name (TCP, UDP, SCTP) or ICMP, case-insensitively.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToUpper(s) {
	case "TCP":
		return ProtoTCP, nil
	case "UDP":
		return ProtoUDP, nil
	case "SCTP":
		return ProtoSCTP, nil
	case "ICMP":
		return ProtoICMP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want TCP, UDP, SCTP or ICMP)", s)
}

// Namespace is a Kubernetes namespace: its name and labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// ContainerPort is a port a pod's container declares; Name may be empty.
type ContainerPort struct {
	Name     string
	Protocol Protocol
	Port     uint16
}

// Pod is what enforcement needs to know of a pod. IP is required and comes from status.podIP.
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	IP        netip.Addr
	Ports     []ContainerPort
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// NamedPort resolves a container port name for a protocol. A name declared with another protocol
// resolves to nothing (see the package readings); a name declared twice for the protocol (as two
// containers may) resolves to the first declaration.
func (p *Pod) NamedPort(name string, proto Protocol) (uint16, bool) {
	for _, cp := range p.Ports {
		if cp.Name == name && cp.Protocol == proto {
			return cp.Port, true
		}
	}
	return 0, false
}

// Cluster is the set of objects the suite reasons about. Policies are stored defaulted and
// validated (see Cluster.AddPolicy). Maps are keyed by name (namespaces) or "namespace/name".
type Cluster struct {
	Namespaces map[string]*Namespace
	Pods       map[string]*Pod
	Policies   map[string]*networkingv1.NetworkPolicy

	podsByIP map[netip.Addr]*Pod
	compiled map[string]*compiledPolicy
	// byNS indexes compiled policies by namespace: a policy selects pods of its own only.
	byNS map[string]map[string]*compiledPolicy
}

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{
		Namespaces: map[string]*Namespace{},
		Pods:       map[string]*Pod{},
		Policies:   map[string]*networkingv1.NetworkPolicy{},
		podsByIP:   map[netip.Addr]*Pod{},
		compiled:   map[string]*compiledPolicy{},
		byNS:       map[string]map[string]*compiledPolicy{},
	}
}

// PodByIP returns the pod that owns ip, if any.
func (c *Cluster) PodByIP(ip netip.Addr) (*Pod, bool) {
	p, ok := c.podsByIP[ip]
	return p, ok
}

// PodKeys returns the pod keys in sorted order.
func (c *Cluster) PodKeys() []string {
	keys := make([]string, 0, len(c.Pods))
	for k := range c.Pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// PolicyKeys returns the policy keys in sorted order.
func (c *Cluster) PolicyKeys() []string {
	keys := make([]string, 0, len(c.Policies))
	for k := range c.Policies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// NamespaceNames returns the namespace names in sorted order.
func (c *Cluster) NamespaceNames() []string {
	keys := make([]string, 0, len(c.Namespaces))
	for k := range c.Namespaces {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Clone returns a deep-enough copy: maps are new, pods and namespaces are copied, policies are
// shared (they are immutable once added).
func (c *Cluster) Clone() *Cluster {
	n := NewCluster()
	for k, ns := range c.Namespaces {
		n.Namespaces[k] = &Namespace{Name: ns.Name, Labels: copyLabels(ns.Labels)}
	}
	for k, p := range c.Pods {
		cp := *p
		cp.Labels = copyLabels(p.Labels)
		cp.Ports = append([]ContainerPort(nil), p.Ports...)
		n.Pods[k] = &cp
		n.podsByIP[cp.IP] = &cp
	}
	for k, np := range c.Policies {
		n.Policies[k] = np
		n.compiled[k] = c.compiled[k]
	}
	for ns, m := range c.byNS {
		n.byNS[ns] = make(map[string]*compiledPolicy, len(m))
		for k, cp := range m {
			n.byNS[ns][k] = cp
		}
	}
	return n
}

func copyLabels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
