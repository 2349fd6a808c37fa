package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"netpolbench/internal/needs"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
)

var (
	// With 4 namespaces and /24 blocks: 198.18.0.x and 198.18.4.x are in pod0, 198.18.1.x in pod1.
	podA  = netip.MustParseAddr("198.18.0.10")
	podA2 = netip.MustParseAddr("198.18.0.11")
	podB  = netip.MustParseAddr("198.18.1.20")
	podC  = netip.MustParseAddr("198.18.4.30")
	podD  = netip.MustParseAddr("198.19.255.200")
	ext   = netip.MustParseAddr("203.0.113.7")
)

func flow(src, dst netip.Addr, proto policy.Protocol, port uint16) policy.Flow {
	return policy.Flow{Src: src, Dst: dst, Proto: proto, Port: port}
}

func TestPodAddressesMapToNamespacesByBlock(t *testing.T) {
	tb := &Testbed{podNS: 4, podPrefix: PodRange, blockBits: 24, pods: make([]nsInfo, 4)}
	for _, c := range []struct {
		ip   string
		want int
	}{
		{"198.18.0.10", 0}, {"198.18.1.1", 1}, {"198.18.3.255", 3}, {"198.18.4.0", 0},
		{"198.19.255.200", 3}, {"198.20.0.1", -1}, {"203.0.113.7", -1}, {"10.0.0.1", -1},
	} {
		if got := tb.PodNamespaceOf(netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("PodNamespaceOf(%s) = %d, want %d", c.ip, got, c.want)
		}
	}
	blocks := tb.blocksOf(1)
	if len(blocks) != 128 || blocks[0] != netip.MustParsePrefix("198.18.1.0/24") || blocks[1] != netip.MustParsePrefix("198.18.5.0/24") {
		t.Errorf("blocksOf(1) = %d blocks starting %v", len(blocks), blocks[:2])
	}
}

// nodeRx returns the packets the node side of pod namespace i has received.
func nodeRx(t *testing.T, tb *Testbed, i int) uint64 {
	t.Helper()
	l, err := tb.NodeHandle().LinkByIndex(tb.PodVeths()[i].Index)
	if err != nil {
		t.Fatalf("find node veth: %v", err)
	}
	return l.Attrs().Statistics.RxPackets
}

func TestProbesDeliveredWithoutEnforcement(t *testing.T) {
	tb := ForTest(t, Options{})
	var flows []policy.Flow
	for _, p := range []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoICMP} {
		port := uint16(8080)
		if p == policy.ProtoICMP {
			port = 0
		}
		flows = append(flows,
			flow(podA, podB, p, port),  // across namespaces
			flow(podA, podA2, p, port), // same block: must still cross the node
			flow(podA, podC, p, port),  // same namespace, other block
			flow(podD, podA, p, port),
			flow(podA, ext, p, port),  // to the outside
			flow(ext, podB, p, port),  // from the outside
			flow(podA, podA, p, port), // self traffic
		)
	}
	got, err := tb.Probe(context.Background(), flows, ProbeOptions{})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	for i, f := range flows {
		if !got[i] {
			t.Errorf("%s not delivered with no enforcement in place", f)
		}
	}
}

func TestSameBlockTrafficCrossesNodeAndSelfTrafficDoesNot(t *testing.T) {
	tb := ForTest(t, Options{})
	for _, c := range []struct {
		name       string
		f          policy.Flow
		wantNodeRx bool
	}{
		{"same block", flow(podA, podA2, policy.ProtoUDP, 53), true},
		{"self", flow(podA, podA, policy.ProtoUDP, 53), false},
		{"self tcp", flow(podA, podA, policy.ProtoTCP, 80), false},
		{"self icmp", flow(podA, podA, policy.ProtoICMP, 0), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := nodeRx(t, tb, 0)
			got, err := tb.Probe(context.Background(), []policy.Flow{c.f}, ProbeOptions{})
			if err != nil {
				t.Fatalf("probe: %v", err)
			}
			if !got[0] {
				t.Fatalf("%s not delivered", c.f)
			}
			crossed := nodeRx(t, tb, 0) > before
			if crossed != c.wantNodeRx {
				t.Errorf("%s crossed the node = %v, want %v", c.f, crossed, c.wantNodeRx)
			}
		})
	}
}

