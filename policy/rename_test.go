package policy

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// renameWorld is namespace x with pods web-1, web-2 (app=web, named port "http" = 8080) and
// db-1 (app=db), isolated for ingress by allow-web, which selects every pod and allows app=web
// on TCP 80.
func renameWorld(t *testing.T) *Compiler {
	t.Helper()
	c := NewCluster()
	for i, name := range []string{"web-1", "web-2", "db-1"} {
		app := "web"
		if name == "db-1" {
			app = "db"
		}
		p := &Pod{Namespace: "x", Name: name, Labels: map[string]string{"app": app},
			IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})}
		if app == "web" {
			p.Ports = []ContainerPort{{Name: "http", Protocol: ProtoTCP, Port: 8080}}
		}
		if err := c.addPod(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddPolicy(ingressPolicy("allow-web", nil, intstr.FromInt32(80))); err != nil {
		t.Fatal(err)
	}
	return mustCompile(t, c)
}

// ingressPolicy selects pods by matchLabels (all pods when nil) and allows app=web on port.
func ingressPolicy(name string, match map[string]string, port intstr.IntOrString) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: match},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
}

func ingressSets(t *testing.T, s *State, pods ...string) []RuleSetID {
	t.Helper()
	var out []RuleSetID
	for _, p := range pods {
		ep, ok := s.EndpointByPod("x/" + p)
		if !ok {
			t.Fatalf("no endpoint for x/%s", p)
		}
		out = append(out, ep.Ingress)
	}
	return out
}

func TestPolicySelectingAllEndpointsOfARuleSetRenamesIt(t *testing.T) {
	comp := renameWorld(t)
	s := comp.State()
	before := ingressSets(t, s, "web-1", "web-2", "db-1")
	if before[0] != before[1] || before[1] != before[2] {
		t.Fatalf("pods selected by the same policies have rule sets %v", before)
	}
	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "deny"}}
	d, err := comp.Apply(Event{Kind: PolicyAdd, Policy: deny})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.EndpointsChanged)+len(d.RuleSetsAdded)+len(d.RuleSetsRemoved)+len(d.EntriesAdded)+len(d.EntriesRemoved) != 0 {
		t.Errorf("a default-deny over isolated pods changed endpoints, sets or entries: %+v", d)
	}
	if !slices.Equal(d.RuleSetsRenamed, before[:1]) {
		t.Errorf("renamed %v, want %v", d.RuleSetsRenamed, before[:1])
	}
	rs, _ := s.RuleSet(before[0])
	if want := []string{"x/allow-web", "x/deny"}; !slices.Equal(rs.Policies, want) {
		t.Errorf("renamed set's policies %v, want %v", rs.Policies, want)
	}
	// Removing it renames the set back, again without touching an endpoint.
	d, err = comp.Apply(Event{Kind: PolicyRemove, PolicyKey: "x/deny"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.EndpointsChanged) != 0 || !slices.Equal(d.RuleSetsRenamed, before[:1]) {
		t.Errorf("removing the default-deny: %+v", d)
	}
}

func TestPolicySelectingSomeEndpointsOfARuleSetMovesThem(t *testing.T) {
	comp := renameWorld(t)
	s := comp.State()
	before := ingressSets(t, s, "web-1")[0]
	d, err := comp.Apply(Event{Kind: PolicyAdd, Policy: ingressPolicy("web-8080", map[string]string{"app": "web"}, intstr.FromInt32(8080))})
	if err != nil {
		t.Fatal(err)
	}
	after := ingressSets(t, s, "web-1", "web-2", "db-1")
	if after[0] == before || after[0] != after[1] || after[2] != before {
		t.Errorf("rule sets after: %v (before all %d): web pods should move together, db stay", after, before)
	}
	if len(d.EndpointsChanged) != 2 || len(d.RuleSetsAdded) != 1 || len(d.RuleSetsRenamed) != 0 {
		t.Errorf("delta %+v", d)
	}
}

// A named-port policy joining a renamed set resolves the name against the set's pods, and the
// kept policies' entries stay: the full compile is the reference.
func TestRenamedSetResolvesNamedPortsOfItsPods(t *testing.T) {
	comp := renameWorld(t)
	if _, err := comp.Apply(Event{Kind: PodDelete, PodKey: "x/db-1"}); err != nil {
		t.Fatal(err)
	}
	set := ingressSets(t, comp.State(), "web-1")[0]
	d, err := comp.Apply(Event{Kind: PolicyAdd, Policy: ingressPolicy("web-http", nil, intstr.FromString("http"))})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.RuleSetsRenamed, []RuleSetID{set}) {
		t.Fatalf("renamed %v, want [%d]", d.RuleSetsRenamed, set)
	}
	rs, _ := comp.State().RuleSet(set)
	var ports []uint16
	for _, e := range rs.Entries {
		ports = append(ports, e.Port)
	}
	if !slices.Equal(ports, []uint16{80, 8080}) {
		t.Errorf("entries %v, want ports 80 and the resolved 8080", rs.Entries)
	}
	fresh := mustCompile(t, comp.Cluster().Clone())
	if got, want := canonical(comp.State()), canonical(fresh.State()); got != want {
		t.Error(firstDiff(got, want))
	}
}

func TestPeerEntriesAreThePeersRunOfTheSortedEntries(t *testing.T) {
	comp := renameWorld(t)
	s := comp.State()
	for _, rs := range s.RuleSets() {
		byPeer := map[Identity][]Entry{}
		for _, e := range rs.Entries {
			byPeer[e.Peer] = append(byPeer[e.Peer], e)
		}
		byPeer[IdentityWorld] = nil // a peer without entries
		for peer, want := range byPeer {
			if got := s.PeerEntries(rs.ID, peer); !slices.Equal(got, want) {
				t.Errorf("set %d peer %d: %v, want %v", rs.ID, peer, got, want)
			}
		}
	}
	if got := s.PeerEntries(9999, 256); got != nil {
		t.Errorf("unknown set: %v", got)
	}
}
