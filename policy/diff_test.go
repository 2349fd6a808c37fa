package policy_test

import (
	"strings"
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestDiffFindsEveryKindOfDifferenceAndNoneBetweenCompiles: a compiler that applied random
// churn and a fresh compile of the cluster the churn left (other identity and rule-set
// numbers) have clusters without a difference, and any one change to a pod, a policy or a
// namespace shows unless its namespace is left out.
func TestDiffFindsEveryKindOfDifferenceAndNoneBetweenCompiles(t *testing.T) {
	w := policytest.NewWorld(4711, policytest.WorldOptions{})
	cl := w.Cluster(30, 6)
	a := policy.MustCompile(t, cl)
	applied := 0
	for step := range 40 {
		if _, err := a.Apply(w.Event(a.Cluster(), step)); err == nil {
			applied++
		}
	}
	b := policy.MustCompile(t, a.Cluster().Clone())
	if d := a.Cluster().Diff(b.Cluster(), nil); d != "" || applied < 20 {
		t.Fatalf("after %d events, a fresh compile differs: %q", applied, d)
	}
	for _, c := range []struct {
		what string
		ev   policy.Event
	}{
		{"pod", policy.Event{Kind: policy.PodRelabel, PodKey: b.Cluster().PodKeys()[0], Labels: map[string]string{"x": "y"}}},
		{"pod", policy.Event{Kind: policy.PodDelete, PodKey: b.Cluster().PodKeys()[1]}},
		{"policy", policy.Event{Kind: policy.PolicyRemove, PolicyKey: b.Cluster().PolicyKeys()[0]}},
		{"namespace", policy.Event{Kind: policy.NamespaceRelabel, Namespace: b.Cluster().NamespaceNames()[0], Labels: map[string]string{"team": "new"}}},
	} {
		other := policy.MustCompile(t, b.Cluster().Clone())
		if _, err := other.Apply(c.ev); err != nil {
			t.Fatal(err)
		}
		if d := a.Cluster().Diff(other.Cluster(), nil); !strings.HasPrefix(d, c.what) {
			t.Errorf("after a %s: diff %q, want one naming a %s", c.ev.Kind, d, c.what)
		}
		// Kept out, the changed namespace shows no difference.
		ns := c.ev.Namespace
		if ns == "" {
			ns, _, _ = strings.Cut(c.ev.PodKey+c.ev.PolicyKey, "/")
		}
		if d := a.Cluster().Diff(other.Cluster(), func(n string) bool { return n != ns }); d != "" {
			t.Errorf("after a %s in %s, with %s left out: diff %q", c.ev.Kind, ns, ns, d)
		}
	}
}
