package policytest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/policy"
)

// World draws random clusters, policies, flows and churn for the differential tests, which
// check the compiled state and every backend against the reference evaluator. The vocabulary
// is small on purpose, so that selectors, named ports and ipBlock prefixes collide often:
//
//   - namespaces x, y and z, labelled team=red, blue and red;
//   - pods labelled app=a..e, half of them tier=web or db, a quarter with a pod-template-hash
//     (which identities leave out), with addresses from 198.18.0.1 up over 198.18.0.0/22:
//     from the 1,025th pod on they wrap, and a pod on an address a live pod holds is rejected;
//   - container ports named http, dns and metrics on ports 80-83, a sixth of the pods
//     declaring a name twice (as two containers may; the first declaration resolves);
//   - selectors by matchLabels, In and NotIn (on app, or on the namespace name), Exists and
//     DoesNotExist; ipBlocks over prefixes that nest in each other, cover pod addresses
//     (198.18.0.5/32 and 198.18.0.70/32 are pods' own), lie outside the cluster or are
//     0.0.0.0/0, with random excepts;
//   - rule ports by number, range 80-83 and name, with and without a protocol;
//   - flows between pods, to and from addresses outside the cluster and pod addresses no pod
//     holds, over TCP, UDP, SCTP and ICMP, to ports 79-84;
//   - churn: pods added, deleted and relabelled; policies added, updated and removed.
//
// A World is deterministic: the same seed and options draw the same world, call for call.
// It is not safe for concurrent use.
type World struct {
	r      *rand.Rand
	opts   WorldOptions
	nextIP uint32
	nextID int
}

// WorldOptions turn on what only some tests want.
type WorldOptions struct {
	// WidePorts adds rules over port ranges thousands of ports wide (from 1000-1999 up to
	// 3000-7999) and sends one flow in eight to a port from 500 to 8499, which only those
	// ranges reach: the eBPF datapath checks a few ranges in a rule set's summary and expands
	// the others into its policy map. Off, flows stay on the ports the rules use.
	WidePorts bool
}

// NewWorld returns the world of a seed.
func NewWorld(seed uint64, opts WorldOptions) *World {
	return &World{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), opts: opts, nextIP: 1}
}

// Rand returns the world's source of randomness, for a test's own draws (such as a cluster's
// size) in step with the world's.
func (w *World) Rand() *rand.Rand { return w.r }

var (
	worldNamespaces = []string{"x", "y", "z"}
	worldTeams      = []string{"red", "blue", "red"} // team label of each namespace
	worldApps       = []string{"a", "b", "c", "d", "e"}
	worldTiers      = []string{"web", "db"}
	worldPortNames  = []string{"http", "dns", "metrics"}
	worldPrefixes   = []string{"198.18.0.0/23", "198.18.0.0/24", "198.18.1.0/26", "198.18.0.64/28",
		"198.18.2.0/24", "198.18.0.5/32", "198.18.0.70/32",
		"203.0.113.0/24", "203.0.113.0/25", "203.0.113.128/27", "203.0.113.10/32", "0.0.0.0/0"}
)

func (w *World) pick(s []string) string { return s[w.r.IntN(len(s))] }

// Labels draws a pod's labels.
func (w *World) Labels() map[string]string {
	m := map[string]string{"app": w.pick(worldApps)}
	if w.r.IntN(2) == 0 {
		m["tier"] = w.pick(worldTiers)
	}
	if w.r.IntN(4) == 0 {
		m["pod-template-hash"] = fmt.Sprintf("h%d", w.r.IntN(100))
	}
	return m
}

