package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	networkingv1 "k8s.io/api/networking/v1"

	"netpolbench/internal/faults"
	"netpolbench/internal/netns"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

var (
	ipA = netip.MustParseAddr("198.18.0.11") // x/a1, app=a
	ipB = netip.MustParseAddr("198.18.0.12") // x/b1, app=b
)

// ctCluster: a may talk to b on TCP 80 (a's egress and b's ingress both isolated), and a
// accepts nothing.
func ctCluster(t *testing.T, bPort int32) (*policy.Cluster, []*networkingv1.NetworkPolicy) {
	ns, pods := semanticPods()
	pols := []*networkingv1.NetworkPolicy{
		netpol("x", "a", map[string]string{"app": "a"}, both, nil, []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "b"})}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 80)}}}),
		netpol("x", "b", map[string]string{"app": "b"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "a"})}, Ports: []networkingv1.NetworkPolicyPort{port(tcp, bPort)}}}, nil),
	}
	return buildCluster(t, ns, pods, pols), pols
}

func mustPacket(t testing.TB, src, dst netip.Addr, proto policy.Protocol, sport, dport uint16, flags uint8) []byte {
	t.Helper()
	pkt, err := Packet(policy.Flow{Src: src, Dst: dst, Proto: proto, Port: dport}, sport)
	if err != nil {
		t.Fatal(err)
	}
	if proto == policy.ProtoTCP {
		pkt[14+20+13] = flags
	}
	return pkt
}

func ctEntries(t *testing.T, d *Datapath) int {
	t.Helper()
	var k bpfCtKey
	var v bpfCtValue
	n := 0
	it := d.objs.Ct.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustVerdict(t *testing.T, d *Datapath, pkt []byte) policy.Verdict {
	t.Helper()
	v, err := d.VerdictPacket(pkt)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestConntrack: the reply of an allowed flow passes although the client's ingress denies it;
// a denied SYN creates no entry; after the policy changes, new flows and the next forward packet
// of an established flow are denied, and the flow's entry is gone.
func TestConntrack(t *testing.T) {
	const syn, synack, ack = 0x02, 0x12, 0x10
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		t.Run(string(layout), func(t *testing.T) {
			c, _ := ctCluster(t, 80)
			comp := policytest.MustCompile(t, c)
			d := mustSynced(t, comp.State(), Options{Layout: layout, CT: CTFull})

			reply := mustPacket(t, ipB, ipA, policy.ProtoTCP, 80, 40000, synack)
			if v := mustVerdict(t, d, reply); v != policy.Deny {
				t.Fatalf("reply without a connection: got %s, want deny (a accepts nothing)", v)
			}
			if v := mustVerdict(t, d, mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, syn)); v != policy.Allow {
				t.Fatalf("SYN a->b:80: got %s, want allow", v)
			}
			if n := ctEntries(t, d); n != 1 {
				t.Fatalf("after an allowed SYN: %d ct entries, want 1", n)
			}
			if v := mustVerdict(t, d, reply); v != policy.Allow {
				t.Fatalf("reply of an allowed flow: got %s, want allow", v)
			}
			for _, p := range [][]byte{
				mustPacket(t, ipB, ipA, policy.ProtoTCP, 40001, 80, syn), // a's ingress denies
				mustPacket(t, ipA, ipB, policy.ProtoTCP, 40002, 81, syn), // a's egress denies
			} {
				if v := mustVerdict(t, d, p); v != policy.Deny {
					t.Fatalf("denied SYN: got %s", v)
				}
			}
			if n := ctEntries(t, d); n != 1 {
				t.Fatalf("after denied SYNs: %d ct entries, want still 1", n)
			}

			// b now accepts a on 81 only.
			_, pols := ctCluster(t, 81)
			delta, err := comp.Apply(policy.Event{Kind: policy.PolicyUpdate, Policy: pols[1]})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Update(comp.State(), delta); err != nil {
				t.Fatal(err)
			}
			if v := mustVerdict(t, d, mustPacket(t, ipA, ipB, policy.ProtoTCP, 40003, 80, syn)); v != policy.Deny {
				t.Fatalf("new flow after the rule was removed: got %s, want deny", v)
			}
			if v := mustVerdict(t, d, mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, ack)); v != policy.Deny {
				t.Fatalf("established flow after the rule was removed: got %s, want deny", v)
			}
			if n := ctEntries(t, d); n != 0 {
				t.Fatalf("after the established flow was denied: %d ct entries, want 0", n)
			}
			if v := mustVerdict(t, d, reply); v != policy.Deny {
				t.Fatalf("reply after the flow was cut: got %s, want deny", v)
			}
		})
	}
}

