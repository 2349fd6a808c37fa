package policy_test

import (
	"maps"
	"net/netip"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

func TestPodsWithEqualLabelSetsShareOneIdentity(t *testing.T) {
	w := policytest.NewWorld(1, policytest.WorldOptions{})
	c := w.Cluster(0, 0)
	for i, lbl := range []map[string]string{
		{"app": "web"}, {"app": "web", "pod-template-hash": "abc"}, {"app": "web", "pod-template-hash": "def"},
		{"app": "db"},
	} {
		p := w.Pod()
		p.Namespace, p.Labels = "x", lbl
		p.Name = []string{"w1", "w2", "w3", "d1"}[i]
		if err := c.AddPod(policytest.PodObject(p)); err != nil {
			t.Fatal(err)
		}
	}
	s := policy.MustCompile(t, c).State()
	ep := func(name string) policy.Identity { e, _ := s.EndpointByPod("x/" + name); return e.Identity }
	if ep("w1") != ep("w2") || ep("w2") != ep("w3") {
		t.Errorf("web pods got identities %d %d %d; pod-template-hash is not identity-relevant", ep("w1"), ep("w2"), ep("w3"))
	}
	if ep("w1") == ep("d1") {
		t.Error("different label sets share an identity")
	}
	for _, id := range []policy.Identity{ep("w1"), ep("d1")} {
		if id < policy.IdentityClusterMin || id > policy.IdentityClusterMax {
			t.Errorf("identity %d outside the cluster range", id)
		}
	}
	info, _ := s.Identity(ep("w1"))
	if info.Refs != 3 || !strings.Contains(strings.Join(info.Labels, " "), "k8s:io.kubernetes.pod.namespace=x") {
		t.Errorf("identity info %+v", info)
	}
}

func TestSameLabelsInAnotherNamespaceGetAnotherIdentity(t *testing.T) {
	w := policytest.NewWorld(2, policytest.WorldOptions{})
	c := w.Cluster(0, 0)
	for _, ns := range []string{"x", "y"} {
		p := w.Pod()
		p.Namespace, p.Labels = ns, map[string]string{"app": "web"}
		c.AddPod(policytest.PodObject(p))
	}
	s := policy.MustCompile(t, c).State()
	eps := s.Endpoints()
	if eps[0].Identity == eps[1].Identity {
		t.Error("namespace labels must be part of the identity")
	}
}

func TestIdentitiesAreStableForTheSameInputInAnyOrder(t *testing.T) {
	a := policytest.NewWorld(3, policytest.WorldOptions{}).Cluster(50, 5)
	b := policy.NewCluster()
	for _, n := range a.NamespaceNames() {
		b.Namespaces[n] = a.Namespaces[n]
	}
	keys := a.PodKeys()
	for i := len(keys) - 1; i >= 0; i-- { // reverse insertion order
		b.AddPod(policytest.PodObject(a.Pods[keys[i]]))
	}
	for _, k := range a.PolicyKeys() {
		b.AddPolicy(a.Policies[k])
	}
	sa, sb := policy.MustCompile(t, a).State(), policy.MustCompile(t, b.Clone()).State()
	for _, k := range keys {
		ea, _ := sa.EndpointByPod(k)
		eb, _ := sb.EndpointByPod(k)
		if ea.Identity != eb.Identity || ea.ID != eb.ID || ea.Ingress != eb.Ingress {
			t.Fatalf("pod %s: %+v vs %+v", k, ea, eb)
		}
	}
}

func TestChurnReleasesIdentitiesAndCIDRs(t *testing.T) {
	c := policytest.NewWorld(4, policytest.WorldOptions{}).Cluster(0, 0)
	comp := policy.MustCompile(t, c)
	pod := &policy.Pod{Namespace: "x", Name: "lonely", Labels: map[string]string{"app": "unique"}, IP: netip.MustParseAddr("198.18.3.1")}
	d, err := comp.Apply(policy.Event{Kind: policy.PodAdd, Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.IdentitiesAllocated) != 1 || len(d.MembersAdded) != 1 || len(d.EndpointsAdded) != 1 {
		t.Fatalf("pod add delta %+v", d)
	}
	id := d.IdentitiesAllocated[0]
	d, err = comp.Apply(policy.Event{Kind: policy.PodDelete, PodKey: "x/lonely"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.IdentitiesReleased) != 1 || d.IdentitiesReleased[0] != id {
		t.Fatalf("identity %d not released: %+v", id, d)
	}
	if _, ok := comp.State().Identity(id); ok {
		t.Fatal("released identity still listed")
	}
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "ext"}}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.128/25"}}}}}}
	d, err = comp.Apply(policy.Event{Kind: policy.PolicyAdd, Policy: np})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.CIDRsAdded) != 2 {
		t.Fatalf("cidrs added %v, want the cidr and its except", d.CIDRsAdded)
	}
	for _, ci := range d.CIDRsAdded {
		if !ci.Identity.IsCIDR() || ci.Identity&^policy.IdentityLocalScope == 0 {
			t.Errorf("CIDR identity %d lacks the local scope bit", ci.Identity)
		}
	}
	if got := comp.State().CIDRIdentityOf(netip.MustParseAddr("203.0.113.200")); got != d.CIDRsAdded[1].Identity {
		t.Errorf("longest prefix of .200 is %d, want the /25's %d", got, d.CIDRsAdded[1].Identity)
	}
	if got := comp.State().CIDRIdentityOf(netip.MustParseAddr("192.0.2.1")); got != policy.IdentityWorld {
		t.Errorf("an address under no prefix is %d, want world", got)
	}
	d, err = comp.Apply(policy.Event{Kind: policy.PolicyRemove, PolicyKey: "x/ext"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.CIDRsRemoved) != 2 || len(comp.State().CIDRs()) != 0 {
		t.Fatalf("cidrs not released: %+v", d)
	}
}

func TestAddingAPodWithAnExistingLabelSetChangesNoEntry(t *testing.T) {
	c := policytest.NewWorld(5, policytest.WorldOptions{}).Cluster(60, 8)
	comp := policy.MustCompile(t, c)
	var donor *policy.Pod
	for _, k := range c.PodKeys() {
		donor = c.Pods[k]
		break
	}
	clone := &policy.Pod{Namespace: donor.Namespace, Name: "clone", Labels: maps.Clone(donor.Labels), IP: netip.MustParseAddr("198.18.3.200"), Ports: donor.Ports}
	d, err := comp.Apply(policy.Event{Kind: policy.PodAdd, Pod: clone})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.EntriesAdded)+len(d.EntriesRemoved)+len(d.RuleSetsAdded)+len(d.IdentitiesAllocated) != 0 {
		t.Errorf("pod with an existing label set changed entries: %+v", d)
	}
	if len(d.EndpointsAdded) != 1 || len(d.MembersAdded) != 1 {
		t.Errorf("want exactly one endpoint and one member added: %+v", d)
	}
}

