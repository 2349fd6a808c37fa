package workloads

import (
	"math/rand/v2"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/policy"
)

// policy draws one NetworkPolicy from template t. Every choice comes from r and the world, so
// the same world state and stream give the same policy.
func (w *world) policy(r *rand.Rand, t PolicyTemplate) *networkingv1.NetworkPolicy {
	w.seq[t.Kind]++
	name := t.Kind + "-" + strconv.Itoa(w.seq[t.Kind])
	return w.policyNamed(r, t, name, -1)
}

// policyNamed draws a policy of template t called name; ns >= 0 pins its namespace (a policy
// update keeps its namespace and name).
func (w *world) policyNamed(r *rand.Rand, t PolicyTemplate, name string, ns int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}
	spec := &np.Spec
	nPorts := func(def int) int {
		if t.Ports != nil {
			return *t.Ports
		}
		return def
	}
	peers := t.Peers
	if peers == 0 {
		peers = 1
	}
	var target *labelSet
	pickTarget := func() {
		target, spec.PodSelector = w.target(r, ns)
		if ns < 0 {
			ns = target.ns
		}
	}

	switch t.Kind {
	case KindDefaultDeny:
		if ns < 0 {
			ns = w.denyOrder[w.denyNext%len(w.denyOrder)]
			w.denyNext++
		}
		spec.PolicyTypes = policyTypes(t.PolicyTypes, networkingv1.PolicyTypeIngress)

	case KindAllowFromApp:
		pickTarget()
		rule := networkingv1.NetworkPolicyIngressRule{Ports: w.rulePorts(r, target, nPorts(1))}
		for range peers {
			src := w.inNS(r, ns)
			sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": src.app}}
			if r.Float64() < t.Expressions {
				sel = w.expression(r, ns, src)
			}
			rule.From = append(rule.From, networkingv1.NetworkPolicyPeer{PodSelector: sel})
		}
		spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
		spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}

	case KindAllowFromNamespace:
		pickTarget()
		rule := networkingv1.NetworkPolicyIngressRule{Ports: w.rulePorts(r, target, nPorts(1))}
		for range peers {
			src := w.labelSets[r.IntN(len(w.labelSets))]
			peer := networkingv1.NetworkPolicyPeer{NamespaceSelector: w.nsSelector(r, src.ns)}
			if r.Float64() < t.WithPodSelector {
				peer.PodSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": src.app}}
			}
			rule.From = append(rule.From, peer)
		}
		spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
		spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}

	case KindPortRange:
		pickTarget()
		rule := networkingv1.NetworkPolicyIngressRule{
			From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
		}
		for range max(1, nPorts(1)) {
			rule.Ports = append(rule.Ports, portRange(r, target))
		}
		spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
		spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}

	case KindNamedPort:
		pickTarget()
		if r.Float64() < t.Egress {
			// Egress to named ports of peer pods: the name resolves at each destination.
			dst := w.inNS(r, ns)
			rule := networkingv1.NetworkPolicyEgressRule{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": dst.app}}}},
				Ports: w.namedPorts(r, dst, max(1, nPorts(1))),
			}
			spec.Egress = []networkingv1.NetworkPolicyEgressRule{rule}
			spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
		} else {
			rule := networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
				Ports: w.namedPorts(r, target, max(1, nPorts(1))),
			}
			spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
			spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		}

	case KindIPBlock:
		pickTarget()
		var block *networkingv1.IPBlock
		if r.IntN(2) == 0 {
			block = externalBlock(r)
		} else {
			block = w.podBlock(r)
		}
		rule := networkingv1.NetworkPolicyIngressRule{
			From:  []networkingv1.NetworkPolicyPeer{{IPBlock: block}},
			Ports: w.rulePorts(r, target, nPorts(0)),
		}
		spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
		spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}

	case KindEgressCIDR:
		pickTarget()
		var to []networkingv1.NetworkPolicyPeer
		for range peers {
			if r.IntN(3) < 2 {
				to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: externalBlock(r)})
			} else {
				to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: w.podBlock(r)})
			}
		}
		var ports []networkingv1.NetworkPolicyPort
		for _, p := range []int32{443, 80, 8443}[:min(3, nPorts(1))] {
			ports = append(ports, numPort(corev1.ProtocolTCP, p))
		}
		udp := corev1.ProtocolUDP
		spec.Egress = []networkingv1.NetworkPolicyEgressRule{
			{To: to, Ports: ports},
			// DNS anywhere in the cluster: what a real egress policy always carries.
			{
				To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: ptr(intstr.FromInt32(53))}},
			},
		}
		spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}

	case KindAllowAll:
		if r.IntN(2) == 0 {
			pickTarget()
		} else {
			if ns < 0 {
				ns = r.IntN(len(w.nsNames))
			}
			spec.PodSelector = metav1.LabelSelector{}
		}
		spec.PolicyTypes = policyTypes(t.PolicyTypes, networkingv1.PolicyTypeIngress)
		for _, pt := range spec.PolicyTypes {
			if pt == networkingv1.PolicyTypeIngress {
				spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
			} else {
				spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
			}
		}
	}
	if ns < 0 {
		ns = r.IntN(len(w.nsNames))
	}
	np.Namespace = w.nsNames[ns]
	return np
}

