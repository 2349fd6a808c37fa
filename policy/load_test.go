package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netpolbench/policy"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const multiDoc = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: red}}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: web-1, labels: {app: web, pod-template-hash: 5d8f}}
spec:
  containers:
  - name: c
    image: nginx
    ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]
status: {podIP: 198.18.0.10}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: pending}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Service
metadata: {namespace: shop, name: web}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}]
`

func TestLoadReadsMultiDocumentYAMLAndSkipsOtherKinds(t *testing.T) {
	c, warnings, err := policy.Load(writeFile(t, "cluster.yaml", multiDoc))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pods) != 1 || len(c.Policies) != 1 {
		t.Fatalf("pods %d policies %d, want 1 and 1", len(c.Pods), len(c.Policies))
	}
	p := c.Pods["shop/web-1"]
	if p == nil || p.IP.String() != "198.18.0.10" {
		t.Fatalf("pod: %+v", p)
	}
	if n, ok := p.NamedPort("http", policy.ProtoTCP); !ok || n != 8080 {
		t.Errorf("named port http/TCP = %d %v, want 8080 (protocol defaults to TCP)", n, ok)
	}
	if _, ok := p.NamedPort("dns", policy.ProtoTCP); ok {
		t.Error("dns is UDP: it must not resolve for TCP")
	}
	if c.Namespaces["shop"].Labels[policy.NamespaceNameLabel] != "shop" {
		t.Error("namespace is missing the kubernetes.io/metadata.name label the API server sets")
	}
	joined := strings.Join(warnings, "\n")
	for _, want := range []string{"Service", "pending"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no warning about %s in:\n%s", want, joined)
		}
	}
	if len(warnings) != 2 {
		t.Errorf("%d warnings, want 2 (one line each):\n%s", len(warnings), joined)
	}
}

func TestLoadReadsKubectlListDocuments(t *testing.T) {
	list := `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: "y", labels: {ns: "y"}}
- apiVersion: v1
  kind: Pod
  metadata: {namespace: "y", name: a, labels: {pod: a}}
  spec: {containers: [{name: c, image: x}]}
  status: {podIP: 198.18.0.2}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {namespace: "y", name: deny}
  spec: {podSelector: {}}
