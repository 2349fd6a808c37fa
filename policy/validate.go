package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
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

// FieldError is an invalid field of an object. Object names it ("networkpolicy prod/web"),
// Field is the field's path in the object as written (spec.ingress[0].from[1].ipBlock.cidr;
// empty when the object as a whole is wrong): the loader turns the path into a line of the file.
type FieldError struct {
	Object string
	Field  string
	Detail string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Object + ": " + e.Detail
	}
	return e.Object + ": " + e.Field + ": " + e.Detail
}

// firstFieldError turns the API server's own validation errors into a FieldError: the first in
// field order, so that an object with several bad labels (a map) is reported the same way
// every time.
func firstFieldError(object string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	first := errs[0]
	for _, e := range errs[1:] {
		if e.Field < first.Field || e.Field == first.Field && e.ErrorBody() < first.ErrorBody() {
			first = e
		}
	}
	return &FieldError{Object: object, Field: first.Field, Detail: first.ErrorBody()}
}

// validateMeta checks an object's metadata as the API server does on create: name, namespace,
// labels, annotations, owner references, finalizers. A namespaced object without a namespace
// is read into "default", as kubectl would apply it.
func validateMeta(object string, m *metav1.ObjectMeta, namespaced bool, name apivalidation.ValidateNameFunc) error {
	if m.Name == "" {
		return &FieldError{Object: object, Field: "metadata.name", Detail: "required"}
	}
	ns := m.Namespace
	if namespaced && ns == "" {
		ns = "default"
	}
	// The common case, a name, a namespace and plain labels, is checked without the API's
	// full pass, which was most of the cost of adding a generated pod; whatever fails here
	// takes the full pass for its error.
	if plainLabels(m.Labels) && len(m.Annotations) == 0 && len(m.OwnerReferences) == 0 &&
		len(m.Finalizers) == 0 && len(m.ManagedFields) == 0 && m.GenerateName == "" && m.Generation >= 0 &&
		len(name(m.Name, false)) == 0 && (namespaced && len(apivalidation.ValidateNamespaceName(ns, false)) == 0 || !namespaced && ns == "") {
		return nil
	}
	meta := *m
	meta.Namespace = ns
	return firstFieldError(object, apivalidation.ValidateObjectMeta(&meta, namespaced, name, field.NewPath("metadata")))
}

// plainLabels reports whether every label is valid by a check simpler than the API's regular
// expressions: a key without a prefix and a value, each at most 63 characters of letters,
// digits, '-', '_' and '.', starting and ending with a letter or digit (a value may also be
// empty). It never passes a label the API refuses; one it does not pass may still be valid (a
// key with a prefix).
func plainLabels(lbl map[string]string) bool {
	for k, v := range lbl {
		if k == "" || !plainLabelWord(k) || v != "" && !plainLabelWord(v) {
			return false
		}
	}
	return true
}

func plainLabelWord(s string) bool {
	if len(s) > 63 || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validPortName is the API's port name check (an IANA service name: at most 15 lowercase
// letters, digits and single inner '-', at least one letter), with its reasons when it fails.
func validPortName(name string) []string {
	letter := false
	ok := len(name) >= 1 && len(name) <= 15 && name[0] != '-' && name[len(name)-1] != '-' && !strings.Contains(name, "--")
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		letter = letter || c >= 'a' && c <= 'z'
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if ok && letter {
		return nil
	}
	return validation.IsValidPortName(name)
}

// compilePolicy validates a defaulted policy and parses its selectors. Errors are
// *FieldError: they name the policy and the field.
func compilePolicy(np *networkingv1.NetworkPolicy) (*compiledPolicy, error) {
	key := np.Namespace + "/" + np.Name
	object := "networkpolicy " + key
	if np.Name == "" {
		object = "networkpolicy in namespace " + np.Namespace
	}
	fail := func(field string, format string, args ...any) error {
		return &FieldError{Object: object, Field: field, Detail: fmt.Sprintf(format, args...)}
	}
	// As the API server checks; names also key the cluster's maps as "namespace/name", which
	// only valid names keep unambiguous.
	if err := validateMeta(object, &np.ObjectMeta, true, apivalidation.NameIsDNSSubdomain); err != nil {
		return nil, err
	}
	cp := &compiledPolicy{key: key, ns: np.Namespace, np: np}
	keys := map[string]bool{}
	var err error
	if cp.subject, err = parseSelector(object, "spec.podSelector", &np.Spec.PodSelector, keys); err != nil {
		return nil, err
	}
	if len(np.Spec.PolicyTypes) > 2 {
		return nil, fail("spec.policyTypes", "may not have more than two entries, got %d", len(np.Spec.PolicyTypes))
	}
	for i, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			cp.applies[Ingress] = true
		case networkingv1.PolicyTypeEgress:
			cp.applies[Egress] = true
		default:
			return nil, fail(fmt.Sprintf("spec.policyTypes[%d]", i), "unknown type %q (want Ingress or Egress)", t)
		}
	}
	for i, r := range np.Spec.Ingress {
		cr, err := compileRule(i, ruleField{object, "spec.ingress", "from", i}, r.From, r.Ports, keys, cp)
		if err != nil {
			return nil, err
		}
		for _, p := range cr.ports {
			if p.name != "" {
				cp.hasNamedIngress = true
			}
		}
		cp.rules[Ingress] = append(cp.rules[Ingress], cr)
	}
	for i, r := range np.Spec.Egress {
		cr, err := compileRule(i, ruleField{object, "spec.egress", "to", i}, r.To, r.Ports, keys, cp)
		if err != nil {
			return nil, err
		}
		cp.rules[Egress] = append(cp.rules[Egress], cr)
	}
	for k := range keys {
		cp.podKeys = append(cp.podKeys, k)
	}
	sort.Strings(cp.podKeys)
	return cp, nil
}

