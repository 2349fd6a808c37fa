package policy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"netpolbench/policy"
)

// podDoc is a Pod document in namespace shop; meta, spec and status are the insides of flow
// mappings (meta continues after the name).
func podDoc(name, meta, spec, status string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {namespace: shop, name: " + name + meta + "}\n" +
		"spec: {containers: [{name: c, image: x}]" + spec + "}\nstatus: {" + status + "}\n"
}

const terminating = `, deletionTimestamp: "2026-11-30T09:30:00Z", deletionGracePeriodSeconds: 30`

// endpointCases are the rules by which a load decides which pods are policy endpoints, as a
// network plugin does (README, Semantics). Every case is a stream of pods; the load keeps the
// endpoints (key=IP), warns once per skipped pod, or fails.
var endpointCases = []struct {
	name      string
	pods      []string
	endpoints []string
	// skipped are, in order, one substring of each warning.
	skipped []string
	err     []string
}{
	{name: "running pod is an endpoint",
		pods:      []string{podDoc("a", "", "", "phase: Running, podIP: 198.18.0.1")},
		endpoints: []string{"shop/a=198.18.0.1"}},
	{name: "pod without a phase but with an IP is an endpoint",
		pods:      []string{podDoc("a", "", "", "podIP: 198.18.0.1")},
		endpoints: []string{"shop/a=198.18.0.1"}},
	{name: "pending pod with an IP is an endpoint (its sandbox is up, policy applies from the start)",
		pods:      []string{podDoc("a", "", "", "phase: Pending, podIP: 198.18.0.1")},
		endpoints: []string{"shop/a=198.18.0.1"}},
	{name: "pending pod without an IP is skipped",
		pods:    []string{podDoc("a", "", "", "phase: Pending")},
		skipped: []string{"document 0: line 1: skipping pod shop/a: not a policy endpoint: no status.podIP yet (status.phase Pending)"}},
	{name: "pod without a status is skipped",
		pods:    []string{"apiVersion: v1\nkind: Pod\nmetadata: {namespace: shop, name: a}\n"},
		skipped: []string{"skipping pod shop/a: not a policy endpoint: no status.podIP"}},
	{name: "succeeded pod is skipped",
		pods:    []string{podDoc("a", "", "", "phase: Succeeded, podIP: 198.18.0.1")},
		skipped: []string{"skipping pod shop/a: not a policy endpoint: status.phase Succeeded"}},
	{name: "failed pod is skipped",
		pods:    []string{podDoc("a", "", "", "phase: Failed, podIP: 198.18.0.1")},
		skipped: []string{"skipping pod shop/a: not a policy endpoint: status.phase Failed"}},
	{name: "finished pod's IP may be a running pod's by now",
		pods: []string{podDoc("job", "", "", "phase: Succeeded, podIP: 198.18.0.1"),
			podDoc("web", "", "", "phase: Running, podIP: 198.18.0.1")},
		endpoints: []string{"shop/web=198.18.0.1"},
		skipped:   []string{"skipping pod shop/job"}},
	{name: "pod in phase Unknown with an IP is an endpoint (its node is out of touch, it may run)",
		pods:      []string{podDoc("a", "", "", "phase: Unknown, podIP: 198.18.0.1")},
		endpoints: []string{"shop/a=198.18.0.1"}},
	{name: "terminating pod is an endpoint until its grace period ends",
		pods:      []string{podDoc("a", terminating, "", "phase: Running, podIP: 198.18.0.1")},
		endpoints: []string{"shop/a=198.18.0.1"}},
	{name: "terminating pod gives way to a live pod holding its IP",
		pods: []string{podDoc("old", terminating, "", "phase: Running, podIP: 198.18.0.1"),
			podDoc("new", "", "", "phase: Running, podIP: 198.18.0.1")},
		endpoints: []string{"shop/new=198.18.0.1"},
		skipped:   []string{"document 0: line 1: skipping pod shop/old: terminating, and its IP 198.18.0.1 is held by pod shop/new (fuzz.yaml: document 1: line 7)"}},
	{name: "terminating pod gives way to a live pod holding its IP, listed first",
		pods: []string{podDoc("new", "", "", "phase: Running, podIP: 198.18.0.1"),
			podDoc("old", terminating, "", "phase: Running, podIP: 198.18.0.1")},
		endpoints: []string{"shop/new=198.18.0.1"},
		skipped:   []string{"document 1: line 7: skipping pod shop/old: terminating"}},
	{name: "two terminating pods with one IP are an error",
		pods: []string{podDoc("a", terminating, "", "phase: Running, podIP: 198.18.0.1"),
			podDoc("b", terminating, "", "phase: Running, podIP: 198.18.0.1")},
		err: []string{"document 1: line 11: pod shop/b: status.podIP: 198.18.0.1 is also the IP of pod shop/a (fuzz.yaml: document 0: line 1)"}},
	{name: "two running pods with one IP are an error",
		pods: []string{podDoc("a", "", "", "phase: Running, podIP: 198.18.0.1"),
			podDoc("b", "", "", "phase: Pending, podIP: 198.18.0.1")},
		err: []string{"document 1", "pod shop/b", "status.podIP", "pod shop/a"}},
	{name: "hostNetwork pods are skipped, though they share their node's IP",
		pods: []string{podDoc("proxy", "", ", hostNetwork: true", "phase: Running, podIP: 10.0.0.11"),
			podDoc("dns", "", ", hostNetwork: true", "phase: Running, podIP: 10.0.0.11")},
		skipped: []string{"skipping pod shop/proxy: not a policy endpoint: spec.hostNetwork", "skipping pod shop/dns: not a policy endpoint: spec.hostNetwork"}},
	{name: "dual-stack pod is an endpoint at its IPv4 address",
		pods:      []string{podDoc("a", "", "", `phase: Running, podIP: "fd00::5", podIPs: [{ip: "fd00::5"}, {ip: 198.18.0.5}]`)},
		endpoints: []string{"shop/a=198.18.0.5"}},
	{name: "IPv6-only pod is an error (the datapath is IPv4-only)",
		pods: []string{podDoc("a", "", "", `phase: Running, podIP: "fd00::5"`)},
		err:  []string{"pod shop/a", "status.podIP", "no IPv4 address"}},
	{name: "a pod that would be skipped must still be valid",
		pods: []string{podDoc("a", "", "", "phase: Succeeded, podIP: 198.18.0.256")},
		err:  []string{"pod shop/a", "status.podIP", "invalid address"}},
}