`
	c, _, err := policy.Load(writeFile(t, "list.yaml", list))
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespaces["y"] == nil || c.Namespaces["y"].Labels["ns"] != "y" || c.Pods["y/a"] == nil || c.Policies["y/deny"] == nil {
		t.Fatalf("list not read: namespaces %v pods %v policies %v", c.NamespaceNames(), c.PodKeys(), c.PolicyKeys())
	}
}

func TestLoadWarnsAboutUnquotedYAML11Booleans(t *testing.T) {
	doc := "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {enabled: on}}\n"
	c, warnings, err := policy.Load(writeFile(t, "bool.yaml", doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Namespaces["a"].Labels["enabled"]; got != "true" {
		t.Errorf("label read as %q; kubectl reads an unquoted on as true", got)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "line 3") || !strings.Contains(warnings[0], "quote") {
		t.Errorf("want one warning naming line 3, got %q", warnings)
	}
}

// loadErrorCases are streams a load must refuse, and what the error must say. The fuzz target
// starts from them too.
var loadErrorCases = []struct {
	name, doc string
	want      []string
}{
	{"bad field type", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n",
		[]string{"bad.yaml", "document 1", "containers"}},
	{"unknown field", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelektor: {}}\n",
		[]string{"bad.yaml", "document 0", "line 4", "spec.podSelektor: unknown field"}},
	{"invalid cidr", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]\n",
		[]string{"document 0", "prod/p", "spec.ingress[0]", "invalid CIDR"}},
	{"except outside cidr", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.1.0/25]}}]}]\n",
		[]string{"prod/p", "spec.egress[0]", "not a strict subset"}},
	{"endPort below port", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 90, endPort: 80}]}]\n",
		[]string{"prod/p", "endPort", "below port"}},
	{"endPort with named port", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: http, endPort: 80}]}]\n",
		[]string{"prod/p", "endPort", "named port"}},
	{"unknown protocol", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 80, protocol: ICMP}]}]\n",
		[]string{"prod/p", "protocol", "ICMP"}},
	{"bad selector operator", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: Near}]}\n",
		[]string{"prod/p", "spec.podSelector"}},
	{"duplicate pod IP", "apiVersion: v1\nkind: Pod\nmetadata: {name: p1}\nspec: {containers: [{name: c, image: x}]}\nstatus: {podIP: 198.18.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p2}\nspec: {containers: [{name: c, image: x}]}\nstatus: {podIP: 198.18.0.1}\n",
		[]string{"document 1", "line 11", "default/p1", "document 0"}},
	{"missing kind", "apiVersion: v1\nmetadata: {name: a}\n", []string{"document 0", "kind"}},
	// "a"/"b/c" and "a/b"/"c" would share the key "a/b/c".
	{"policy name with a slash", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b/c, namespace: a}\nspec: {podSelector: {}}\n",
		[]string{"document 0", "a/b/c", "metadata.name"}},
	{"pod name not a DNS subdomain", "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1, namespace: a}\nspec: {containers: [{name: c, image: x}]}\nstatus: {podIP: 198.18.0.1}\n",
		[]string{"document 0", "a/Web_1", "metadata.name"}},
	{"namespace name not a DNS label", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
		[]string{"document 0", "a.b", "metadata.name"}},
	{"pod label key with a space", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {\"a b\": x}\nstatus: {podIP: 198.18.0.1}\n",
		[]string{"document 0", "line 5", "pod default/p", "metadata.labels", "a b"}},
	{"namespace label value starting with a dash", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels:\n    team: -red\n",
		[]string{"line 5", "namespace a", "metadata.labels", "-red"}},
	{"policy annotation key with a space", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  annotations: {\"a b\": x}\nspec: {podSelector: {}}\n",
		[]string{"line 5", "networkpolicy default/p", "metadata.annotations"}},
	{"namespace with a namespace", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  namespace: b\n",
		[]string{"line 5", "namespace a", "metadata.namespace", "not allowed"}},
	{"finished pod with an invalid label", "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {\"a b\": x}}\nstatus: {phase: Succeeded}\n",
		[]string{"pod default/p", "metadata.labels"}},
	{"container port protocol in lower case", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports:\n    - {containerPort: 80, protocol: tcp}\nstatus: {podIP: 198.18.0.1}\n",
		[]string{"line 8", "pod default/p", "spec.containers[0].ports[0].protocol", `"tcp"`}},
	{"container port name in upper case", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports:\n    - {containerPort: 80, name: HTTP}\nstatus: {podIP: 198.18.0.1}\n",
		[]string{"line 8", "spec.containers[0].ports[0].name", "HTTP"}},
	{"container port name twice in one container", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports:\n    - {containerPort: 80, name: http}\n    - {containerPort: 81, name: http}\nstatus: {podIP: 198.18.0.1}\n",
		[]string{"line 9", "spec.containers[0].ports[1].name", "twice"}},
	{"third container port of the wrong type", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports:\n    - containerPort: 80\n    - containerPort: 81\n    - containerPort: http\n",
		[]string{"line 10", "spec.containers.ports.containerPort", "got string"}},
	{"pod IP out of range", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  phase: Running\n  podIP: 198.18.0.300\n",
		[]string{"line 6", "status.podIP", "198.18.0.300"}},
	{"podIPs disagreeing with podIP", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  podIP: 198.18.0.1\n  podIPs:\n  - ip: 198.18.0.2\n",
		[]string{"line 7", "status.podIPs[0].ip", "differs"}},
	{"podIPs with two IPv4 addresses", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  podIP: 198.18.0.1\n  podIPs:\n  - ip: 198.18.0.1\n  - ip: 198.18.0.2\n",
		[]string{"line 8", "status.podIPs[1].ip", "other IP family"}},
	{"IPv6-only pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {phase: Running, podIP: \"fd00::1\"}\n",
		[]string{"line 4", "status.podIP", "no IPv4 address"}},
	{"more than two policyTypes", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress, Ingress]\n",
		[]string{"line 6", "spec.policyTypes", "two"}},
	{"IPv4-mapped IPv6 cidr", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}\n",
		[]string{"line 8", "spec.ingress[0].from[0].ipBlock.cidr", "IPv4-mapped"}},
	{"cidr with a leading zero", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/8\n        except: [010.1.0.0/16]\n",
		[]string{"line 10", "spec.egress[0].to[0].ipBlock.except[0]", "leading zero"}},
	{"peer without a selector", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - {}\n",
		[]string{"line 8", "spec.ingress[0].from[0]", "needs podSelector"}},
	{"selector value with a space", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  egress:\n  - to:\n    - namespaceSelector:\n        matchLabels: {team: \"red team\"}\n",
		[]string{"line 9", "spec.egress[0].to[0].namespaceSelector.matchLabels", "red team"}},
	{"namespace defined twice", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: y}}\n",
		[]string{"document 1", "line 5", "namespace a", "already defined at", "document 0: line 1"}},
	{"pod defined twice", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 198.18.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 198.18.0.2}\n",
		[]string{"document 1", "pod default/p", "already defined at", "document 0"}},
	{"policy defined twice in a List", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: p, namespace: a}\n  spec: {podSelector: {}}\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: p, namespace: a}\n  spec: {podSelector: {}}\n",
		[]string{"items[1]", "line 8", "networkpolicy a/p", "already defined at", "items[0]: line 4"}},
	{"unknown field in a List item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec:\n    hostNetwerk: true\n",
		[]string{"items[1]", "line 11", "spec.hostNetwerk: unknown field"}},
	{"field name in another case", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podselector: {}\n",
		[]string{"line 8", "spec.ingress[0].from[0].podselector: unknown field", "did you mean podSelector"}},
	// The typed decode ignores case: of the two, the last would select every pod.
	{"one field spelt twice", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  PodSelector: {}\n",
		[]string{"line 6", "spec.PodSelector: unknown field"}},
	{"key written twice", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  name: q\n",
		[]string{"document 1: line 9: Pod: yaml: key \"name\" already set in map"}},
	{"List items that are not a list", "apiVersion: v1\nkind: List\nitems: 3\n",
		[]string{"document 0", "line 1", "items"}},
	{"invalid document separator", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n--- {}\n",
		[]string{"bad.yaml", "line 4", "separator"}},
	// The parser puts this error on the line before the unclosed mapping's (its line 2 of the
	// document): line 6 of the file.
	{"YAML syntax error in a later document", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b\n",
		[]string{"document 1: line 6: yaml: did not find expected"}},
}

func TestLoadErrorsNameFileDocumentAndField(t *testing.T) {
	for _, tc := range loadErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := policy.Load(writeFile(t, "bad.yaml", tc.doc))
			if err == nil {
				t.Fatalf("loaded %v; want an error", c.PodKeys())
			}
			if testing.Verbose() {
				t.Log(err)
			}
			if c != nil {
				t.Error("a failed load returned a cluster: nothing may be applied")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// A dump without its Namespace objects lacks their labels; a policy that selects namespaces
// by one would silently match nothing.
func TestLoadWarnsWhenNamespaceLabelsAreMissing(t *testing.T) {
	pods := "apiVersion: v1\nkind: Namespace\nmetadata: {name: web, labels: {team: red}}\n---\n" +
		"apiVersion: v1\nkind: Pod\nmetadata: {namespace: db, name: a}\nstatus: {podIP: 198.18.0.1}\n---\n" +
		"apiVersion: v1\nkind: Pod\nmetadata: {namespace: cache, name: a}\nstatus: {podIP: 198.18.0.2}\n---\n"
	byName := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: web, name: by-name}\n" +
		"spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: db}}}]}]}\n"
	byLabel := "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: web, name: by-team}\n" +
		"spec: {podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]}\n"
	_, warnings, err := policy.LoadBytes([]byte(pods+byName), "dump.yaml")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("selecting namespaces by name: warnings %q, error %v; want none", warnings, err)
	}
	_, warnings, err = policy.LoadBytes([]byte(pods+byName+byLabel), "dump.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := "dump.yaml: document 4: line 20: networkpolicy web/by-team selects namespaces by label, but namespaces cache, db have no Namespace object here"
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], want) {
		t.Errorf("warnings %q, want one that starts %q", warnings, want)
	}
}

// Kubernetes 1.24 to 1.27 wrote a status into every NetworkPolicy; its dumps must load.
func TestLoadIgnoresTheNetworkPolicyStatusOfKubernetes124To127(t *testing.T) {
	doc := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {matchLabels: {app: db}}}\nstatus: {}\n"
	c, _, err := policy.LoadBytes([]byte(doc), "netpol.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if np := c.Policies["a/p"]; np == nil || np.Spec.PodSelector.MatchLabels["app"] != "db" {
		t.Errorf("policy read as %+v", np)
	}
}

func TestDefaultPolicyFollowsTheAPIServer(t *testing.T) {
	doc := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}]}]
  egress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b}
spec:
  podSelector: {}
  policyTypes: []
  egress: []
`
	c, _, err := policy.LoadBytes([]byte(doc), "t")
	if err != nil {
		t.Fatal(err)
	}
	a := c.Policies["default/a"]
	if a == nil {
		t.Fatal("policy without namespace not put in default")
	}
	if got := a.Spec.PolicyTypes; len(got) != 2 {
		t.Errorf("policyTypes %v, want [Ingress Egress] (egress rules present)", got)
	}
	if p := a.Spec.Ingress[0].Ports[0].Protocol; p == nil || *p != "TCP" {
		t.Errorf("protocol %v, want TCP", p)
	}
	if got := c.Policies["default/b"].Spec.PolicyTypes; len(got) != 1 || got[0] != "Ingress" {
		t.Errorf("empty policyTypes and empty egress: %v, want [Ingress]", got)
	}
}

// Documents are decoded in parallel; what a load returns must not depend on which finishes
// first.
func TestLoadReportsInDocumentOrder(t *testing.T) {
	var b strings.Builder
	for i := range 60 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns-%d, labels: {enabled: y}}\n---\n", i)
	}
	c, warnings, err := policy.Load(writeFile(t, "many.yaml", b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Namespaces) != 60 || len(warnings) != 60 {
		t.Fatalf("%d namespaces and %d warnings, want 60 of each", len(c.Namespaces), len(warnings))
	}
	for i, w := range warnings {
		if !strings.Contains(w, fmt.Sprintf("document %d:", i)) {
			t.Fatalf("warning %d is %q, want document %d's", i, w, i)
		}
	}
	bad := strings.Replace(b.String(), "name: ns-30,", "name: [ns-30],", 1)
	bad = strings.Replace(bad, "name: ns-40,", "name: [ns-40],", 1)
	for range 10 {
		_, _, err := policy.Load(writeFile(t, "bad.yaml", bad))
		if err == nil || !strings.Contains(err.Error(), "document 30") {
			t.Fatalf("error %v, want the first bad document's (30)", err)
		}
	}
}