func TestSelectorOnExcludedLabelIsRejected(t *testing.T) {
	c := policytest.NewWorld(6, policytest.WorldOptions{}).Cluster(5, 0)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "hash"}}
	np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"pod-template-hash": "abc"}}
	if err := c.AddPolicy(np); err != nil {
		t.Fatal(err)
	}
	_, err := policy.Compile(c, policy.Options{})
	if err == nil || !strings.Contains(err.Error(), "pod-template-hash") || !strings.Contains(err.Error(), "x/hash") {
		t.Fatalf("err = %v, want one naming the policy and the label", err)
	}
	keepAll := func(string) bool { return true }
	if _, err := policy.Compile(c, policy.Options{IdentityLabel: keepAll}); err != nil {
		t.Fatalf("with every label identity-relevant: %v", err)
	}
}

func TestRejectedEventChangesNothing(t *testing.T) {
	c := policytest.NewWorld(7, policytest.WorldOptions{}).Cluster(30, 4)
	comp := policy.MustCompile(t, c)
	before := policy.Canonical(comp.State())
	bad := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "bad"}}
	bad.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "nonsense"}}}}}
	existing := c.Pods[c.PodKeys()[0]]
	for _, ev := range []policy.Event{
		{Kind: policy.PolicyAdd, Policy: bad},
		{Kind: policy.PodAdd, Pod: &policy.Pod{Namespace: "x", Name: "dup-ip", IP: existing.IP}},
		{Kind: policy.PodDelete, PodKey: "x/missing"},
		{Kind: policy.PolicyRemove, PolicyKey: "x/missing"},
	} {
		if _, err := comp.Apply(ev); err == nil {
			t.Errorf("%s accepted", ev.Kind)
		}
	}
	if policy.Canonical(comp.State()) != before {
		t.Error("a rejected event changed the state")
	}
}

func TestExplanationNamesPolicyAndRule(t *testing.T) {
	doc := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: x, name: web}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: z}}}]
  - from: [{podSelector: {matchLabels: {app: b}}}]
`
	c := policytest.NewWorld(8, policytest.WorldOptions{}).Cluster(0, 0)
	pols, _, err := policy.LoadBytes([]byte(doc), "t")
	if err != nil {
		t.Fatal(err)
	}
	c.AddPolicy(pols.Policies["x/web"])
	a := &policy.Pod{Namespace: "x", Name: "a", Labels: map[string]string{"app": "a"}, IP: netip.MustParseAddr("198.18.0.1")}
	b := &policy.Pod{Namespace: "x", Name: "b", Labels: map[string]string{"app": "b"}, IP: netip.MustParseAddr("198.18.0.2")}
	cc := &policy.Pod{Namespace: "x", Name: "c", Labels: map[string]string{"app": "c"}, IP: netip.MustParseAddr("198.18.0.3")}
	for _, p := range []*policy.Pod{a, b, cc} {
		c.AddPod(policytest.PodObject(p))
	}
	v, ex := c.Evaluate(policy.Flow{Src: b.IP, Dst: a.IP, Proto: policy.ProtoTCP, Port: 80})
	if v != policy.Allow || ex.Ingress.Policy != "x/web" || ex.Ingress.Rule != 1 || !strings.Contains(ex.String(), "allowed by x/web ingress[1]") {
		t.Errorf("allow: %s %+v", v, ex)
	}
	v, ex = c.Evaluate(policy.Flow{Src: cc.IP, Dst: a.IP, Proto: policy.ProtoTCP, Port: 80})
	if v != policy.Deny || !strings.Contains(ex.String(), "isolated by x/web and no rule matched") {
		t.Errorf("deny: %s %q", v, ex)
	}
	_, ex = c.Evaluate(policy.Flow{Src: a.IP, Dst: a.IP, Proto: policy.ProtoTCP, Port: 80})
	if !ex.Self {
		t.Error("self traffic not explained as such")
	}
}