func TestLoadDecidesWhichPodsAreEndpoints(t *testing.T) {
	for _, tc := range endpointCases {
		t.Run(tc.name, func(t *testing.T) {
			c, warnings, err := policy.LoadBytes([]byte(strings.Join(tc.pods, "---\n")), "fuzz.yaml")
			if tc.err != nil {
				if err == nil {
					t.Fatalf("loaded pods %v; want an error", c.PodKeys())
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range c.PodKeys() {
				got = append(got, k+"="+c.Pods[k].IP.String())
			}
			if !slices.Equal(got, tc.endpoints) {
				t.Errorf("endpoints %v, want %v", got, tc.endpoints)
			}
			if len(warnings) != len(tc.skipped) {
				t.Fatalf("%d warnings, want %d:\n%s", len(warnings), len(tc.skipped), strings.Join(warnings, "\n"))
			}
			for i, w := range tc.skipped {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d is %q, want it to say %q", i, warnings[i], w)
				}
			}
		})
	}
}

// A dump as kubectl prints it, with the metadata and status the API server adds and a pod in
// every state a dump can hold.
func TestLoadReadsAKubectlDump(t *testing.T) {
	c, warnings, err := policy.Load("testdata/load/kubectl-dump.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range c.PodKeys() {
		got = append(got, k+"="+c.Pods[k].IP.String())
	}
	want := []string{"shop/api-0=198.18.0.12", "shop/api-old=198.18.0.13", "shop/dual-0=198.18.0.14",
		"shop/web-5d8f7c9b6-pulling=198.18.0.11", "shop/web-5d8f7c9b6-x2k9p=198.18.0.10"}
	if !slices.Equal(got, want) {
		t.Errorf("endpoints %v\nwant %v", got, want)
	}
	if got := c.PolicyKeys(); !slices.Equal(got, []string{"shop/api-egress", "shop/web"}) {
		t.Errorf("policies %v", got)
	}
	wantWarnings := []string{
		"document 0: items[3]: line 80: skipping pod shop/web-5d8f7c9b6-pending: not a policy endpoint: no status.podIP yet (status.phase Pending)",
		"document 0: items[5]: line 133: skipping pod shop/migrate-7xq2z: not a policy endpoint: status.phase Succeeded",
		"document 0: items[9]: line 207: skipping pod kube-system/kube-proxy-8m2lq: not a policy endpoint: spec.hostNetwork",
		"document 0: items[11]: line 266: networkpolicy shop/api-egress: spec.egress[0].to[0].ipBlock.cidr: 203.0.113.7/24 has bits set beyond the prefix length; read as 203.0.113.0/24",
	}
	if len(warnings) != len(wantWarnings) {
		t.Fatalf("warnings:\n%s", strings.Join(warnings, "\n"))
	}
	for i, w := range wantWarnings {
		if !strings.Contains(warnings[i], w) {
			t.Errorf("warning %d is %q, want it to say %q", i, warnings[i], w)
		}
	}
	if n, ok := c.Pods["shop/web-5d8f7c9b6-x2k9p"].NamedPort("http", policy.ProtoTCP); !ok || n != 8080 {
		t.Errorf("named port http = %d %v, want 8080", n, ok)
	}
}

// manyPolicies is a kubectl List of n NetworkPolicies over 100 namespaces, as
// `kubectl get netpol -A -o yaml` prints a big cluster's. Every richEvery-th policy has every
// rule shape; the others only select pods, as default-deny policies do.
func manyPolicies(n, richEvery int) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := range n {
		fmt.Fprintf(&b, "- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: p-%d, namespace: ns-%d, labels: {tier: t%d}}\n  spec:\n    podSelector: {matchLabels: {app: a%d}}\n",
			i, i%100, i%7, i%50)
		if i%richEvery != 0 {
			continue
		}
		fmt.Fprintf(&b, `    ingress:
    - from:
      - namespaceSelector: {matchLabels: {team: t%d}}
        podSelector: {matchExpressions: [{key: role, operator: In, values: [db, cache]}]}
      - ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}
      ports:
      - {port: %d}
      - {protocol: UDP, port: 53}
      - {port: http}
    egress:
    - to: [{podSelector: {}}]
      ports: [{port: 8000, endPort: 8100}]
`, i%13, 1+i%65535)
	}
	return []byte(b.String())
}