// ruleField names a rule of a policy for its errors; the strings are only built on failure.
type ruleField struct {
	object string
	list   string // spec.ingress or spec.egress
	peers  string // from or to
	index  int
}

// path is the path of a field of the rule: sub is "" for the rule itself, or the part of the
// path below it, e.g. "from[1].ipBlock.cidr".
func (r ruleField) path(sub string) string {
	f := fmt.Sprintf("%s[%d]", r.list, r.index)
	if sub != "" {
		f += "." + sub
	}
	return f
}

func (r ruleField) fail(sub string, format string, args ...any) error {
	return &FieldError{Object: r.object, Field: r.path(sub), Detail: fmt.Sprintf(format, args...)}
}

func compileRule(index int, rf ruleField, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, keys map[string]bool, cp *compiledPolicy) (*compiledRule, error) {
	cr := &compiledRule{index: index}
	for j, p := range peers {
		pe, err := compilePeer(rf, j, p, keys)
		if err != nil {
			return nil, err
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
			return nil, rf.fail(fmt.Sprintf("ports[%d].%s", j, err.field), "%s", err.detail)
		}
		cr.ports = append(cr.ports, cport)
	}
	return cr, nil
}

func compilePeer(rf ruleField, j int, p networkingv1.NetworkPolicyPeer, keys map[string]bool) (*compiledPeer, error) {
	at := func(sub string) string {
		if sub == "" {
			return fmt.Sprintf("%s[%d]", rf.peers, j)
		}
		return fmt.Sprintf("%s[%d].%s", rf.peers, j, sub)
	}
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return nil, rf.fail(at(""), "ipBlock may not be combined with podSelector or namespaceSelector")
		}
		cidr, err := parseCIDR(p.IPBlock.CIDR)
		if err != nil {
			return nil, rf.fail(at("ipBlock.cidr"), "%v", err)
		}
		pe := &compiledPeer{ipBlock: true, cidr: cidr.Masked()}
		for k, e := range p.IPBlock.Except {
			ep, err := parseCIDR(e)
			if err != nil {
				return nil, rf.fail(at(fmt.Sprintf("ipBlock.except[%d]", k)), "%v", err)
			}
			ep = ep.Masked()
			if ep.Addr().Is4() != cidr.Addr().Is4() || ep.Bits() <= pe.cidr.Bits() || !pe.cidr.Contains(ep.Addr()) {
				return nil, rf.fail(at(fmt.Sprintf("ipBlock.except[%d]", k)), "%s is not a strict subset of cidr %s", e, pe.cidr)
			}
			pe.except = append(pe.except, ep)
		}
		return pe, nil
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return nil, rf.fail(at(""), "a peer needs podSelector, namespaceSelector or ipBlock")
	}
	pe := &compiledPeer{}
	var err error
	if p.PodSelector != nil {
		if pe.podSel, err = parseSelector(rf.object, rf.path(at("podSelector")), p.PodSelector, keys); err != nil {
			return nil, err
		}
	}
	if p.NamespaceSelector != nil {
		if pe.nsSel, err = parseSelector(rf.object, rf.path(at("namespaceSelector")), p.NamespaceSelector, nil); err != nil {
			return nil, err
		}
	}
	return pe, nil
}