// Pod draws a pod with a name and an address no earlier pod of the world has (until the
// addresses wrap; see World).
func (w *World) Pod() *policy.Pod {
	w.nextID++
	n := w.nextIP
	w.nextIP++
	p := &policy.Pod{Namespace: w.pick(worldNamespaces), Name: fmt.Sprintf("p%d", w.nextID), Labels: w.Labels(),
		IP: netip.AddrFrom4([4]byte{198, 18, byte(n >> 8 & 3), byte(n)})}
	for _, name := range worldPortNames {
		if w.r.IntN(2) == 0 {
			proto := policy.ProtoTCP
			if name == "dns" || w.r.IntN(5) == 0 {
				proto = policy.ProtoUDP
			}
			p.Ports = append(p.Ports, policy.ContainerPort{Name: name, Protocol: proto, Port: uint16(80 + w.r.IntN(4))})
		}
	}
	if len(p.Ports) > 0 && w.r.IntN(6) == 0 {
		// A name declared again, as another container may: only the first one resolves.
		dup := p.Ports[w.r.IntN(len(p.Ports))]
		dup.Port = uint16(80 + w.r.IntN(4))
		p.Ports = append(p.Ports, dup)
		if w.r.IntN(2) == 0 {
			last := len(p.Ports) - 1
			p.Ports[0], p.Ports[last] = p.Ports[last], p.Ports[0]
		}
	}
	return p
}

// PodObject returns the Pod object that policy.PodFromK8s reads back as p. Each port gets a
// container of its own, so a name declared twice is declared by two containers, as Kubernetes
// allows.
func PodObject(p *policy.Pod) *corev1.Pod {
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
		Status:     corev1.PodStatus{PodIP: p.IP.String()},
	}
	for i, cp := range p.Ports {
		obj.Spec.Containers = append(obj.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i),
			Ports: []corev1.ContainerPort{{Name: cp.Name, ContainerPort: int32(cp.Port), Protocol: corev1.Protocol(cp.Protocol.String())}}})
	}
	return obj
}

func (w *World) selector(pod bool) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch w.r.IntN(5) {
	case 0:
	case 1, 2:
		if pod {
			s.MatchLabels = map[string]string{"app": w.pick(worldApps)}
		} else {
			s.MatchLabels = map[string]string{"team": w.pick([]string{"red", "blue"})}
		}
	case 3:
		key, vals := "app", []string{w.pick(worldApps), w.pick(worldApps)}
		if !pod {
			key, vals = policy.NamespaceNameLabel, []string{w.pick(worldNamespaces)}
		}
		op := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn}[w.r.IntN(2)]
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: vals}}
	case 4:
		key := "tier"
		if !pod {
			key = "team"
		}
		op := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}[w.r.IntN(2)]
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: key, Operator: op}}
	}
	return s
}

func (w *World) ipBlock() *networkingv1.IPBlock {
	cidr := netip.MustParsePrefix(w.pick(worldPrefixes))
	b := &networkingv1.IPBlock{CIDR: cidr.String()}
	for _, e := range worldPrefixes {
		ep := netip.MustParsePrefix(e)
		if ep.Bits() > cidr.Bits() && cidr.Contains(ep.Addr()) && w.r.IntN(2) == 0 {
			b.Except = append(b.Except, e)
		}
	}
	return b
}

func (w *World) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range w.r.IntN(3) {
		var p networkingv1.NetworkPolicyPeer
		switch w.r.IntN(4) {
		case 0:
			p.PodSelector = w.selector(true)
		case 1:
			p.NamespaceSelector = w.selector(false)
		case 2:
			p.PodSelector, p.NamespaceSelector = w.selector(true), w.selector(false)
		case 3:
			p.IPBlock = w.ipBlock()
		}
		out = append(out, p)
	}
	return out
}

func (w *World) ports() []networkingv1.NetworkPolicyPort {
	kinds := 4
	if w.opts.WidePorts {
		kinds = 5
	}
	var out []networkingv1.NetworkPolicyPort
	for range w.r.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[w.r.IntN(3)]
		if w.r.IntN(4) != 0 {
			p.Protocol = &proto
		}
		switch w.r.IntN(kinds) {
		case 0:
		case 1:
			v := intstr.FromInt32(int32(80 + w.r.IntN(4)))
			p.Port = &v
		case 2:
			v := intstr.FromInt32(int32(80 + w.r.IntN(2)))
			end := int32(81 + w.r.IntN(3))
			p.Port, p.EndPort = &v, &end
		case 3:
			v := intstr.FromString(w.pick(worldPortNames))
			p.Port = &v
		case 4:
			v := intstr.FromInt32(int32(1000 + w.r.IntN(1000)))
			end := int32(3000 + w.r.IntN(5000))
			p.Port, p.EndPort = &v, &end
		}
		out = append(out, p)
	}
	return out
}

