package datapath

import (
	"fmt"
	"slices"
	"testing"

	"netpolbench/policy"
)

// TestPlannedStateHasTheGoldenMapSizes plans the golden states without a kernel: a full sync
// into empty maps writes exactly what it plans, so the plan must hold the golden sizes.
func TestPlannedStateHasTheGoldenMapSizes(t *testing.T) {
	for _, tc := range goldenStates(t) {
		for _, layout := range []Layout{LayoutHash, LayoutCilium} {
			p, err := planState(tc.s, layout == LayoutCilium, maxInline, newNameTable(), 1)
			if err != nil {
				t.Fatal(err)
			}
			if got := planSizes(p); got != tc.want[layout] {
				t.Errorf("%s/%s: planned sizes changed:\n got %s\nwant %s", tc.name, layout, got, tc.want[layout])
			}
			checkEndpointEntries(t, tc.s, p)
		}
	}
}

// checkEndpointEntries: every endpoint has one lxc entry, under its address, with its
// identity, rule sets and the rule sets' fall-back flags.
func checkEndpointEntries(t *testing.T, s *policy.State, p *statePlan) {
	t.Helper()
	byKey := map[uint32]bpfEndpoint{}
	for i := range p.lxcK {
		for j, k := range p.lxcK[i] {
			byKey[k] = p.lxcV[i][j]
		}
	}
	if len(byKey) != len(s.Endpoints()) {
		t.Fatalf("%d lxc entries for %d endpoints", len(byKey), len(s.Endpoints()))
	}
	for _, ep := range s.Endpoints() {
		v, ok := byKey[ipKey(ep.Pod.IP)]
		want := bpfEndpoint{EpId: ep.ID, Identity: uint32(ep.Identity), CidrIdentity: uint32(s.CIDRIdentityOf(ep.Pod.IP)),
			IngressRs: uint32(ep.Ingress), EgressRs: uint32(ep.Egress),
			IngressFlags: computeFlags(s, ep.Ingress), EgressFlags: computeFlags(s, ep.Egress)}
		if !ok || v != want {
			t.Fatalf("endpoint %s: planned %+v, want %+v", ep.Pod.Key(), v, want)
		}
	}
}

// TestPlanningInPartsPlansWhatOnePartDoes: the parts a full sync plans on several cores,
// joined, are the plan of one part, map by map and in the same order.
func TestPlanningInPartsPlansWhatOnePartDoes(t *testing.T) {
	s := goldenStates(t)[1].s
	old := minPart
	minPart = 4
	defer func() { minPart = old }()
	for _, cilium := range []bool{false, true} {
		one, err := planState(s, cilium, maxInline, newNameTable(), 1)
		if err != nil {
			t.Fatal(err)
		}
		four, err := planState(s, cilium, maxInline, newNameTable(), 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(four.rsPlans) < 2 || len(four.epPlans) < 2 {
			t.Fatalf("planned in %d rule-set and %d endpoint parts, want several", len(four.rsPlans), len(four.epPlans))
		}
		for _, c := range []struct {
			name      string
			one, four any
		}{
			{"ipcache", one.ipcK, four.ipcK},
			{"lxc", slices.Concat(one.lxcV...), slices.Concat(four.lxcV...)},
			{"named_ports", slices.Concat(one.namK...), slices.Concat(four.namK...)},
			{"policy", slices.Concat(one.polK...), slices.Concat(four.polK...)},
			{"policy_summary", slices.Concat(one.sumV...), slices.Concat(four.sumV...)},
		} {
			if a, b := fmt.Sprint(c.one), fmt.Sprint(c.four); a != b {
				t.Errorf("cilium=%v: %s planned in parts differs from one part", cilium, c.name)
			}
		}
	}
}