// TestLoadCopesWithAHundredThousandPolicies reads 10^5 policies in one List, as a big cluster's
// dump holds them (BenchmarkLoadPolicies times it).
func TestLoadCopesWithAHundredThousandPolicies(t *testing.T) {
	const n, richEvery = 100_000, 1000
	c, warnings, err := policy.LoadBytes(manyPolicies(n, richEvery), "netpol.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The dump holds no Namespace objects, and rich policies select namespaces by label.
	if len(warnings) != 1 || !strings.Contains(warnings[0], "items[0]: line 4: networkpolicy ns-0/p-0 selects namespaces by label, but namespaces ns-0, ns-1, ns-10 and 97 more have no Namespace object") {
		t.Errorf("warnings %q", warnings)
	}
	if len(c.Policies) != n || len(c.Namespaces) != 100 {
		t.Fatalf("%d policies in %d namespaces, want %d in 100", len(c.Policies), len(c.Namespaces), n)
	}
	for _, i := range []int{0, 1, n / 2, n - richEvery, n - 1} {
		np := c.Policies[fmt.Sprintf("ns-%d/p-%d", i%100, i)]
		if np == nil {
			t.Fatalf("policy p-%d missing", i)
		}
		if np.Labels["tier"] != fmt.Sprintf("t%d", i%7) || np.Spec.PodSelector.MatchLabels["app"] != fmt.Sprintf("a%d", i%50) {
			t.Errorf("policy p-%d read as %+v", i, np)
		}
		in, eg := np.Spec.Ingress, np.Spec.Egress
		if i%richEvery != 0 {
			if len(in)+len(eg) != 0 || len(np.Spec.PolicyTypes) != 1 {
				t.Errorf("policy p-%d read as %+v", i, np.Spec)
			}
			continue
		}
		if len(in) != 1 || len(in[0].From) != 2 || len(in[0].Ports) != 3 || in[0].Ports[0].Port.IntValue() != 1+i%65535 ||
			in[0].From[1].IPBlock.Except[0] != "203.0.113.128/25" || len(eg) != 1 || *eg[0].Ports[0].EndPort != 8100 ||
			len(np.Spec.PolicyTypes) != 2 {
			t.Errorf("policy p-%d read as %+v", i, np.Spec)
		}
	}
}

// BenchmarkLoadPolicies times reading a List of NetworkPolicies, as in
// TestLoadCopesWithAHundredThousandPolicies (rich=1000) and all with every rule shape (rich=1).
func BenchmarkLoadPolicies(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		for _, rich := range []int{1000, 1} {
			b.Run(fmt.Sprintf("policies=%d/rich=%d", n, rich), func(b *testing.B) {
				loadPolicies(b, manyPolicies(n, rich))
			})
		}
	}
}

func loadPolicies(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := policy.LoadBytes(data, "netpol.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}

// An error deep in a big stream still names its document and the line of the file.
func TestLoadNamesTheLineDeepInABigStream(t *testing.T) {
	const n = 100_000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "# document %d, only a comment\n---\n", i)
	}
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: {team: -red}\n")
	_, _, err := policy.LoadBytes([]byte(b.String()), "big.yaml")
	if err == nil {
		t.Fatal("loaded an invalid label")
	}
	if want := fmt.Sprintf("big.yaml: document %d: line %d: namespace a: metadata.labels", n, 2*n+5); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to say %q", err, want)
	}
}
