package policytest

import (
	"fmt"
	"strconv"
	"strings"

	"netpolbench/policy"
)

// Case is a set of policies applied to the model, with expectations written by hand from the
// NetworkPolicy spec (and the readings documented in package policy).
type Case struct {
	Name string
	// Policies is multi-document YAML of NetworkPolicy objects.
	Policies string
	// Expect lines read "FROM -> TO PROTO/PORT allow|deny" (ICMP without a port), e.g.
	// "x/b -> x/a tcp/80 allow" or "203.0.113.10 -> x/a icmp deny".
	Expect []string
}

// Expectation is a parsed Expect line.
type Expectation struct {
	Probe Probe
	Want  policy.Verdict
}

// Expectations parses the case's Expect lines.
func (c Case) Expectations() ([]Expectation, error) {
	var out []Expectation
	for _, line := range c.Expect {
		f := strings.Fields(line)
		if len(f) != 5 || f[1] != "->" {
			return nil, fmt.Errorf("case %s: bad expectation %q", c.Name, line)
		}
		var p Probe
		p.From, p.To = Endpoint(f[0]), Endpoint(f[2])
		protoStr, portStr, hasPort := strings.Cut(f[3], "/")
		proto, err := policy.ParseProtocol(protoStr)
		if err != nil {
			return nil, fmt.Errorf("case %s: %q: %w", c.Name, line, err)
		}
		p.Proto = proto
		if hasPort {
			n, err := strconv.ParseUint(portStr, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("case %s: %q: bad port", c.Name, line)
			}
			p.Port = uint16(n)
		}
		var want policy.Verdict
		switch f[4] {
		case "allow":
			want = policy.Allow
		case "deny":
			want = policy.Deny
		default:
			return nil, fmt.Errorf("case %s: %q: want allow or deny", c.Name, line)
		}
		out = append(out, Expectation{p, want})
	}
	return out, nil
}

// Cluster returns the model with the case's policies added.
func (c Case) Cluster() (*policy.Cluster, error) {
	model := Model()
	pols, _, err := policy.LoadBytes([]byte(c.Policies), c.Name)
	if err != nil {
		return nil, err
	}
	for _, k := range pols.PolicyKeys() {
		if err := model.AddPolicy(pols.Policies[k]); err != nil {
			return nil, fmt.Errorf("case %s: %w", c.Name, err)
		}
	}
	return model, nil
}

const header = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"

func np(ns, name, spec string) string {
	return header + "metadata: {namespace: \"" + ns + "\", name: " + name + "}\nspec:\n" + spec + "\n---\n"
}

