package stamp

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"netpolbench/policy"
)

var (
	podA = netip.MustParseAddr("198.18.0.10")
	podB = netip.MustParseAddr("198.18.1.20")
	podC = netip.MustParseAddr("198.18.2.30")
	host = netip.MustParseAddr("203.0.113.5")
)

func testFlows() []ExpectedFlow {
	return []ExpectedFlow{
		{Flow: policy.Flow{Src: podA, Dst: podB, Proto: policy.ProtoTCP, Port: 80}, Verdict: policy.Allow},
		{Flow: policy.Flow{Src: podA, Dst: podC, Proto: policy.ProtoTCP, Port: 80}, Verdict: policy.Deny, DeniedAt: policy.Egress},
		{Flow: policy.Flow{Src: podB, Dst: podC, Proto: policy.ProtoUDP, Port: 53}, Verdict: policy.Deny, DeniedAt: policy.Ingress},
		{Flow: policy.Flow{Src: podC, Dst: host, Proto: policy.ProtoTCP, Port: 443}, Verdict: policy.Allow},
	}
}

func mustFlowList(t *testing.T, fs []ExpectedFlow) *FlowList {
	t.Helper()
	l, err := NewFlowList(fs)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestFlowListDigestIgnoresOrderButNotExpectations(t *testing.T) {
	fs := testFlows()
	a := mustFlowList(t, fs).Digest()
	rev := slices.Clone(fs)
	slices.Reverse(rev)
	if b := mustFlowList(t, rev).Digest(); a != b {
		t.Errorf("digest changed with the order alone: %s vs %s", a, b)
	}
	changed := slices.Clone(fs)
	changed[2].DeniedAt = policy.Egress
	if b := mustFlowList(t, changed).Digest(); a == b {
		t.Error("digest did not change with a deny point")
	}
	changed = slices.Clone(fs)
	changed[0].Verdict = policy.Deny
	if b := mustFlowList(t, changed).Digest(); a == b {
		t.Error("digest did not change with a verdict")
	}
	changed = slices.Clone(fs)
	changed[3].Port = 444
	if b := mustFlowList(t, changed).Digest(); a == b {
		t.Error("digest did not change with a port")
	}
	if len(a) != 64 {
		t.Errorf("digest %q is not hex SHA-256", a)
	}
}

func TestFlowListRejectsDuplicatesAndPortlessFlows(t *testing.T) {
	fs := testFlows()
	if _, err := NewFlowList(append(fs, fs[1])); err == nil || !strings.Contains(err.Error(), "repeats flow 1") {
		t.Errorf("duplicate flow: err %v", err)
	}
	icmp := ExpectedFlow{Flow: policy.Flow{Src: podA, Dst: podB, Proto: policy.ProtoICMP}}
	if _, err := NewFlowList([]ExpectedFlow{icmp}); err == nil {
		t.Error("flow without a port: no error")
	}
}

func sampleOf(src, dst netip.Addr, sport, dport uint16, proto, flags uint8, hook Hook, dropped bool, carry uint64) Sample {
	return Sample{Delta: 500, Carry: carry, Src: src, Dst: dst, SrcPort: sport, DstPort: dport, Proto: proto,
		TCPFlags: flags, Hook: hook, Dropped: dropped}
}

func TestMatchTellsNewEstablishedAndReplies(t *testing.T) {
	l := mustFlowList(t, testFlows())
	for _, c := range []struct {
		name  string
		s     Sample
		flow  int
		state State
		ok    bool
	}{
		{"syn", sampleOf(podA, podB, 40000, 80, 6, tcpSYN, HookTCXEgress, false, 1), 0, StateNew, true},
		{"data", sampleOf(podA, podB, 40000, 80, 6, tcpACK|0x08, HookTCXEgress, false, 1), 0, StateEstablished, true},
		{"rst-ack reply", sampleOf(podB, podA, 80, 40000, 6, 0x14, HookTCXEgress, false, 1), 0, StateReply, true},
		{"syn-ack reply", sampleOf(podB, podA, 80, 40000, 6, tcpSYN|tcpACK, HookTCXEgress, false, 1), 0, StateReply, true},
		{"udp", sampleOf(podB, podC, 40001, 53, 17, 0, HookTCXEgress, true, 1), 2, StateNew, true},
		{"wrong port", sampleOf(podA, podB, 40000, 81, 6, tcpSYN, HookTCXEgress, false, 1), 0, 0, false},
		{"wrong protocol", sampleOf(podA, podB, 40000, 80, 17, 0, HookTCXEgress, false, 1), 0, 0, false},
	} {
		m, ok := l.Match(c.s)
		if ok != c.ok || ok && (m.Flow != c.flow || m.State != c.state) {
			t.Errorf("%s: got %+v ok=%v, want flow %d %s ok=%v", c.name, m, ok, c.flow, c.state, c.ok)
		}
	}
}

func TestMatchPrefersTheOpeningReadingWhenBothDirectionsAreFlows(t *testing.T) {
	// A flow and its mirror image: B:80 -> A and A:80 -> B. A SYN from A:80 to B:80 opens the
	// second flow; an ACK the other way answers the first.
	fs := []ExpectedFlow{
		{Flow: policy.Flow{Src: podA, Dst: podB, Proto: policy.ProtoTCP, Port: 80}, Verdict: policy.Allow},
		{Flow: policy.Flow{Src: podB, Dst: podA, Proto: policy.ProtoTCP, Port: 80}, Verdict: policy.Allow},
	}
	l := mustFlowList(t, fs)
	if m, _ := l.Match(sampleOf(podA, podB, 80, 80, 6, tcpSYN, HookTCXEgress, false, 1)); m.Flow != 0 || m.State != StateNew {
		t.Errorf("SYN: %+v", m)
	}
	if m, _ := l.Match(sampleOf(podA, podB, 80, 80, 6, tcpACK, HookTCXEgress, false, 1)); m.Flow != 1 || m.State != StateReply {
		t.Errorf("ACK: %+v", m)
	}
}

func TestCheckCountsEveryDisagreement(t *testing.T) {
	l := mustFlowList(t, testFlows())
	good := []Sample{
		sampleOf(podA, podB, 40000, 80, 6, tcpSYN, HookTCXEgress, false, 1),       // allowed, passed both points
		sampleOf(podB, podA, 80, 40000, 6, 0x14, HookTCXEgress, false, 1),         // its reply
		sampleOf(podA, podC, 40002, 80, 6, tcpSYN, HookTCXIngress, true, 0),       // denied at the source, dropped there
		sampleOf(podB, podC, 40003, 53, 17, 0, HookTCXEgress, true, 3),            // denied at the destination, dropped there
		sampleOf(podC, host, 40004, 443, 6, tcpSYN, HookTCXIngress, false, 0),     // leaving the pods
		sampleOf(podA, podC, 40005, 80, 6, tcpSYN, HookNetfilterForward, true, 0), // netfilter has one point
	}
	var c Check
	for _, s := range good {
		c.Add(l, s)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("agreeing samples: %v", err)
	}
	bad := []Sample{
		sampleOf(podA, podB, 40010, 80, 6, tcpSYN, HookTCXEgress, true, 1),        // allowed, dropped
		sampleOf(podA, podC, 40011, 80, 6, tcpSYN, HookTCXEgress, false, 1),       // denied, passed
		sampleOf(podA, podC, 40012, 80, 6, tcpSYN, HookTCXEgress, true, 1),        // dropped at the wrong point
		sampleOf(podB, podC, 40013, 53, 17, 0, HookTCXIngress, true, 0),           // the other wrong point
		sampleOf(podA, podC, 40014, 80, 6, tcpACK, HookTCXEgress, false, 1),       // established packet of a denied flow
		sampleOf(podB, podA, 80, 40015, 6, tcpACK, HookNetfilterForward, true, 0), // reply dropped
		sampleOf(podC, podA, 40016, 80, 6, tcpSYN, HookTCXEgress, false, 1),       // no such flow
	}
	for _, s := range bad {
		c.Add(l, s)
	}
	if c.Samples != len(good)+len(bad) || c.Mismatched != 6 || c.Unmatched != 1 {
		t.Fatalf("check: %+v", c)
	}
	err := c.Err()
	if !errors.Is(err, ErrVerdictMismatch) || !strings.Contains(err.Error(), "allowed flow dropped") {
		t.Fatalf("err %v", err)
	}
}

func TestPathFollowsHookCarryAndFate(t *testing.T) {
	for _, c := range []struct {
		s    Sample
		want Path
	}{
		{Sample{Hook: HookTCXEgress, Carry: 10}, PathTCXBoth},
		{Sample{Hook: HookTCXEgress}, PathTCXEgressOnly},
		{Sample{Hook: HookTCXIngress}, PathTCXIngressOnly},
		{Sample{Hook: HookTCXIngress, Dropped: true}, PathTCXDropIngress},
		{Sample{Hook: HookTCXEgress, Carry: 10, Dropped: true}, PathTCXDropEgress},
		{Sample{Hook: HookTCXEgress, Dropped: true}, PathTCXDropEgressOnly},
		{Sample{Hook: HookNetfilterForward}, PathFilterPass},
		{Sample{Hook: HookNetfilterForward, Dropped: true}, PathFilterDrop},
		{Sample{Hook: HookNetfilterPath}, PathNetfilterPass},
		{Sample{Hook: HookNetfilterPath, Dropped: true}, PathNetfilterDrop},
	} {
		got := c.s.Path()
		if got != c.want {
			t.Errorf("%+v: path %s/%s, want %s/%s", c.s, got.Span(), got, c.want.Span(), c.want)
		}
		if got.Dropped() != c.s.Dropped {
			t.Errorf("%s/%s: Dropped() = %v", got.Span(), got, got.Dropped())
		}
	}
	seen := map[string]bool{}
	for _, p := range Paths() {
		name := p.Span().String() + "/" + p.String()
		if seen[name] {
			t.Errorf("path name %s twice", name)
		}
		seen[name] = true
	}
}
