package policy_test

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// nsRelabel is a random relabel of one of the world's namespaces (x, y, z): the team label
// its namespace selectors use changes, goes or comes, and sometimes a label no selector uses
// rides along.
func nsRelabel(w *policytest.World) policy.Event {
	r := w.Rand()
	lbl := map[string]string{}
	if r.IntN(4) != 0 {
		lbl["team"] = []string{"red", "blue", "green"}[r.IntN(3)]
	}
	if r.IntN(3) == 0 {
		lbl["owner"] = []string{"ops", "dev"}[r.IntN(2)]
	}
	return policy.Event{Kind: policy.NamespaceRelabel, Namespace: []string{"x", "y", "z"}[r.IntN(3)], Labels: lbl}
}

// TestNamespaceRelabelKeepsTheStateAFreshCompileWould mixes namespace relabels into random
// churn: after every event the compiled lookup gives the reference verdict, the delta brings a
// backend's copy to the new state, the compiler's bookkeeping holds, and after every relabel
// the state renders as a fresh compile of the cluster does.
func TestNamespaceRelabelKeepsTheStateAFreshCompileWould(t *testing.T) {
	seeds := 30
	if testing.Short() {
		seeds = 10
	}
	relabels := 0
	for seed := range seeds {
		w := policytest.NewWorld(uint64(5000+seed), policytest.WorldOptions{})
		cl := w.Cluster(20+w.Rand().IntN(40), 2+w.Rand().IntN(8))
		comp := policy.MustCompile(t, cl)
		m := policy.NewMirror(comp.State())
		for step := range 40 {
			ev := w.Event(cl, step)
			if step%3 == 0 {
				ev = nsRelabel(w)
				relabels++
			}
			label := fmt.Sprintf("seed %d step %d (%s)", seed, step, ev.Kind)
			d, err := comp.Apply(ev)
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			checkFlows(t, w, comp.State(), 40, label)
			if err := m.Apply(d); err != nil {
				t.Fatalf("%s: delta cannot be applied: %v", label, err)
			}
			if err := m.Equal(comp.State()); err != nil {
				t.Fatalf("%s: state after delta differs: %v", label, err)
			}
			if err := policy.CheckBookkeeping(comp); err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			if ev.Kind != policy.NamespaceRelabel {
				continue
			}
			fresh := policy.MustCompile(t, cl.Clone())
			if got, want := policy.Canonical(comp.State()), policy.Canonical(fresh.State()); got != want {
				t.Fatalf("%s: differs from a fresh compile:\n%s", label, policy.FirstDiff(got, want))
			}
		}
	}
	if relabels == 0 {
		t.Fatal("no namespace was relabelled")
	}
}

// TestNamespaceRelabelMovesPeersInAndOut: a policy admits pods of red namespaces; relabelling
// namespace y from blue to red admits y's pod, and back to blue shuts it out again, through
// new identities while the pod keeps its endpoint and rule sets.
func TestNamespaceRelabelMovesPeersInAndOut(t *testing.T) {
	c := policy.NewCluster()
	for ns, team := range map[string]string{"x": "red", "y": "blue"} {
		if err := c.AddNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": team}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*policy.Pod{
		{Namespace: "x", Name: "server", Labels: map[string]string{"app": "a"}, IP: netip.MustParseAddr("198.18.0.1")},
		{Namespace: "y", Name: "client", Labels: map[string]string{"app": "b"}, IP: netip.MustParseAddr("198.18.0.2")},
	} {
		if err := c.AddPod(policytest.PodObject(p)); err != nil {
			t.Fatal(err)
		}
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "from-red"},
		Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "red"}}}}}},
		},
	}
	if err := c.AddPolicy(np); err != nil {
		t.Fatal(err)
	}
	comp := policy.MustCompile(t, c)
	s := comp.State()
	f := policy.Flow{Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.0.1"), Proto: policy.ProtoTCP, Port: 80}
	if v := s.Verdict(f); v != policy.Deny {
		t.Fatalf("client in blue y: %s, want deny", v)
	}
	before, _ := s.EndpointByPod("y/client")
	beforeEP := *before
	d, err := comp.Apply(policy.Event{Kind: policy.NamespaceRelabel, Namespace: "y", Labels: map[string]string{"team": "red"}})
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Verdict(f); v != policy.Allow {
		t.Fatalf("client in red y: %s, want allow", v)
	}
	after, _ := s.EndpointByPod("y/client")
	if after.ID != beforeEP.ID || after.Ingress != beforeEP.Ingress || after.Egress != beforeEP.Egress || after.Identity == beforeEP.Identity {
		t.Errorf("endpoint %+v became %+v: want the same id and rule sets, a new identity", beforeEP, *after)
	}
	if len(d.IdentitiesAllocated) != 1 || len(d.IdentitiesReleased) != 1 || len(d.EndpointsChanged) != 1 || len(d.EntriesAdded) != 1 {
		t.Errorf("delta %+v: want one identity allocated and one released, one endpoint changed, one entry added", d)
	}
	if got := c.Namespaces["y"].Labels; got["team"] != "red" || got[policy.NamespaceNameLabel] != "y" {
		t.Errorf("namespace y labels %v", got)
	}
	if d, err := comp.Apply(policy.Event{Kind: policy.NamespaceRelabel, Namespace: "y", Labels: map[string]string{"team": "red", policy.NamespaceNameLabel: "y"}}); err != nil || !d.Empty() {
		t.Errorf("relabel to the same labels: delta %+v, err %v; want an empty delta", d, err)
	}
	if _, err := comp.Apply(policy.Event{Kind: policy.NamespaceRelabel, Namespace: "y", Labels: map[string]string{"team": "blue"}}); err != nil {
		t.Fatal(err)
	}
	if v := s.Verdict(f); v != policy.Deny {
		t.Fatalf("client back in blue y: %s, want deny", v)
	}
	if _, err := comp.Apply(policy.Event{Kind: policy.NamespaceRelabel, Namespace: "New_NS"}); err == nil {
		t.Error("a relabel of an invalid namespace name was accepted")
	}
	if _, err := comp.Apply(policy.Event{Kind: policy.NamespaceRelabel, Namespace: "fresh", Labels: map[string]string{"team": "red"}}); err != nil {
		t.Fatal(err)
	}
	if c.Namespaces["fresh"] == nil {
		t.Error("a relabel of an unknown namespace did not create it")
	}
}