// TestICMPEchoReplyPassesButNotAnotherEcho: the reply to an allowed echo request matches its
// entry by identifier; an echo request from the other side, with another identifier or the same
// one, is a new, denied flow (a request never answers a flow).
func TestICMPEchoReplyPassesButNotAnotherEcho(t *testing.T) {
	ns, pods := semanticPods()
	c := buildCluster(t, ns, pods, []*networkingv1.NetworkPolicy{
		netpol("x", "a", map[string]string{"app": "a"}, ingressOnly, nil, nil),
		netpol("x", "b", map[string]string{"app": "b"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{}}, nil)})
	d := mustSynced(t, policytest.MustCompile(t, c).State(), Options{CT: CTFull})
	echo := func(src, dst netip.Addr, typ uint8, id uint16) []byte {
		p := mustPacket(t, src, dst, policy.ProtoICMP, id, 0, 0)
		p[34] = typ
		return p
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want policy.Verdict
	}{
		{"RequestAToB", echo(ipA, ipB, 8, 7), policy.Allow},
		{"ReplyBToA", echo(ipB, ipA, 0, 7), policy.Allow},
		{"RequestBToAOtherID", echo(ipB, ipA, 8, 9), policy.Deny},
		{"RequestBToASameID", echo(ipB, ipA, 8, 7), policy.Deny},
		{"ReplyBToAStillPasses", echo(ipB, ipA, 0, 7), policy.Allow},
		// Identifier 0 gives request and reply the same key; other types have no identifier.
		{"RequestAToBID0", echo(ipA, ipB, 8, 0), policy.Allow},
		{"RequestBToAID0", echo(ipB, ipA, 8, 0), policy.Deny},
		{"ReplyBToAID0", echo(ipB, ipA, 0, 0), policy.Allow},
		{"TimestampAToB", echo(ipA, ipB, 13, 0), policy.Allow},
		{"TimestampBToA", echo(ipB, ipA, 13, 0), policy.Deny},
	} {
		if v := mustVerdict(t, d, tc.pkt); v != tc.want {
			t.Fatalf("%s: got %s, want %s", tc.name, v, tc.want)
		}
	}
}

