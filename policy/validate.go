package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// compiledPolicy is a defaulted, validated NetworkPolicy with its selectors parsed once.
type compiledPolicy struct {
	key     string
	ns      string
	np      *networkingv1.NetworkPolicy
	subject labels.Selector
	// applies says whether the policy applies in a direction (its policyTypes).
	applies [2]bool
	rules   [2][]*compiledRule
	// podKeys are the pod label keys the policy's pod selectors reference.
	podKeys []string
	// prefixes are every ipBlock cidr and except prefix (IPv4 only; IPv6 ones never match).
	prefixes []netip.Prefix
	// hasNamedIngress is set when an ingress rule uses a named port.
	hasNamedIngress bool
}

type compiledRule struct {
	index int
	// peers is empty when the rule allows every peer.
	peers []*compiledPeer
	// ports is empty when the rule allows every protocol and port.
	ports []compiledPort
}

type compiledPeer struct {
	ipBlock bool
	// For selector peers: nsSel nil means the policy's own namespace; podSel nil means
	// every pod.
	nsSel  labels.Selector
	podSel labels.Selector
	// For ipBlock peers.
	cidr   netip.Prefix
	except []netip.Prefix
}

type compiledPort struct {
	proto   Protocol
	port    uint16 // 0: every port
	endPort uint16
	name    string
}

