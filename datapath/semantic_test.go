package datapath

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

var (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP

	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	both        = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
)

// semanticPods is the small cluster of the semantic tables: two namespaces labelled
// team=red, one team=blue, named ports on some pods.
func semanticPods() (map[string]map[string]string, []podSpec) {
	ns := map[string]map[string]string{"x": {"team": "red"}, "y": {"team": "blue"}, "z": {"team": "red"}}
	pods := []podSpec{
		{ns: "x", name: "a1", ip: "198.18.0.11", labels: map[string]string{"app": "a"}, ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 80}, {Name: "dns", ContainerPort: 53, Protocol: udp}, {Name: "metrics", ContainerPort: 8500}}},
		{ns: "x", name: "b1", ip: "198.18.0.12", labels: map[string]string{"app": "b"}},
		{ns: "y", name: "a2", ip: "198.18.0.21", labels: map[string]string{"app": "a"}, ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080}, {Name: "web", ContainerPort: 8080}}},
		{ns: "y", name: "c1", ip: "198.18.0.22", labels: map[string]string{"app": "c"}, ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 80, Protocol: sctp}}},
		{ns: "z", name: "d1", ip: "198.18.0.31", labels: map[string]string{"app": "d"}},
	}
	return ns, pods
}

var semanticAddrs = addrs("198.18.0.11", "198.18.0.12", "198.18.0.21", "198.18.0.22", "198.18.0.31",
	"198.18.0.99", "203.0.113.10", "203.0.113.200")

var semanticCols = []l4{
	{policy.ProtoTCP, 80}, {policy.ProtoTCP, 8080}, {policy.ProtoTCP, 8500}, {policy.ProtoTCP, 9999},
	{policy.ProtoUDP, 53}, {policy.ProtoUDP, 80}, {policy.ProtoSCTP, 80}, {policy.ProtoICMP, 0},
}

type semanticCase struct {
	name string
	pols []*networkingv1.NetworkPolicy
}

var semanticCases = []semanticCase{
	{name: "NoPolicyAllowsEverything"},
	{name: "DefaultDenyIngressIsolatesNamespace", pols: []*networkingv1.NetworkPolicy{
		netpol("x", "deny", nil, ingressOnly, nil, nil)}},
	{name: "IngressFromPodSelectorOnOnePort", pols: []*networkingv1.NetworkPolicy{
		netpol("x", "a-from-b", map[string]string{"app": "a"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "b"})}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 80)}}}, nil)}},
	{name: "IngressFromNamespaceSelector", pols: []*networkingv1.NetworkPolicy{
		netpol("x", "from-blue", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{nsPeer(map[string]string{"team": "blue"})}}}, nil)}},
	{name: "IngressFromIPBlockWithExceptMatchesPodsToo", pols: []*networkingv1.NetworkPolicy{
		netpol("x", "cidr", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{cidrPeer("203.0.113.0/24", "203.0.113.128/25"), cidrPeer("198.18.0.16/28", "198.18.0.30/31")},
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, 80), protoOnly(udp)}}}, nil)}},
	{name: "EgressToNamedPortResolvesPerDestination", pols: []*networkingv1.NetworkPolicy{
		netpol("x", "eg-named", nil, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{nsPeer(nil)}, Ports: []networkingv1.NetworkPolicyPort{namedPort(tcp, "http"), namedPort(udp, "dns"), namedPort(sctp, "http")}}})}},
	{name: "EgressNamedPortNeverMatchesOutsideTheCluster", pols: []*networkingv1.NetworkPolicy{
		netpol("y", "eg-named-any", nil, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
			Ports: []networkingv1.NetworkPolicyPort{namedPort(tcp, "web"), namedPort(tcp, "metrics")}}})}},
	{name: "PortRangesNarrowAndWide", pols: []*networkingv1.NetworkPolicy{
		netpol("x", "ranges", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			Ports: []networkingv1.NetworkPolicyPort{portRange(tcp, 79, 81), portRange(tcp, 8000, 9000), portRange(udp, 50, 60)}}}, nil)}},
	{name: "EgressToWorldExceptPods", pols: []*networkingv1.NetworkPolicy{
		netpol("y", "world", nil, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{cidrPeer("0.0.0.0/0", "198.18.0.0/15")}}})}},
	{name: "SCTPPortAndProtocolWithoutPort", pols: []*networkingv1.NetworkPolicy{
		netpol("y", "sctp", map[string]string{"app": "c"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			Ports: []networkingv1.NetworkPolicyPort{port(sctp, 80), protoOnly(udp)}}}, nil)}},
	{name: "EmptyIngressRuleAllowsAllWhileEgressIsolated", pols: []*networkingv1.NetworkPolicy{
		netpol("z", "open-in", nil, both, []networkingv1.NetworkPolicyIngressRule{{}}, nil)}},
	{name: "IngressAndEgressBothChecked", pols: []*networkingv1.NetworkPolicy{
		netpol("x", "a-eg", map[string]string{"app": "a"}, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{podPeer(nil)}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 8080), port(tcp, 80)}}}),
		netpol("x", "b-in", map[string]string{"app": "b"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "a"})}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 80)}}}, nil),
		netpol("y", "all-in", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{nsPeer(map[string]string{"team": "red"})}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 8080)}}}, nil)}},
}

// TestSemanticTablesAgreeWithReference runs every semantic case's truth table through
// BPF_PROG_TEST_RUN in both layouts.
func TestSemanticTablesAgreeWithReference(t *testing.T) {
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		for _, tc := range semanticCases {
			t.Run(string(layout)+"/"+tc.name, func(t *testing.T) {
				ns, pods := semanticPods()
				c := buildCluster(t, ns, pods, tc.pols)
				comp := policytest.MustCompile(t, c)
				d := mustSynced(t, comp.State(), Options{Layout: layout})
				truthTable(t, c, d, semanticAddrs, semanticCols)
			})
		}
	}
}