// TestEstablishedFlowSurvivesUnrelatedChurn: an epoch change re-checks the next forward packet,
// which the unchanged policy still allows.
func TestEstablishedFlowSurvivesUnrelatedChurn(t *testing.T) {
	c, _ := ctCluster(t, 80)
	comp := policytest.MustCompile(t, c)
	d := mustSynced(t, comp.State(), Options{CT: CTFull})
	if v := mustVerdict(t, d, mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 0x02)); v != policy.Allow {
		t.Fatalf("SYN: got %s, want allow", v)
	}
	delta, err := comp.Apply(policy.Event{Kind: policy.PolicyAdd, Policy: netpol("y", "other", nil, ingressOnly, nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Update(comp.State(), delta); err != nil {
		t.Fatal(err)
	}
	if v := mustVerdict(t, d, mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 0x10)); v != policy.Allow {
		t.Fatalf("established flow after unrelated churn: got %s, want allow", v)
	}
	if n := ctEntries(t, d); n != 1 {
		t.Fatalf("%d ct entries, want 1", n)
	}
}

// TestMetricsAndDropEventsCountedExactly runs known packets through to_container and checks
// the per-reason counters and every decoded drop event.
func TestMetricsAndDropEventsCountedExactly(t *testing.T) {
	c, _ := ctCluster(t, 80)
	comp := policytest.MustCompile(t, c)
	s := comp.State()
	d := mustSynced(t, s, Options{})
	to, _ := d.Programs()
	allowed := mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 0x02)
	denied := mustPacket(t, ipB, ipA, policy.ProtoUDP, 40000, 53, 0)
	const nAllow, nDeny = 7, 5
	for range nAllow {
		if ok, err := d.Run(to, allowed); err != nil || !ok {
			t.Fatalf("allowed packet: ok=%v err=%v", ok, err)
		}
	}
	for range nDeny {
		if ok, err := d.Run(to, denied); err != nil || ok {
			t.Fatalf("denied packet: ok=%v err=%v", ok, err)
		}
	}
	m, err := d.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	want := map[MetricKey]Counter{
		{ReasonAllowNew, policy.Ingress}:   {nAllow, nAllow * uint64(len(allowed))},
		{ReasonDropPolicy, policy.Ingress}: {nDeny, nDeny * uint64(len(denied))},
	}
	if fmt.Sprint(m) != fmt.Sprint(want) {
		t.Fatalf("metrics: got %v, want %v", m, want)
	}
	evs, err := d.DrainDrops(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != nDeny {
		t.Fatalf("%d drop events, want %d", len(evs), nDeny)
	}
	epA, _ := s.EndpointByIP(ipA)
	epB, _ := s.EndpointByIP(ipB)
	wantLine := fmt.Sprintf("drop (Policy denied) to endpoint %d, identity %d->%d: 198.18.0.12:40000 -> 198.18.0.11:53 udp",
		epA.ID, epB.Identity, epA.Identity)
	for _, e := range evs {
		if e.String() != wantLine {
			t.Fatalf("drop event:\n got %s\nwant %s", e, wantLine)
		}
	}
	if more, _ := d.DrainDrops(10 * time.Millisecond); len(more) != 0 {
		t.Fatalf("%d extra drop events", len(more))
	}
}

// TestMapFullIsAnErrorNamingTheMap: a state that does not fit is a clear error, never a
// silent miss.
func TestMapFullIsAnErrorNamingTheMap(t *testing.T) {
	ns, pods := semanticPods()
	c := buildCluster(t, ns, pods, []*networkingv1.NetworkPolicy{
		netpol("x", "cidrs", nil, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{cidrPeer("203.0.113.0/24", "203.0.113.128/25"), cidrPeer("10.0.0.0/8")}}}, nil)})
	s := policytest.MustCompile(t, c).State()
	for _, tc := range []struct {
		name  string
		sizes Sizes
		want  string
	}{
		{"EndpointsHash", Sizes{Endpoints: 3}, "map lxc: map full: 3 entries held, max_entries 3"},
		{"IPCacheTrie", Sizes{IPCache: 2}, "map ipcache: map full: 2 entries held, max_entries 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustOpen(t, Options{Sizes: tc.sizes})
			_, err := d.Sync(s)
			if !errors.Is(err, ErrMapFull) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("sync into a small map: got %v, want ErrMapFull and %q", err, tc.want)
			}
		})
	}
}

// TestIncrementalUpdateLeavesTheMapsAFullSyncWould, over many small random clusters and
// every kind of event, checking verdicts after every event on the way.
func TestIncrementalUpdateLeavesTheMapsAFullSyncWould(t *testing.T) {
	needBPF(t)
	for seed := range 16 {
		w := newWorld(uint64(100 + seed))
		c := w.Cluster(30, 5)
		comp := policytest.MustCompile(t, c)
		s := comp.State()
		opts := Options{Layout: []Layout{LayoutHash, LayoutCilium}[seed%2], Sizes: Sizes{Summaries: 8192, Policy: 65536}}
		d := mustSynced(t, s, opts)
		for step := range 40 {
			ev := w.Event(c, step)
			delta, err := comp.Apply(ev)
			if err != nil {
				continue
			}
			st, err := d.Update(s, delta)
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if delta.Empty() && st.Ops != 0 {
				t.Fatalf("seed %d step %d: empty delta cost %d ops", seed, step, st.Ops)
			}
			keys := c.PodKeys()
			for range 150 {
				f := w.Flow(c, keys)
				want, ex := c.Evaluate(f)
				got, err := d.Verdict(f)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("seed %d step %d after %s: %s: ebpf %s, reference %s (%s)", seed, step, ev.Kind, f, got, want, ex)
				}
			}
		}
		fresh := mustSynced(t, s, opts)
		if got, want := dump(t, d), dump(t, fresh); got != want {
			t.Fatalf("seed %d: maps differ:\n%s", seed, faults.Diff(want, got))
		}
		// A second full sync over the same state changes nothing.
		if st, err := fresh.Sync(s); err != nil || st.Ops != 0 {
			t.Fatalf("seed %d: resync of an unchanged state: %d ops, err %v", seed, st.Ops, err)
		}
	}
}