// DefaultPolicy applies the API server's defaults to a copy of np: a port's protocol defaults
// to TCP; omitted (or empty) policyTypes mean Ingress, plus Egress when there are egress rules.
func DefaultPolicy(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np = np.DeepCopy()
	tcp := corev1.ProtocolTCP
	for i := range np.Spec.Ingress {
		for j := range np.Spec.Ingress[i].Ports {
			if np.Spec.Ingress[i].Ports[j].Protocol == nil {
				np.Spec.Ingress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	for i := range np.Spec.Egress {
		for j := range np.Spec.Egress[i].Ports {
			if np.Spec.Egress[i].Ports[j].Protocol == nil {
				np.Spec.Egress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	if np.Namespace == "" {
		np.Namespace = "default"
	}
	return np
}

// compilePolicy validates a defaulted policy and parses its selectors. Errors name the policy
// and the field.
func compilePolicy(np *networkingv1.NetworkPolicy) (*compiledPolicy, error) {
	key := np.Namespace + "/" + np.Name
	fail := func(field string, format string, args ...any) error {
		return fmt.Errorf("networkpolicy %s: %s: %s", key, field, fmt.Sprintf(format, args...))
	}
	if np.Name == "" {
		return nil, fmt.Errorf("networkpolicy in namespace %s: metadata.name: required", np.Namespace)
	}
	// As the API server checks: names key the cluster's maps as "namespace/name", which only
	// valid names keep unambiguous.
	if errs := validation.IsDNS1123Subdomain(np.Name); len(errs) > 0 {
		return nil, fail("metadata.name", "%s", strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(np.Namespace); np.Namespace != "" && len(errs) > 0 {
		return nil, fail("metadata.namespace", "%s", strings.Join(errs, "; "))
	}
	cp := &compiledPolicy{key: key, ns: np.Namespace, np: np}
	keys := map[string]bool{}
	var err error
	cp.subject, err = parseSelector(&np.Spec.PodSelector, keys)
	if err != nil {
		return nil, fail("spec.podSelector", "%v", err)
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			cp.applies[Ingress] = true
		case networkingv1.PolicyTypeEgress:
			cp.applies[Egress] = true
		default:
			return nil, fail("spec.policyTypes", "unknown type %q (want Ingress or Egress)", t)
		}
	}
	for i, r := range np.Spec.Ingress {
		field := fmt.Sprintf("spec.ingress[%d]", i)
		cr, err := compileRule(i, field, r.From, r.Ports, keys, cp)
		if err != nil {
			return nil, fail(field, "%v", err)
		}
		for _, p := range cr.ports {
			if p.name != "" {
				cp.hasNamedIngress = true
			}
		}
		cp.rules[Ingress] = append(cp.rules[Ingress], cr)
	}
	for i, r := range np.Spec.Egress {
		field := fmt.Sprintf("spec.egress[%d]", i)
		cr, err := compileRule(i, field, r.To, r.Ports, keys, cp)
		if err != nil {
			return nil, fail(field, "%v", err)
		}
		cp.rules[Egress] = append(cp.rules[Egress], cr)
	}
	for k := range keys {
		cp.podKeys = append(cp.podKeys, k)
	}
	sort.Strings(cp.podKeys)
	return cp, nil
}

func compileRule(index int, field string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, keys map[string]bool, cp *compiledPolicy) (*compiledRule, error) {
	cr := &compiledRule{index: index}
	for j, p := range peers {
		pe, err := compilePeer(p, keys)
		if err != nil {
			return nil, fmt.Errorf("peers[%d]: %w", j, err)
		}
		if pe.ipBlock && pe.cidr.Addr().Is4() {
			cp.prefixes = append(cp.prefixes, pe.cidr)
			cp.prefixes = append(cp.prefixes, pe.except...)
		}
		cr.peers = append(cr.peers, pe)
	}
	for j, p := range ports {
		cport, err := compilePort(p)
		if err != nil {
			return nil, fmt.Errorf("ports[%d]: %w", j, err)
		}
		cr.ports = append(cr.ports, cport)
	}
	return cr, nil
}

func compilePeer(p networkingv1.NetworkPolicyPeer, keys map[string]bool) (*compiledPeer, error) {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return nil, fmt.Errorf("ipBlock may not be combined with podSelector or namespaceSelector")
		}
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			return nil, fmt.Errorf("ipBlock.cidr: invalid CIDR %q", p.IPBlock.CIDR)
		}
		pe := &compiledPeer{ipBlock: true, cidr: cidr.Masked()}
		for k, e := range p.IPBlock.Except {
			ep, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("ipBlock.except[%d]: invalid CIDR %q", k, e)
			}
			ep = ep.Masked()
			if ep.Addr().Is4() != cidr.Addr().Is4() || ep.Bits() <= pe.cidr.Bits() || !pe.cidr.Contains(ep.Addr()) {
				return nil, fmt.Errorf("ipBlock.except[%d]: %s is not a strict subset of cidr %s", k, e, pe.cidr)
			}
			pe.except = append(pe.except, ep)
		}
		return pe, nil
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return nil, fmt.Errorf("a peer needs podSelector, namespaceSelector or ipBlock")
	}
	pe := &compiledPeer{}
	var err error
	if p.PodSelector != nil {
		if pe.podSel, err = parseSelector(p.PodSelector, keys); err != nil {
			return nil, fmt.Errorf("podSelector: %w", err)
		}
	}
	if p.NamespaceSelector != nil {
		if pe.nsSel, err = parseSelector(p.NamespaceSelector, nil); err != nil {
			return nil, fmt.Errorf("namespaceSelector: %w", err)
		}
	}
	return pe, nil
}

func compilePort(p networkingv1.NetworkPolicyPort) (compiledPort, error) {
	var cp compiledPort
	proto := "TCP"
	if p.Protocol != nil {
		proto = string(*p.Protocol)
	}
	switch corev1.Protocol(proto) {
	case corev1.ProtocolTCP:
		cp.proto = ProtoTCP
	case corev1.ProtocolUDP:
		cp.proto = ProtoUDP
	case corev1.ProtocolSCTP:
		cp.proto = ProtoSCTP
	default:
		return cp, fmt.Errorf("protocol: unsupported value %q (want TCP, UDP or SCTP)", proto)
	}
	if p.Port == nil {
		if p.EndPort != nil {
			return cp, fmt.Errorf("endPort: may not be set without port")
		}
		return cp, nil
	}
	if p.Port.Type == 1 { // intstr.String
		name := p.Port.StrVal
		if errs := validation.IsValidPortName(name); len(errs) > 0 {
			return cp, fmt.Errorf("port: invalid port name %q: %s", name, strings.Join(errs, "; "))
		}
		if p.EndPort != nil {
			return cp, fmt.Errorf("endPort: may not be used with a named port (%q)", name)
		}
		cp.name = name
		return cp, nil
	}
	port := p.Port.IntVal
	if port < 1 || port > 65535 {
		return cp, fmt.Errorf("port: %d is out of range 1-65535", port)
	}
	cp.port, cp.endPort = uint16(port), uint16(port)
	if p.EndPort != nil {
		end := *p.EndPort
		if end < port {
			return cp, fmt.Errorf("endPort: %d is below port %d", end, port)
		}
		if end > 65535 {
			return cp, fmt.Errorf("endPort: %d is out of range 1-65535", end)
		}
		cp.endPort = uint16(end)
	}
	return cp, nil
}

// parseSelector converts a LabelSelector with apimachinery's own code and records the label
// keys it references.
func parseSelector(ls *metav1.LabelSelector, keys map[string]bool) (labels.Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, err
	}
	if keys != nil {
		for k := range ls.MatchLabels {
			keys[k] = true
		}
		for _, e := range ls.MatchExpressions {
			keys[e.Key] = true
		}
	}
	return sel, nil
}