func policyTypes(given []string, def networkingv1.PolicyType) []networkingv1.PolicyType {
	if len(given) == 0 {
		return []networkingv1.PolicyType{def}
	}
	out := make([]networkingv1.PolicyType, len(given))
	for i, g := range given {
		out[i] = networkingv1.PolicyType(g)
	}
	return out
}

// inNS picks a label set of namespace ns, or of any namespace when ns < 0 or ns has none.
func (w *world) inNS(r *rand.Rand, ns int) *labelSet {
	if ns >= 0 && len(w.byNS[ns]) > 0 {
		return w.labelSets[w.byNS[ns][r.IntN(len(w.byNS[ns]))]]
	}
	return w.labelSets[r.IntN(len(w.labelSets))]
}

func ptr[T any](v T) *T { return &v }

// target picks the pods a policy applies to: one label set by its app label, or (one time in
// five, when the label set has another label) every pod of the namespace sharing that label.
// ns >= 0 restricts the choice to that namespace.
func (w *world) target(r *rand.Rand, ns int) (*labelSet, metav1.LabelSelector) {
	ls := w.inNS(r, ns)
	if len(w.spec.LabelSets.Labels) > 0 && r.IntN(5) == 0 {
		key := w.spec.LabelSets.Labels[r.IntN(len(w.spec.LabelSets.Labels))].Key
		return ls, metav1.LabelSelector{MatchLabels: map[string]string{key: ls.labels[key]}}
	}
	return ls, metav1.LabelSelector{MatchLabels: map[string]string{"app": ls.app}}
}

// expression builds a matchExpressions selector that selects src (and maybe more) in ns.
func (w *world) expression(r *rand.Rand, ns int, src *labelSet) *metav1.LabelSelector {
	switch r.IntN(3) {
	case 0:
		vals := []string{src.app}
		if other := w.inNS(r, ns); other != src {
			vals = append(vals, other.app)
		}
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: vals},
		}}
	case 1:
		other := w.inNS(r, ns)
		req := []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{other.app}}}
		if other == src {
			req[0].Values = []string{"app-none"}
		}
		return &metav1.LabelSelector{MatchExpressions: req}
	default:
		if len(w.spec.LabelSets.Labels) == 0 {
			return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: metav1.LabelSelectorOpExists},
			}}
		}
		key := w.spec.LabelSets.Labels[r.IntN(len(w.spec.LabelSets.Labels))].Key
		return &metav1.LabelSelector{
			MatchLabels: map[string]string{key: src.labels[key]},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: metav1.LabelSelectorOpExists},
				{Key: "not-a-label", Operator: metav1.LabelSelectorOpDoesNotExist},
			},
		}
	}
}

// nsSelector selects namespace ns by name or by one of its labels; one time in ten it selects
// every namespace.
func (w *world) nsSelector(r *rand.Rand, ns int) *metav1.LabelSelector {
	switch k := r.IntN(10); {
	case k == 0:
		return &metav1.LabelSelector{}
	case k < 5 || len(w.spec.Namespaces.Labels) == 0:
		return &metav1.LabelSelector{MatchLabels: map[string]string{policy.NamespaceNameLabel: w.nsNames[ns]}}
	default:
		key := w.spec.Namespaces.Labels[r.IntN(len(w.spec.Namespaces.Labels))].Key
		return &metav1.LabelSelector{MatchLabels: map[string]string{key: w.nsLabels[ns][key]}}
	}
}

func numPort(proto corev1.Protocol, port int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: ptr(intstr.FromInt32(port))}
}