// parseCIDR reads an ipBlock prefix. As the API server's strict validation, it refuses leading
// zeros (which some software reads as octal) and IPv4-mapped IPv6 prefixes (which software
// reads as IPv4 or as IPv6); bits set beyond the prefix length are masked off, as the API
// server did before it refused them (see CIDRWarnings).
func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("required")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %s", s, netipReason(err, "want an address and a prefix length, e.g. 10.0.0.0/8"))
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: an IPv4-mapped IPv6 prefix is ambiguous; write the IPv4 prefix", s)
	}
	return p, nil
}

// cidrWarnings notes the ipBlock prefixes of a valid policy that are written with bits set
// beyond their length (10.0.0.1/8): they are read as the masked prefix, as API servers did
// before they refused such values, so a dump of an older cluster can still hold them.
func cidrWarnings(np *networkingv1.NetworkPolicy) []string {
	var out []string
	check := func(field, s string) {
		if p, err := netip.ParsePrefix(s); err == nil && p != p.Masked() {
			out = append(out, fmt.Sprintf("%s: %s has bits set beyond the prefix length; read as %s", field, s, p.Masked()))
		}
	}
	peers := func(list, dir string, i int, ps []networkingv1.NetworkPolicyPeer) {
		for j, p := range ps {
			if p.IPBlock == nil {
				continue
			}
			check(fmt.Sprintf("%s[%d].%s[%d].ipBlock.cidr", list, i, dir, j), p.IPBlock.CIDR)
			for k, e := range p.IPBlock.Except {
				check(fmt.Sprintf("%s[%d].%s[%d].ipBlock.except[%d]", list, i, dir, j, k), e)
			}
		}
	}
	for i, r := range np.Spec.Ingress {
		peers("spec.ingress", "from", i, r.From)
	}
	for i, r := range np.Spec.Egress {
		peers("spec.egress", "to", i, r.To)
	}
	return out
}

// netipReason is what a net/netip parse error says is wrong (a leading zero, a prefix length
// out of range), without the calls it came through; or def when it says nothing more.
func netipReason(err error, def string) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 && i+3 < len(msg) {
		return msg[i+3:]
	}
	return def
}

// portError is a port entry's invalid field, relative to the entry.
type portError struct{ field, detail string }

func compilePort(p networkingv1.NetworkPolicyPort) (compiledPort, *portError) {
	var cp compiledPort
	fail := func(field, format string, args ...any) (compiledPort, *portError) {
		return cp, &portError{field, fmt.Sprintf(format, args...)}
	}
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
		return fail("protocol", "unsupported value %q (want TCP, UDP or SCTP)", proto)
	}
	if p.Port == nil {
		if p.EndPort != nil {
			return fail("endPort", "may not be set without port")
		}
		return cp, nil
	}
	if p.Port.Type == intstr.String {
		name := p.Port.StrVal
		if errs := validPortName(name); len(errs) > 0 {
			return fail("port", "invalid port name %q: %s", name, strings.Join(errs, "; "))
		}
		if p.EndPort != nil {
			return fail("endPort", "may not be used with a named port (%q)", name)
		}
		cp.name = name
		return cp, nil
	}
	port := p.Port.IntVal
	if port < 1 || port > 65535 {
		return fail("port", "%d is out of range 1-65535", port)
	}
	cp.port, cp.endPort = uint16(port), uint16(port)
	if p.EndPort != nil {
		end := *p.EndPort
		if end < port {
			return fail("endPort", "%d is below port %d", end, port)
		}
		if end > 65535 {
			return fail("endPort", "%d is out of range 1-65535", end)
		}
		cp.endPort = uint16(end)
	}
	return cp, nil
}

// parseSelector converts a LabelSelector with apimachinery's own code and records the label
// keys it references. at is the selector's field, for errors.
func parseSelector(object, at string, ls *metav1.LabelSelector, keys map[string]bool) (labels.Selector, error) {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		// The API server's validation of the same selector says which part is wrong.
		if ferr := firstFieldError(object, metav1validation.ValidateLabelSelector(ls, metav1validation.LabelSelectorValidationOptions{}, field.NewPath(at))); ferr != nil {
			return nil, ferr
		}
		return nil, &FieldError{Object: object, Field: at, Detail: err.Error()}
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