// Cases are the semantic truth tables.
var Cases = []Case{
	{Name: "NoPolicyAllowsEverything", Policies: "",
		Expect: []string{"x/a -> y/b tcp/80 allow", "203.0.113.10 -> z/c udp/81 allow", "y/a -> 203.0.113.200 sctp/80 allow", "x/a -> x/b icmp allow"}},
	{Name: "DefaultDenyIngressIsolatesEveryPodInNamespace",
		Policies: np("x", "deny-in", "  podSelector: {}\n  policyTypes: [Ingress]"),
		Expect:   []string{"y/a -> x/a tcp/80 deny", "x/b -> x/a tcp/80 deny", "203.0.113.10 -> x/c udp/81 deny", "x/a -> y/a tcp/80 allow", "x/a -> x/b icmp deny"}},
	{Name: "DefaultDenyEgressBlocksEverythingLeaving",
		Policies: np("x", "deny-out", "  podSelector: {}\n  policyTypes: [Egress]"),
		Expect:   []string{"x/a -> y/a tcp/80 deny", "x/a -> 203.0.113.10 udp/80 deny", "y/a -> x/a tcp/80 allow"}},
	{Name: "DefaultDenyBothDirections",
		Policies: np("x", "deny-all", "  podSelector: {}\n  policyTypes: [Ingress, Egress]"),
		Expect:   []string{"x/a -> x/b tcp/80 deny", "y/a -> x/a tcp/80 deny", "x/a -> y/a tcp/80 deny"}},
	{Name: "EmptyIngressRuleAllowsAllSources",
		Policies: np("x", "deny-in", "  podSelector: {}\n  policyTypes: [Ingress]") + np("x", "allow-all", "  podSelector: {}\n  ingress: [{}]"),
		Expect:   []string{"y/a -> x/a tcp/80 allow", "203.0.113.10 -> x/a sctp/81 allow", "z/c -> x/b icmp allow"}},
	{Name: "PodSelectorPeerAllowsMatchingPodsOfPolicyNamespace",
		Policies: np("x", "a-from-b", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}"),
		Expect:   []string{"x/b -> x/a tcp/80 allow", "x/c -> x/a tcp/80 deny", "x/b -> x/c tcp/80 allow"}},
	{Name: "PodSelectorPeerDoesNotMatchOtherNamespaces",
		Policies: np("x", "a-from-b", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {pod: b}}"),
		Expect:   []string{"y/b -> x/a tcp/80 deny", "z/b -> x/a udp/81 deny", "203.0.113.10 -> x/a tcp/80 deny"}},
	{Name: "NamespaceSelectorPeerAllowsEveryPodOfMatchingNamespaces",
		Policies: np("x", "from-y", "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}"),
		Expect:   []string{"y/a -> x/a tcp/80 allow", "y/c -> x/b udp/81 allow", "z/a -> x/a tcp/80 deny", "x/b -> x/a tcp/80 deny"}},
	{Name: "EmptyNamespaceSelectorMeansAllNamespacesButNotExternal",
		Policies: np("x", "from-cluster", "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {}"),
		Expect:   []string{"z/c -> x/a tcp/80 allow", "x/b -> x/a tcp/80 allow", "203.0.113.10 -> x/a tcp/80 deny"}},
	{Name: "NamespaceAndPodSelectorInOnePeerAreANDed",
		Policies: np("x", "from-y-b", "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}\n      podSelector: {matchLabels: {pod: b}}"),
		Expect:   []string{"y/b -> x/a tcp/80 allow", "y/a -> x/a tcp/80 deny", "x/b -> x/a tcp/80 deny", "z/b -> x/a tcp/80 deny"}},
	{Name: "SeparatePeersAreORed",
		Policies: np("x", "from-y-or-b", "  podSelector: {}\n  ingress:\n  - from:\n    - namespaceSelector: {matchLabels: {ns: \"y\"}}\n    - podSelector: {matchLabels: {pod: b}}"),
		Expect:   []string{"y/a -> x/a tcp/80 allow", "x/b -> x/a tcp/80 allow", "x/c -> x/a tcp/80 deny", "z/b -> x/a tcp/80 deny"}},
	{Name: "MatchExpressionsInSelectsListedValues",
		Policies: np("x", "in", "  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}\n  ingress:\n  - from:\n    - podSelector: {matchExpressions: [{key: pod, operator: In, values: [c]}]}"),
		Expect:   []string{"x/c -> x/a tcp/80 allow", "x/b -> x/a tcp/80 deny", "x/a -> x/c tcp/80 allow", "y/c -> x/b tcp/80 deny"}},
	{Name: "MatchExpressionsNotInSelectsTheRest",
		Policies: np("x", "notin", "  podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}\n  ingress:\n  - from:\n    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [x, \"y\"]}]}"),
		Expect:   []string{"z/a -> x/b tcp/80 allow", "y/a -> x/b tcp/80 deny", "y/a -> x/a tcp/80 allow", "x/c -> x/b tcp/80 deny"}},
	{Name: "MatchExpressionsExistsAndDoesNotExist",
		Policies: np("x", "exists", "  podSelector: {matchExpressions: [{key: pod, operator: Exists}]}\n  ingress:\n  - from:\n    - podSelector: {matchExpressions: [{key: missing, operator: DoesNotExist}]}\n      namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}"),
		Expect:   []string{"z/a -> x/b tcp/80 allow", "x/a -> x/c tcp/81 allow", "203.0.113.10 -> x/a tcp/80 deny"}},
	{Name: "PortRestrictsIngressToThatPortAndProtocol",
		Policies: np("x", "port80", "  podSelector: {}\n  ingress:\n  - ports: [{port: 80, protocol: TCP}]"),
		Expect:   []string{"y/a -> x/a tcp/80 allow", "y/a -> x/a tcp/81 deny", "y/a -> x/a udp/80 deny", "y/a -> x/a icmp deny", "203.0.113.10 -> x/a tcp/80 allow"}},
	{Name: "PortProtocolDefaultsToTCP",
		Policies: np("x", "port81", "  podSelector: {}\n  ingress:\n  - ports: [{port: 81}]"),
		Expect:   []string{"y/a -> x/a tcp/81 allow", "y/a -> x/a udp/81 deny", "y/a -> x/a sctp/81 deny"}},
	{Name: "ProtocolWithoutPortAllowsEveryPortOfIt",
		Policies: np("x", "udp", "  podSelector: {}\n  ingress:\n  - ports: [{protocol: UDP}]"),
		Expect:   []string{"y/a -> x/a udp/80 allow", "y/a -> x/a udp/81 allow", "y/a -> x/a tcp/80 deny", "y/a -> x/a icmp deny"}},
	{Name: "EndPortAllowsAnInclusiveRange",
		Policies: np("x", "range", "  podSelector: {}\n  ingress:\n  - ports: [{port: 79, endPort: 80, protocol: SCTP}]"),
		Expect:   []string{"y/a -> x/a sctp/80 allow", "y/a -> x/a sctp/81 deny", "y/a -> x/a tcp/80 deny"}},
	{Name: "EndPortRangeCoversBothModelPorts",
		Policies: np("x", "range", "  podSelector: {}\n  ingress:\n  - ports: [{port: 80, endPort: 81, protocol: UDP}]"),
		Expect:   []string{"y/a -> x/a udp/80 allow", "y/a -> x/a udp/81 allow", "y/a -> x/a tcp/81 deny"}},
	{Name: "NamedPortResolvesAgainstDestinationPodOnIngress",
		Policies: np("x", "named", "  podSelector: {}\n  ingress:\n  - ports: [{port: serve-81-tcp}]"),
		Expect:   []string{"y/a -> x/a tcp/81 allow", "y/a -> x/a tcp/80 deny", "y/a -> x/a udp/81 deny"}},
	{Name: "NamedPortWithOtherProtocolMatchesNothing",
		Policies: np("x", "named-mismatch", "  podSelector: {}\n  ingress:\n  - ports: [{port: serve-80-tcp, protocol: UDP}]"),
		Expect:   []string{"y/a -> x/a udp/80 deny", "y/a -> x/a tcp/80 deny"}},
	{Name: "NamedPortOnEgressResolvesAgainstDestinationPod",
		Policies: np("x", "named-out", "  podSelector: {}\n  egress:\n  - ports: [{port: serve-80-udp, protocol: UDP}]"),
		Expect:   []string{"x/a -> y/b udp/80 allow", "x/a -> y/b udp/81 deny", "x/a -> y/b tcp/80 deny"}},
	{Name: "NamedPortNeverMatchesExternalDestination",
		Policies: np("x", "named-world", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]\n    ports: [{port: serve-80-tcp}]"),
		Expect:   []string{"x/a -> 203.0.113.10 tcp/80 deny", "x/a -> y/a tcp/80 allow", "x/a -> y/a tcp/81 deny"}},
	{Name: "IPBlockAllowsExternalSources",
		Policies: np("x", "from-ext", "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 203.0.113.0/24}}]"),
		Expect:   []string{"203.0.113.10 -> x/a tcp/80 allow", "203.0.113.200 -> x/b udp/81 allow", "y/a -> x/a tcp/80 deny"}},
	{Name: "IPBlockExceptCarvesOutAddresses",
		Policies: np("x", "except", "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]"),
		Expect:   []string{"203.0.113.10 -> x/a tcp/80 allow", "203.0.113.200 -> x/a tcp/80 deny"}},
	{Name: "IPBlockAlsoMatchesPodIPs",
		Policies: np("x", "pods-by-ip", "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 198.18.0.16/28}}]"),
		Expect:   []string{"y/a -> x/a tcp/80 allow", "y/c -> x/b udp/81 allow", "z/a -> x/a tcp/80 deny", "x/b -> x/a tcp/80 deny"}},
	{Name: "IPBlockExceptAppliesToPodIPsToo",
		Policies: np("x", "pods-except", "  podSelector: {}\n  ingress:\n  - from: [{ipBlock: {cidr: 198.18.0.0/24, except: [198.18.0.32/28]}}]"),
		Expect:   []string{"y/a -> x/a tcp/80 allow", "z/a -> x/a tcp/80 deny", "203.0.113.10 -> x/a tcp/80 deny"}},
	{Name: "NestedIPBlocksInOtherPoliciesDoNotLeak",
		Policies: np("x", "wide", "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.0/28]}}]") +
			np("x", "narrow", "  podSelector: {matchLabels: {pod: b}}\n  ingress:\n  - from: [{ipBlock: {cidr: 203.0.113.8/29}}]"),
		Expect: []string{"203.0.113.10 -> x/a tcp/80 deny", "203.0.113.10 -> x/b tcp/80 allow", "203.0.113.200 -> x/a tcp/80 allow", "203.0.113.200 -> x/b tcp/80 deny"}},
	{Name: "EgressToIPBlockAllowsExternalDestination",
		Policies: np("x", "to-ext", "  podSelector: {}\n  egress:\n  - to: [{ipBlock: {cidr: 203.0.113.0/25}}]"),
		Expect:   []string{"x/a -> 203.0.113.10 tcp/80 allow", "x/a -> 203.0.113.200 tcp/80 deny", "x/a -> y/a tcp/80 deny"}},
	{Name: "EgressIsolationDeniesWorldWithoutIPBlock",
		Policies: np("x", "to-y", "  podSelector: {}\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]"),
		Expect:   []string{"x/a -> y/a tcp/80 allow", "x/a -> 203.0.113.10 tcp/80 deny", "x/a -> z/a tcp/80 deny"}},
	{Name: "EgressOnlyPolicyTypesIgnoreIngressRules",
		Policies: np("x", "egress-only", "  podSelector: {}\n  policyTypes: [Egress]\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: none}}}]\n  egress: [{}]"),
		Expect:   []string{"y/a -> x/a tcp/80 allow", "x/a -> y/a tcp/80 allow"}},
	{Name: "IngressOnlyPolicyTypesIgnoreEgressRules",
		Policies: np("x", "ingress-only", "  podSelector: {}\n  policyTypes: [Ingress]\n  ingress: [{}]\n  egress:\n  - to: [{podSelector: {matchLabels: {pod: none}}}]"),
		Expect:   []string{"x/a -> y/a tcp/80 allow", "x/a -> 203.0.113.10 udp/80 allow"}},
	{Name: "OmittedPolicyTypesWithEgressRulesMeanBoth",
		Policies: np("x", "both", "  podSelector: {matchLabels: {pod: a}}\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]"),
		Expect:   []string{"y/a -> x/a tcp/80 deny", "x/a -> y/a tcp/80 allow", "x/a -> z/a tcp/80 deny", "x/b -> z/a tcp/80 allow"}},
	{Name: "PodReachingItsOwnIPIsAlwaysAllowed",
		Policies: np("x", "deny-all", "  podSelector: {}\n  policyTypes: [Ingress, Egress]"),
		Expect:   []string{"x/a -> x/a tcp/80 allow", "x/b -> x/b udp/81 allow", "x/a -> x/b tcp/80 deny"}},
	{Name: "BothEgressOfSourceAndIngressOfDestinationMustAllow",
		Policies: np("x", "deny-out", "  podSelector: {}\n  policyTypes: [Egress]") + np("y", "allow-in", "  podSelector: {}\n  ingress: [{}]"),
		Expect:   []string{"x/a -> y/a tcp/80 deny", "z/a -> y/a tcp/80 allow", "y/a -> x/a tcp/80 allow"}},
	{Name: "PoliciesAreAdditive",
		Policies: np("x", "from-b", "  podSelector: {}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: b}}}]\n    ports: [{port: 80}]") +
			np("x", "from-c", "  podSelector: {}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: c}}}]\n    ports: [{port: 81}]"),
		Expect: []string{"x/b -> x/a tcp/80 allow", "x/b -> x/a tcp/81 deny", "x/c -> x/a tcp/81 allow", "x/c -> x/a tcp/80 deny"}},
	{Name: "ICMPMatchesOnlyRulesWithoutPorts",
		Policies: np("x", "mixed", "  podSelector: {}\n  ingress:\n  - from: [{podSelector: {matchLabels: {pod: b}}}]\n  - from: [{podSelector: {matchLabels: {pod: c}}}]\n    ports: [{protocol: TCP}]"),
		Expect:   []string{"x/b -> x/a icmp allow", "x/c -> x/a icmp deny", "x/c -> x/a tcp/81 allow"}},
	{Name: "PolicySelectsOnlyPodsOfItsOwnNamespace",
		Policies: np("y", "deny-in", "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]"),
		Expect:   []string{"x/b -> y/a tcp/80 deny", "x/b -> x/a tcp/80 allow", "x/b -> z/a tcp/80 allow"}},
	{Name: "RulesCombinePeersAndPortsWithinOneRuleOnly",
		Policies: np("x", "two-rules", "  podSelector: {}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: \"y\"}}}]\n    ports: [{port: 80, protocol: UDP}]\n  - from: [{namespaceSelector: {matchLabels: {ns: z}}}]\n    ports: [{port: 81, protocol: UDP}]"),
		Expect:   []string{"y/a -> x/a udp/80 allow", "y/a -> x/a udp/81 deny", "z/a -> x/a udp/81 allow", "z/a -> x/a udp/80 deny"}},
	{Name: "SCTPPortRule",
		Policies: np("x", "sctp", "  podSelector: {}\n  ingress:\n  - ports: [{port: 81, protocol: SCTP}]"),
		Expect:   []string{"y/a -> x/a sctp/81 allow", "y/a -> x/a sctp/80 deny", "y/a -> x/a tcp/81 deny"}},
}