// rulePorts picks n of the label set's container ports as numeric port entries; a label set
// without ports gets none, which allows every port.
func (w *world) rulePorts(r *rand.Rand, ls *labelSet, n int) []networkingv1.NetworkPolicyPort {
	if n == 0 || len(ls.ports) == 0 {
		return nil
	}
	var out []networkingv1.NetworkPolicyPort
	for _, i := range r.Perm(len(ls.ports))[:min(n, len(ls.ports))] {
		p := ls.ports[i]
		out = append(out, numPort(k8sProto(p.Protocol), int32(p.Port)))
	}
	return out
}

// portRange draws a port..endPort range that usually covers one of the label set's ports and
// sometimes ends just below it, so probes at the edges see both verdicts.
func portRange(r *rand.Rand, ls *labelSet) networkingv1.NetworkPolicyPort {
	proto, base := corev1.ProtocolTCP, int32(8000+r.IntN(1000))
	if len(ls.ports) > 0 {
		p := ls.ports[r.IntN(len(ls.ports))]
		proto, base = k8sProto(p.Protocol), int32(p.Port)
	}
	lo := base - int32(r.IntN(8))
	hi := base + int32(r.IntN(24))
	if r.IntN(4) == 0 {
		hi = base - 1
		lo = hi - int32(1+r.IntN(16))
	}
	lo = max(1, lo)
	hi = min(65535, max(lo+1, hi))
	np := numPort(proto, lo)
	np.EndPort = ptr(hi)
	return np
}

// namedPorts picks n of the label set's named ports. One time in ten an entry carries a
// protocol other than the name's, which by the package reading matches nothing.
func (w *world) namedPorts(r *rand.Rand, ls *labelSet, n int) []networkingv1.NetworkPolicyPort {
	var named []policy.ContainerPort
	for _, p := range ls.ports {
		if p.Name != "" {
			named = append(named, p)
		}
	}
	if len(named) == 0 {
		// The label set declares no names: use any name the spec has (it resolves to nothing
		// on these pods, which is a case worth having).
		for _, p := range w.spec.Ports {
			if p.Name != "" {
				proto, _ := policy.ParseProtocol(defaultProto(p.Protocol))
				named = append(named, policy.ContainerPort{Name: p.Name, Protocol: proto})
			}
		}
	}
	var out []networkingv1.NetworkPolicyPort
	for _, i := range r.Perm(len(named))[:min(n, len(named))] {
		p := named[i]
		proto := k8sProto(p.Protocol)
		if r.IntN(10) == 0 {
			proto = map[corev1.Protocol]corev1.Protocol{
				corev1.ProtocolTCP: corev1.ProtocolUDP, corev1.ProtocolUDP: corev1.ProtocolTCP, corev1.ProtocolSCTP: corev1.ProtocolTCP,
			}[proto]
		}
		out = append(out, networkingv1.NetworkPolicyPort{Protocol: &proto, Port: ptr(intstr.FromString(p.Name))})
	}
	return out
}

// externalBlock draws an ipBlock inside 203.0.113.0/24 (/24 to /28), with an except prefix
// half the time.
func externalBlock(r *rand.Rand) *networkingv1.IPBlock {
	return subBlock(r, ExternalRange, 24+r.IntN(5), 0)
}

// podBlock draws an ipBlock over pod addresses in use (/16 to /24 of 198.18.0.0/15), with an
// except prefix half the time: the CIDR fall-back that ipBlock also matches pod IPs.
func (w *world) podBlock(r *rand.Rand) *networkingv1.IPBlock {
	return subBlock(r, PodRange, 16+r.IntN(9), max(1, w.ipUsed))
}

// subBlock draws a prefix of length bits inside outer holding a random address among the first
// span addresses of outer (all of outer when span is 0), and half the time an except prefix
// 2..6 bits longer inside it.
func subBlock(r *rand.Rand, outer netip.Prefix, bits, span int) *networkingv1.IPBlock {
	size := 1 << (32 - outer.Bits())
	if span <= 0 || span > size-2 {
		span = size - 2
	}
	a := addOffset(outer.Addr(), 1+r.IntN(span))
	cidr := netip.PrefixFrom(a, bits).Masked()
	block := &networkingv1.IPBlock{CIDR: cidr.String()}
	if r.IntN(2) == 0 && bits < 30 {
		eb := min(32, bits+2+r.IntN(5))
		e := addOffset(cidr.Addr(), r.IntN(1<<(32-bits)))
		block.Except = []string{netip.PrefixFrom(e, eb).Masked().String()}
	}
	return block
}

func addOffset(a netip.Addr, off int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