// TestNonFirstFragmentsAndIPOptions: a non-first fragment has no ports, so only a
// rule allowing every port of its protocol lets it through; IP options are skipped; a
// truncated TCP header is dropped.
func TestNonFirstFragmentsAndIPOptions(t *testing.T) {
	ns, pods := semanticPods()
	c := buildCluster(t, ns, pods, []*networkingv1.NetworkPolicy{
		netpol("x", "b-80", map[string]string{"app": "b"}, ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			Ports: []networkingv1.NetworkPolicyPort{port(tcp, 80), protoOnly(udp)}}}, nil)})
	d := mustSynced(t, policytest.MustCompile(t, c).State(), Options{})
	to, _ := d.Programs()
	frag := func(p []byte) []byte {
		binary.BigEndian.PutUint16(p[14+6:], 185) // offset 1480 bytes, not first
		return p
	}
	withOptions := func(p []byte) []byte {
		out := append([]byte{}, p[:34]...)
		out = append(out, 1, 1, 1, 0) // NOP NOP NOP EOL
		out = append(out, p[34:]...)
		out[14] = 0x46
		return out
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"FirstFragmentTCP80", mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 2), true},
		{"NonFirstFragmentTCPDeniedByPortRule", frag(mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 2)), false},
		{"NonFirstFragmentUDPAllowedByProtocolRule", frag(mustPacket(t, ipA, ipB, policy.ProtoUDP, 40000, 9, 0)), true},
		{"IPOptionsSkipped", withOptions(mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 2)), true},
		{"IPOptionsSkippedDeny", withOptions(mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 81, 2)), false},
		{"TruncatedTCPDropped", mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 2)[:34+10], false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := d.Run(to, tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.want {
				t.Fatalf("allowed=%v, want %v", ok, tc.want)
			}
		})
	}
}

