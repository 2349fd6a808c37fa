package nftables

import (
	"strings"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy/policytest"
)

// TestListForShowsThePodsChainsAndSets lists what one pod's traffic walks in a case with an
// isolated and a not isolated pod: the isolated pod's listing holds its map element, its
// rule-set chain and the peer set that chain matches, and nft reads the whole listing back
// (it is valid nft syntax) into the table it came from.
func TestListForShowsThePodsChainsAndSets(t *testing.T) {
	var tc policytest.Case
	for _, c := range policytest.Cases {
		if c.Name == "PodSelectorPeerAllowsMatchingPodsOfPolicyNamespace" {
			tc = c
		}
	}
	comp := policytest.CaseCompiler(t, tc)
	f, _ := mustSynced(t, comp.State())
	tab := f.Table()
	s := comp.State()
	var isolated, open string
	var isoIP, openIP = s.Endpoints()[0].Pod.IP, s.Endpoints()[0].Pod.IP
	for _, ep := range s.Endpoints() {
		if ep.Ingress != 0 && isolated == "" {
			isolated, isoIP = ep.Pod.Key(), ep.Pod.IP
		}
		if ep.Ingress == 0 && ep.Egress == 0 && open == "" {
			open, openIP = ep.Pod.Key(), ep.Pod.IP
		}
	}
	if isolated == "" || open == "" {
		t.Fatal("the case needs an isolated and an open pod")
	}
	got := tab.ListFor(isoIP)
	for _, want := range []string{"chain forward {", isoIP.String() + " : goto rs-", "chain rs-", "ip saddr @p-", "drop comment", "set p-",
		"elements = { " + isoIP.String() + " . " + isoIP.String() + " }"} {
		if !strings.Contains(got, want) {
			t.Errorf("listing for %s lacks %q:\n%s", isolated, want, got)
		}
	}
	openList := tab.ListFor(openIP)
	if strings.Contains(openList, "chain rs-") || strings.Contains(openList, openIP.String()+" :") {
		t.Errorf("listing for %s (no policy isolates it) shows rule-set chains or map elements:\n%s", open, openList)
	}
	// The whole listing is nft syntax: a ruleset read from it is the table itself.
	needKernel(t)
	ns, del := newNetns(t)
	t.Cleanup(del)
	if err := ns.Do(func() error { return runNft(tab.List()) }); err != nil {
		t.Fatalf("nft refuses the listing: %v\n%s", err, tab.List())
	}
	k := mustKernelRuleset(t, ns)
	if got, want := k.canonical(), f.canonical(); got != want {
		t.Fatalf("the listing loaded into nft differs from the table (- table, + listing):\n%s", faults.Diff(want, got))
	}
}
