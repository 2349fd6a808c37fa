package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The allocator's ranges end where Cilium's do: a cursor at the last number hands it out and
// then wraps to the first, never past the end (a local identity past identityLocalMax would
// lose its scope bit and pass for a cluster identity).
func TestIdentityRangesWrapAtTheirLastNumber(t *testing.T) {
	a := newIdentityAllocator()
	a.cluster.next, a.local.next = IdentityClusterMax, identityLocalMax
	var got []Identity
	for i := range 2 {
		id, err := a.allocate(fmt.Sprint(i), IdentityInfo{Namespace: "x"})
		if err != nil {
			t.Fatal(err)
		}
		cidr, err := a.newCIDR(netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id.info.ID, cidr.info.ID)
	}
	want := []Identity{IdentityClusterMax, identityLocalMax, IdentityClusterMin, IdentityLocalScope + 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	if !identityLocalMax.IsCIDR() || (identityLocalMax + 1).IsCIDR() {
		t.Fatalf("identityLocalMax %#x is not the last number with the local scope bit", uint32(identityLocalMax))
	}
}

// cidrPolicy is a policy of namespace x whose ingress allows the given prefixes.
func cidrPolicy(name string, cidrs ...string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name}}
	rule := networkingv1.NetworkPolicyIngressRule{}
	for _, c := range cidrs {
		rule.From = append(rule.From, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
	}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{rule}
	return np
}

// A policy event whose ipBlocks need more CIDR identities than are free is rejected before it
// changes anything; once a policy lets some go, their numbers are handed out again, and no
// identity ever leaves the range.
func TestCIDRIdentitiesAreBoundedByTheLocalRange(t *testing.T) {
	c := NewCluster()
	if err := c.addPod(&Pod{Namespace: "x", Name: "a", IP: netip.MustParseAddr("198.18.0.1")}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddPolicy(cidrPolicy("first", "203.0.113.0/24", "203.0.113.0/25")); err != nil {
		t.Fatal(err)
	}
	comp := mustCompile(t, c)
	local := &comp.alloc.local
	local.last = local.first + 3 // four numbers, two in use
	apply := func(ev Event) error {
		t.Helper()
		before := canonical(comp.State())
		_, err := comp.Apply(ev)
		if err != nil && canonical(comp.State()) != before {
			t.Fatalf("rejected %s changed the state", ev.Kind)
		}
		for _, ci := range comp.State().CIDRs() {
			if ci.Identity < local.first || ci.Identity > local.last {
				t.Fatalf("%s has identity %#x, outside %#x-%#x", ci.Prefix, uint32(ci.Identity), uint32(local.first), uint32(local.last))
			}
		}
		return err
	}
	// Three new prefixes, two free: rejected, though one of them is already known.
	err := apply(Event{Kind: PolicyAdd, Policy: cidrPolicy("three", "203.0.113.0/24", "203.0.113.128/25", "198.51.100.0/24", "192.0.2.0/24")})
	if !errors.Is(err, ErrCIDRIdentitiesExhausted) {
		t.Fatalf("three new prefixes with two free: err = %v, want ErrCIDRIdentitiesExhausted", err)
	}
	// Two new ones, the same prefix twice among them: fits.
	if err := apply(Event{Kind: PolicyAdd, Policy: cidrPolicy("two", "203.0.113.128/25", "198.51.100.0/24", "198.51.100.0/24")}); err != nil {
		t.Fatalf("two new prefixes with two free: %v", err)
	}
	if err := apply(Event{Kind: PolicyAdd, Policy: cidrPolicy("one", "192.0.2.0/24")}); !errors.Is(err, ErrCIDRIdentitiesExhausted) {
		t.Fatalf("a new prefix with none free: err = %v, want ErrCIDRIdentitiesExhausted", err)
	}
	// An update needs room for its new prefixes while the old ones are still held.
	if err := apply(Event{Kind: PolicyUpdate, Policy: cidrPolicy("two", "192.0.2.0/24")}); !errors.Is(err, ErrCIDRIdentitiesExhausted) {
		t.Fatalf("an update to a new prefix with none free: err = %v, want ErrCIDRIdentitiesExhausted", err)
	}
	if err := apply(Event{Kind: PolicyRemove, PolicyKey: "x/first"}); err != nil {
		t.Fatal(err)
	}
	if err := apply(Event{Kind: PolicyAdd, Policy: cidrPolicy("one", "192.0.2.0/24")}); err != nil {
		t.Fatalf("a new prefix after a removal freed two: %v", err)
	}
	if got := len(comp.State().CIDRs()); got != 3 {
		t.Fatalf("%d CIDR identities, want 3", got)
	}
}

// A pod whose label set needs a new identity when none is free is rejected and changes
// nothing; a pod with a known label set still joins.
func TestPodIdentitiesAreBoundedByTheClusterRange(t *testing.T) {
	c := NewCluster()
	for i, app := range []string{"a", "b"} {
		p := &Pod{Namespace: "x", Name: app, Labels: map[string]string{"app": app}, IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(1 + i)})}
		if err := c.addPod(p); err != nil {
			t.Fatal(err)
		}
	}
	comp := mustCompile(t, c)
	comp.alloc.cluster.last = comp.alloc.cluster.first + 1 // both numbers in use
	before := canonical(comp.State())
	_, err := comp.Apply(Event{Kind: PodAdd, Pod: &Pod{Namespace: "x", Name: "c", Labels: map[string]string{"app": "c"}, IP: netip.MustParseAddr("198.18.0.3")}})
	if !errors.Is(err, ErrIdentitiesExhausted) {
		t.Fatalf("pod with a new label set: err = %v, want ErrIdentitiesExhausted", err)
	}
	_, err = comp.Apply(Event{Kind: PodRelabel, PodKey: "x/a", Labels: map[string]string{"app": "c"}})
	if !errors.Is(err, ErrIdentitiesExhausted) {
		t.Fatalf("relabel to a new label set: err = %v, want ErrIdentitiesExhausted", err)
	}
	if canonical(comp.State()) != before {
		t.Fatal("rejected events changed the state")
	}
	if _, err := comp.Apply(Event{Kind: PodAdd, Pod: &Pod{Namespace: "x", Name: "a2", Labels: map[string]string{"app": "a"}, IP: netip.MustParseAddr("198.18.0.4")}}); err != nil {
		t.Fatalf("pod with a known label set: %v", err)
	}
	if _, err := comp.Apply(Event{Kind: PodDelete, PodKey: "x/b"}); err != nil {
		t.Fatal(err)
	}
	d, err := comp.Apply(Event{Kind: PodAdd, Pod: &Pod{Namespace: "x", Name: "c", Labels: map[string]string{"app": "c"}, IP: netip.MustParseAddr("198.18.0.3")}})
	if err != nil {
		t.Fatalf("pod with a new label set after one was released: %v", err)
	}
	if got := d.IdentitiesAllocated; len(got) != 1 || got[0] < IdentityClusterMin || got[0] > IdentityClusterMin+1 {
		t.Fatalf("allocated %v, want one identity of %d-%d", got, IdentityClusterMin, IdentityClusterMin+1)
	}
}
