package datapath

import (
	"fmt"
	"strings"
	"testing"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestLookupsPerVerdictPathAreExact pins the map operations each verdict path makes: a new
// allowed flow, its established packets and replies (answered by the per-CPU flow cache), and
// a denied new flow. A change that adds a lookup to a path shows up here, in review.
func TestLookupsPerVerdictPathAreExact(t *testing.T) {
	c, _ := ctCluster(t, 80)
	d := mustSynced(t, policytest.MustCompile(t, c).State(), Options{CT: CTFull})
	to, _ := d.Programs()
	const n = 5
	for i := range n {
		sport := uint16(40000 + i)
		for _, pkt := range [][]byte{
			mustPacket(t, ipA, ipB, policy.ProtoTCP, sport, 80, 0x02), // new, allowed at b's ingress
			mustPacket(t, ipA, ipB, policy.ProtoTCP, sport, 80, 0x10), // established
			mustPacket(t, ipB, ipA, policy.ProtoTCP, 80, sport, 0x12), // reply, at a's ingress
			mustPacket(t, ipB, ipA, policy.ProtoTCP, sport, 80, 0x02), // new, denied at a's ingress
		} {
			if _, err := d.Run(to, pkt); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := d.Lookups()
	if err != nil {
		t.Fatal(err)
	}
	// Per packet: operations by map, in LookupMaps order.
	want := map[MetricKey]string{
		// epoch, the local endpoint, the peer (lxc), its summary; the SYN skips the flow cache and
		// ct lookups, then creates the entry and fills its flow-cache slot.
		{ReasonAllowNew, policy.Ingress}:         "flow_cache=1 epoch=1 lxc=2 policy_summary=1 ct-update=1",
		{ReasonAllowEstablished, policy.Ingress}: "flow_cache=1 epoch=1",
		{ReasonAllowReply, policy.Ingress}:       "flow_cache=1 epoch=1",
		// The summary misses; the rule set has no CIDR, world or any-peer entries to fall back on.
		{ReasonDropPolicy, policy.Ingress}: "epoch=1 lxc=2 policy_summary=1",
	}
	if len(got) != len(want) {
		t.Errorf("paths taken: %v, want %d", got, len(want))
	}
	for k, w := range want {
		l := got[k]
		if l.Packets != n {
			t.Errorf("%s %s: %d packets, want %d", k.Reason, k.Dir, l.Packets, n)
			continue
		}
		var parts []string
		for _, m := range LookupMaps() {
			if v := l.PerPacket(m); v != 0 {
				parts = append(parts, fmt.Sprintf("%s=%g", m, v))
			}
		}
		if g := strings.Join(parts, " "); g != w {
			t.Errorf("%s %s: %s, want %s", k.Reason, k.Dir, g, w)
		}
	}
}

func TestLookupsSinceKeepsWhatEachPathGained(t *testing.T) {
	allow := MetricKey{ReasonAllowNew, policy.Ingress}
	drop := MetricKey{ReasonDropPolicy, policy.Egress}
	est := MetricKey{ReasonAllowEstablished, policy.Ingress}
	var a, b, c Lookups
	a.Packets, a.Ops[LookupCT] = 10, 20
	b.Packets, b.Ops[LookupPolicy] = 3, 6
	c.Packets, c.Ops[LookupFlowCache] = 4, 4
	earlier := map[MetricKey]Lookups{allow: a, est: c}
	later := map[MetricKey]Lookups{allow: a.Add(a), drop: b, est: c}
	got := LookupsSince(later, earlier)
	if len(got) != 2 || got[allow] != a || got[drop] != b {
		t.Errorf("since: %+v, want allow %+v and drop %+v only (established gained nothing)", got, a, b)
	}
}