// TestTCXNextOnAllow: with the switch, allow hands the packet on (TCX_NEXT, -1) and deny
// still drops (TC_ACT_SHOT).
func TestTCXNextOnAllow(t *testing.T) {
	c, _ := ctCluster(t, 80)
	s := policytest.MustCompile(t, c).State()
	for _, tc := range []struct {
		next      bool
		wantAllow int32
	}{{false, 0}, {true, -1}} {
		d := mustSynced(t, s, Options{TCXNext: tc.next})
		to, _ := d.Programs()
		for _, p := range []struct {
			pkt  []byte
			want int32
		}{
			{mustPacket(t, ipA, ipB, policy.ProtoTCP, 40000, 80, 2), tc.wantAllow},
			{mustPacket(t, ipB, ipA, policy.ProtoTCP, 40000, 80, 2), 2},
		} {
			ret, err := to.Run(&ebpf.RunOptions{Data: p.pkt})
			if err != nil {
				t.Fatal(err)
			}
			if int32(ret) != p.want {
				t.Fatalf("TCXNext=%v: return %d, want %d", tc.next, int32(ret), p.want)
			}
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestCloseLeaksNoFileDescriptors: open, sync, probe, read events, attach, close.
func TestCloseLeaksNoFileDescriptors(t *testing.T) {
	needBPF(t)
	c, _ := ctCluster(t, 80)
	s := policytest.MustCompile(t, c).State()
	before := openFDs(t)
	d, err := Open(Options{Sizes: SizesFor(s, LayoutHash)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sync(s); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Verdict(policy.Flow{Src: ipB, Dst: ipA, Proto: policy.ProtoTCP, Port: 80}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DrainDrops(0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Facts(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d file descriptors open after Close, %d before", after, before)
	}
}

// TestAttachTCXInOwnNamespace attaches both programs to a veth inside a network namespace the
// test creates, checks the kernel lists them, and detaches.
func TestAttachTCXInOwnNamespace(t *testing.T) {
	c, _ := ctCluster(t, 80)
	d := mustSynced(t, policytest.MustCompile(t, c).State(), Options{TCXNext: true})
	ns, l := mustNamespaceWithVeth(t)
	ifindex := l.Attrs().Index
	// Attaching and querying by ifindex act in the calling thread's namespace.
	attached := func() ([]int, error) {
		var n []int
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
			if err != nil {
				return nil, err
			}
			n = append(n, len(res.Programs))
		}
		return n, nil
	}
	var before, after []int
	err := ns.Do(func() error {
		closer, err := d.Attach(ifindex)
		if err != nil {
			return err
		}
		if before, err = attached(); err != nil {
			return err
		}
		if err := closer.Close(); err != nil {
			return err
		}
		after, err = attached()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before, []int{1, 1}) {
		t.Fatalf("programs attached (tcx ingress, egress): %v, want 1 each", before)
	}
	if after[0] != 0 {
		t.Fatalf("%d programs still attached after Close", after[0])
	}
}

// TestAttachTCInOwnNamespace attaches both programs as clsact filters (the pre-6.6 path) to a
// veth inside a namespace the test creates, checks the kernel lists them, and detaches.
func TestAttachTCInOwnNamespace(t *testing.T) {
	c, _ := ctCluster(t, 80)
	d := mustSynced(t, policytest.MustCompile(t, c).State(), Options{})
	ns, l := mustNamespaceWithVeth(t)
	h, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var closer io.Closer
	if err := ns.Do(func() error { closer, err = d.AttachTC(l.Attrs().Index); return err }); err != nil {
		t.Fatal(err)
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := h.FilterList(l, parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 1 {
			t.Fatalf("parent %x: %d filters, want 1", parent, len(fs))
		}
	}
	// Close deletes the filters through netlink in the calling thread's namespace.
	if err := ns.Do(closer.Close); err != nil {
		t.Fatal(err)
	}
	qs, err := h.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			t.Fatal("clsact qdisc left behind after Close")
		}
	}
}

// mustNamespaceWithVeth creates a network namespace of the test's own with a veth pair
// npb0/npb1 and returns it and npb0; the namespace and its links vanish with its last
// reference when the test ends.
func mustNamespaceWithVeth(t *testing.T) (*netns.NS, netlink.Link) {
	t.Helper()
	testenv.NeedRoot(t)
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "npb0"}, PeerName: "npb1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth in the test namespace: %v", err)
	}
	l, err := h.LinkByName("npb0")
	if err != nil {
		t.Fatal(err)
	}
	return ns, l
}

// TestPodSlash32IPBlockSurvivesPodDelete: in the Cilium layout a pod's /32 and an ipBlock that
// is exactly that /32 share one ipcache key. When the pod goes, the address is outside the
// cluster and the ipBlock must match it again, as after a full sync.
func TestPodSlash32IPBlockSurvivesPodDelete(t *testing.T) {
	ns, pods := semanticPods()
	c := buildCluster(t, ns, pods, []*networkingv1.NetworkPolicy{
		netpol("x", "from-b1", map[string]string{"app": "a"}, ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{cidrPeer("198.18.0.12/32")}}}, nil)})
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		t.Run(string(layout), func(t *testing.T) {
			comp := policytest.MustCompile(t, c.Clone())
			d := mustSynced(t, comp.State(), Options{Layout: layout})
			flow := mustPacket(t, ipB, ipA, policy.ProtoTCP, 40000, 80, 0x02)
			if v := mustVerdict(t, d, flow); v != policy.Allow {
				t.Fatalf("from the pod at the /32: got %s, want allow", v)
			}
			delta, err := comp.Apply(policy.Event{Kind: policy.PodDelete, PodKey: "x/b1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Update(comp.State(), delta); err != nil {
				t.Fatal(err)
			}
			want, _ := comp.Cluster().Evaluate(policy.Flow{Src: ipB, Dst: ipA, Proto: policy.ProtoTCP, Port: 80})
			if v := mustVerdict(t, d, flow); v != want || want != policy.Allow {
				t.Fatalf("from the address after the pod left: got %s, reference %s", v, want)
			}
		})
	}
}