// Policy draws a NetworkPolicy: up to two ingress and two egress rules, policyTypes left for
// defaulting a quarter of the time.
func (w *World) Policy(ns, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	np.Spec.PodSelector = *w.selector(true)
	for range w.r.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: w.peers(), Ports: w.ports()})
	}
	for range w.r.IntN(3) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: w.peers(), Ports: w.ports()})
	}
	switch w.r.IntN(4) {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return np
}

// Cluster draws a cluster of the three namespaces with pods (at most 1,024, so that their
// addresses differ) and policies (named np0, np1, ...). It panics if the cluster rejects what
// the world drew.
func (w *World) Cluster(pods, policies int) *policy.Cluster {
	c := policy.NewCluster()
	for i, ns := range worldNamespaces {
		must(c.AddNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": worldTeams[i]}}}))
	}
	for range pods {
		must(c.AddPod(PodObject(w.Pod())))
	}
	for i := range policies {
		must(c.AddPolicy(w.Policy(w.pick(worldNamespaces), fmt.Sprintf("np%d", i))))
	}
	return c
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("policytest: the random world drew an object the cluster rejects: %v", err))
	}
}

func (w *World) addr(c *policy.Cluster, pods []string) netip.Addr {
	if w.r.IntN(4) == 0 || len(pods) == 0 {
		// Outside the cluster, or a pod-range address no pod holds.
		if w.r.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{198, 18, byte(w.r.IntN(4)), byte(w.r.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(w.r.IntN(256))})
	}
	return c.Pods[pods[w.r.IntN(len(pods))]].IP
}

// Flow draws a flow over c. pods are c's pod keys as c.PodKeys returns them, taken once by a
// caller that draws many flows between two events.
func (w *World) Flow(c *policy.Cluster, pods []string) policy.Flow {
	f := policy.Flow{Src: w.addr(c, pods), Dst: w.addr(c, pods)}
	f.Proto = []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP}[w.r.IntN(4)]
	switch {
	case f.Proto == policy.ProtoICMP:
	case w.opts.WidePorts && w.r.IntN(8) == 0:
		f.Port = uint16(500 + w.r.IntN(8000))
	default:
		f.Port = uint16(79 + w.r.IntN(6))
	}
	return f
}

// Event draws a churn event for c: a pod added, deleted or relabelled, a policy added (named
// churn<seq>), updated or removed. Pod and policy events come in equal shares while c has pods
// and policies to change. Apply rejects a pod added on an address an earlier pod holds.
func (w *World) Event(c *policy.Cluster, seq int) policy.Event {
	keys := c.PodKeys()
	for {
		switch w.r.IntN(6) {
		case 0:
			return policy.Event{Kind: policy.PodAdd, Pod: w.Pod()}
		case 1:
			if len(keys) > 0 {
				return policy.Event{Kind: policy.PodDelete, PodKey: keys[w.r.IntN(len(keys))]}
			}
		case 2:
			if len(keys) > 0 {
				return policy.Event{Kind: policy.PodRelabel, PodKey: keys[w.r.IntN(len(keys))], Labels: w.Labels()}
			}
		case 3:
			return policy.Event{Kind: policy.PolicyAdd, Policy: w.Policy(w.pick(worldNamespaces), fmt.Sprintf("churn%d", seq))}
		case 4, 5:
			pk := c.PolicyKeys()
			if len(pk) == 0 {
				continue
			}
			k := pk[w.r.IntN(len(pk))]
			if w.r.IntN(2) == 0 {
				return policy.Event{Kind: policy.PolicyRemove, PolicyKey: k}
			}
			ns, name, _ := strings.Cut(k, "/")
			return policy.Event{Kind: policy.PolicyUpdate, Policy: w.Policy(ns, name)}
		}
	}
}
