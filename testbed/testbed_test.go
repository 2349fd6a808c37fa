package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"netpolbench/policy"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces under /run/netns (CAP_SYS_ADMIN, CAP_NET_ADMIN)")
	}
}

// mustTestbed builds a testbed and removes it when the test ends, also after a failure.
func mustTestbed(t *testing.T, opts Options) *Testbed {
	t.Helper()
	requireRoot(t)
	tb, err := New(opts)
	if err != nil {
		t.Fatalf("new testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Errorf("close testbed: %v", err)
		}
	})
	return tb
}

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
	tb := mustTestbed(t, Options{})
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
	tb := mustTestbed(t, Options{})
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
	tb := mustTestbed(t, Options{})
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft to install a drop rule in the node namespace")
	}
	nft := exec.Command("ip", "netns", "exec", tb.NodeNamespace(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader("table inet npbtest {\n chain dropall {\n  type filter hook forward priority 0; policy drop;\n }\n}\n")
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
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
	if d := time.Since(start); d > 3*time.Second {
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
	requireRoot(t)
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