// TestNodeDropIsSeenAsNotDelivered puts a drop-everything forward chain in the node namespace
// (nothing else in the testbed filters) and expects every flow through the node to fail,
// while self traffic, which stays in its namespace, still arrives.
func TestNodeDropIsSeenAsNotDelivered(t *testing.T) {
	testenv.NeedKernel(t, needs.Tool("nft", "nftables"))
	tb := ForTest(t, Options{})
	if _, err := tb.RunInNode("nft", []string{"-f", "-"}, []byte("table inet npbtest {\n chain dropall {\n  type filter hook forward priority 0; policy drop;\n }\n}\n")); err != nil {
		t.Fatal(err)
	}
	flows := []policy.Flow{
		flow(podA, podB, policy.ProtoTCP, 80),
		flow(podA, podA2, policy.ProtoTCP, 80),
		flow(podA, podA2, policy.ProtoUDP, 53),
		flow(ext, podB, policy.ProtoICMP, 0),
		flow(podB, ext, policy.ProtoUDP, 53),
		flow(podA, podA, policy.ProtoTCP, 80),
	}
	want := []bool{false, false, false, false, false, true}
	start := time.Now()
	got, err := tb.Probe(context.Background(), flows, ProbeOptions{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	for i, f := range flows {
		if got[i] != want[i] {
			t.Errorf("%s delivered = %v, want %v", f, got[i], want[i])
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("6 concurrent probes took %v; drops should cost two timeouts (probe and confirmation), not two each", d)
	}
}

func TestUnsupportedFlowsRefused(t *testing.T) {
	for _, f := range []policy.Flow{
		flow(podA, netip.MustParseAddr("10.1.2.3"), policy.ProtoTCP, 80),
		flow(netip.MustParseAddr("8.8.8.8"), podA, policy.ProtoTCP, 80),
		flow(podA, podB, policy.ProtoTCP, 0),
		flow(podA, podB, policy.ProtoSCTP, 80),
	} {
		if err := CanSend(f); err == nil {
			t.Errorf("CanSend(%s) = nil, want an error", f)
		}
	}
	if err := CanSend(flow(podA, ext, policy.ProtoUDP, 53)); err != nil {
		t.Errorf("CanSend(pod to outside): %v", err)
	}
}

func TestCloseRemovesEveryNamespace(t *testing.T) {
	testenv.NeedRoot(t)
	tb, err := New(Options{PodNamespaces: 2})
	if err != nil {
		t.Fatalf("new testbed: %v", err)
	}
	names := tb.Namespaces()
	if err := tb.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); err == nil {
			t.Errorf("namespace %s left after Close", n)
		}
	}
	if fmt.Sprint(len(names)) != "4" {
		t.Errorf("2 pod namespaces gave %d namespaces, want node+2+out", len(names))
	}
}

func TestNewRejectsBadLayouts(t *testing.T) {
	for _, o := range []Options{
		{PodNamespaces: 65},
		{PodNamespaces: -1},
		{BlockBits: 14},
		{BlockBits: 29},
		{PodPrefix: netip.MustParsePrefix("10.0.0.0/24")},
		{PodPrefix: netip.MustParsePrefix("198.18.0.0/24"), BlockBits: 23},
		{PodPrefix: netip.MustParsePrefix("198.18.0.0/26"), BlockBits: 27, PodNamespaces: 4},
	} {
		if tb, err := New(o); err == nil {
			tb.Close()
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
}

// TestNodeNeighboursDoNotGrowWithPods sends to many pod addresses and expects the node to
// hold one static neighbour per veth and nothing else: no ARP, no per-pod entries.
func TestNodeNeighboursDoNotGrowWithPods(t *testing.T) {
	tb := ForTest(t, Options{})
	var flows []policy.Flow
	for i := range 200 {
		dst := netip.AddrFrom4([4]byte{198, 18, byte(i % 8), byte(1 + i)})
		flows = append(flows, flow(podA, dst, policy.ProtoUDP, 53))
	}
	got, err := tb.Probe(context.Background(), flows, ProbeOptions{})
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	for i, ok := range got {
		if !ok {
			t.Fatalf("%s not delivered", flows[i])
		}
	}
	neighs, err := tb.NodeHandle().NeighList(0, unix.AF_INET)
	if err != nil {
		t.Fatalf("list node neighbours: %v", err)
	}
	if want := len(tb.PodVeths()) + 1; len(neighs) != want {
		t.Errorf("node has %d IPv4 neighbours after 200 destinations, want %d (one per veth)", len(neighs), want)
	}
	for _, n := range neighs {
		if n.State != netlink.NUD_PERMANENT {
			t.Errorf("node neighbour %s is not static (state %#x)", n.IP, n.State)
		}
	}
}

// BenchmarkNew measures building and removing a default testbed (4 pod namespaces, 512 /24
// blocks: 512 node routes, 128 AnyIP routes per pod namespace).
func BenchmarkNew(b *testing.B) {
	testenv.NeedRoot(b)
	for b.Loop() {
		tb, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := tb.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProbe measures delivered probes (the cost of an allowed flow; a dropped one costs
// its timeout), sent 256 at a time between pod namespaces.
func BenchmarkProbe(b *testing.B) {
	testenv.NeedRoot(b)
	tb, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tb.Close()
	for _, p := range []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoICMP} {
		b.Run("proto="+strings.ToLower(p.String()), func(b *testing.B) {
			port := uint16(80)
			if p == policy.ProtoICMP {
				port = 0
			}
			batch := make([]policy.Flow, 256)
			for i := range batch {
				src := netip.AddrFrom4([4]byte{198, 18, byte(i % 4), byte(1 + i/4)})
				dst := netip.AddrFrom4([4]byte{198, 18, byte((i + 1) % 4), byte(100 + i/4)})
				batch[i] = flow(src, dst, p, port)
			}
			n := 0
			for b.Loop() {
				got, err := tb.Probe(context.Background(), batch, ProbeOptions{ConfirmTimeout: -1})
				if err != nil {
					b.Fatal(err)
				}
				lost := 0
				for _, ok := range got {
					if !ok {
						lost++
					}
				}
				if lost > 0 {
					b.Fatalf("%d of %d probes not delivered within the timeout", lost, len(batch))
				}
				n += len(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/probe")
		})
	}
}

func TestLeftoverParsersTellEmptyFromEnforcing(t *testing.T) {
	emptySave := "# Generated by iptables-nft-save\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
	if got := iptablesLeftovers([]byte(emptySave)); len(got) != 0 {
		t.Errorf("empty iptables-save: leftovers %q", got)
	}
	for _, save := range []string{
		"*filter\n:FORWARD ACCEPT [0:0]\n:NPB-FORWARD - [0:0]\nCOMMIT\n",
		"*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -j DROP\nCOMMIT\n",
		"*filter\n:FORWARD DROP [0:0]\nCOMMIT\n",
	} {
		if got := iptablesLeftovers([]byte(save)); len(got) == 0 {
			t.Errorf("iptables-save %q: no leftovers found", save)
		}
	}
	emptyNft := "table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n"
	if got := nftLeftovers([]byte(emptyNft)); len(got) != 0 {
		t.Errorf("empty nft ruleset: leftovers %q", got)
	}
	for _, list := range []string{
		"table inet t {\n\tchain c {\n\t\ttype filter hook forward priority 0; policy drop;\n\t}\n}\n",
		"table ip filter {\n\tchain FORWARD {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tcounter jump NPB-FORWARD\n\t}\n}\n",
	} {
		if got := nftLeftovers([]byte(list)); len(got) == 0 {
			t.Errorf("nft ruleset %q: no leftovers found", list)
		}
	}
}

// TestSysctlsLandInTheTestbedNotTheRootNamespace reads back, inside each namespace, the
// settings New wrote there, and checks the calling process's own namespace kept its values.
func TestSysctlsLandInTheTestbedNotTheRootNamespace(t *testing.T) {
	testenv.NeedRoot(t)
	keys := []string{"net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.all.accept_local",
		"net.ipv4.conf.all.send_redirects", "net.ipv4.fwmark_reflect", "net.ipv4.tcp_fwmark_accept"}
	readAll := func() map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			v, err := readSysctl(k)
			if err != nil {
				t.Fatalf("read %s: %v", k, err)
			}
			m[k] = v
		}
		return m
	}
	own := readAll()
	tb := ForTest(t, Options{PodNamespaces: 1})
	want := map[*nsInfo]map[string]string{
		&tb.node:    {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.all.send_redirects": "0"},
		&tb.pods[0]: {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.all.accept_local": "1", "net.ipv4.fwmark_reflect": "1", "net.ipv4.tcp_fwmark_accept": "1"},
		&tb.out:     {"net.ipv4.conf.all.rp_filter": "0"},
	}
	for ns, kv := range want {
		var got map[string]string
		if err := ns.ns.Do(func() error { got = readAll(); return nil }); err != nil {
			t.Fatalf("enter %s: %v", ns.name, err)
		}
		for k, v := range kv {
			if got[k] != v {
				t.Errorf("%s: %s = %s, want %s", ns.name, k, got[k], v)
			}
		}
	}
	if after := readAll(); fmt.Sprint(after) != fmt.Sprint(own) {
		t.Errorf("the process's own namespace changed: %v, was %v", after, own)
	}
}
