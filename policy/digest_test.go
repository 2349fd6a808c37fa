package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// digestDocs is a small cluster as YAML documents: namespaces, then pods and policies (one
// with an ipBlock, so CIDR identities take part).
func digestDocs() (namespaces, objects []string) {
	for _, ns := range []string{"a", "b"} {
		namespaces = append(namespaces, fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s, labels: {team: %s}}\n", ns, ns))
	}
	for i := range 6 {
		ns := []string{"a", "b"}[i%2]
		app := []string{"web", "db", "cache"}[i%3]
		objects = append(objects, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {namespace: %s, name: p%d, labels: {app: %s}}
spec: {containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 198.18.0.%d}
`, ns, i, app, 10+i))
	}
	objects = append(objects, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: a, name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}, {ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]
    ports: [{port: http}, {port: 9000, endPort: 9010}]
`, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: b, name: deny-egress}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {team: a}}}]
`)
	return namespaces, objects
}

func mustDigestState(t *testing.T, docs []string) *Compiler {
	t.Helper()
	c, _, err := LoadBytes([]byte(strings.Join(docs, "---\n")), "cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return mustCompile(t, c)
}

func TestStateDigestIgnoresTheOrderOfConstruction(t *testing.T) {
	ns, objs := digestDocs()
	a := mustDigestState(t, append(slices.Clone(ns), objs...)).State()
	rev := slices.Clone(objs)
	slices.Reverse(rev)
	b := mustDigestState(t, append(slices.Clone(ns), rev...)).State()
	da, db := a.Digest(), b.Digest()
	if da != db {
		t.Fatalf("the same cluster built in another order has another digest: %s vs %s", da, db)
	}
	if again := a.Digest(); again != da {
		t.Fatalf("digest differs between two calls: %s vs %s", da, again)
	}
	if len(da) != 64 {
		t.Fatalf("digest %q is not hex SHA-256", da)
	}
}

func TestStateDigestChangesWithTheState(t *testing.T) {
	ns, objs := digestDocs()
	comp := mustDigestState(t, append(ns, objs...))
	before := comp.State().Digest()
	seen := map[string]string{before: "the initial state"}
	for _, ev := range []Event{
		// A pod with an existing label set: one endpoint more, no entry changes.
		{Kind: PodAdd, Pod: &Pod{Namespace: "a", Name: "p9", Labels: map[string]string{"app": "db"}, IP: netip.MustParseAddr("198.18.0.99")}},
		// A new label set: a new identity.
		{Kind: PodRelabel, PodKey: "a/p9", Labels: map[string]string{"app": "batch"}},
		// Entries of one rule set only.
		{Kind: PolicyRemove, PolicyKey: "b/deny-egress"},
	} {
		if _, err := comp.Apply(ev); err != nil {
			t.Fatalf("%s: %v", ev.Kind, err)
		}
		d := comp.State().Digest()
		if prev, ok := seen[d]; ok {
			t.Fatalf("after %s the digest equals that of %s", ev.Kind, prev)
		}
		seen[d] = ev.Kind.String()
	}
}
