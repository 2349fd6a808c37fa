package stamp

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"netpolbench/internal/needs"
	"netpolbench/internal/netns"
	"netpolbench/internal/testenv"
)

func TestDecodeSampleReadsEveryField(t *testing.T) {
	b := make([]byte, sampleSize)
	binary.LittleEndian.PutUint64(b[0:], 1234)
	binary.LittleEndian.PutUint64(b[8:], 200)
	copy(b[16:], []byte{198, 18, 0, 2})
	copy(b[20:], []byte{198, 18, 1, 2})
	binary.BigEndian.PutUint16(b[24:], 40000)
	binary.BigEndian.PutUint16(b[26:], 8080)
	b[28], b[29], b[30], b[31] = 6, 0x02, uint8(HookTCXEgress), 1
	binary.LittleEndian.PutUint32(b[32:], 77)
	got, err := decodeSample(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{Delta: 1234, Carry: 200, Src: netip.MustParseAddr("198.18.0.2"), Dst: netip.MustParseAddr("198.18.1.2"),
		SrcPort: 40000, DstPort: 8080, Proto: 6, TCPFlags: 0x02, Hook: HookTCXEgress, Dropped: true, Reason: 77}
	if got != want {
		t.Fatalf("decode: got %+v, want %+v", got, want)
	}
	if _, err := decodeSample(b[:10]); err == nil {
		t.Fatal("decode of a short record: no error")
	}
}

func TestSampleNewOnlyForSynOrNonTCP(t *testing.T) {
	for _, c := range []struct {
		proto, flags uint8
		want         bool
	}{{6, 0x02, true}, {6, 0x12, false}, {6, 0x10, false}, {17, 0, true}, {1, 0, true}} {
		if got := (Sample{Proto: c.proto, TCPFlags: c.flags}).New(); got != c.want {
			t.Errorf("proto %d flags %#x: New() = %v, want %v", c.proto, c.flags, got, c.want)
		}
	}
}

// pair is a minimal routed topology: pod namespace a -- node -- pod namespace b, all owned by
// the test. Enforcement and stamps go on the node.
type pair struct {
	a, node, b   *netns.NS
	ifA, ifB     int // node-side veth ifindexes
	addrA, addrB netip.Addr
	podRange     netip.Prefix
}

func mustPair(t *testing.T) *pair {
	t.Helper()
	testenv.NeedKernel(t, needs.BPF)
	p := &pair{addrA: netip.MustParseAddr("198.18.0.2"), addrB: netip.MustParseAddr("198.18.1.2"),
		podRange: netip.MustParsePrefix("198.18.0.0/15")}
	prefix := fmt.Sprintf("npb-stamptest-%d-%x", os.Getpid(), rand.Uint32())
	mk := func(suffix string) *netns.NS {
		name := prefix + "-" + suffix
		ns, err := netns.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ns.Close()
			if err := netns.Delete(name); err != nil {
				t.Error(err)
			}
		})
		return ns
	}
	p.a, p.node, p.b = mk("a"), mk("node"), mk("b")
	nh, err := p.node.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	link := func(nodeSide, podSide string, pod *netns.NS, gw, addr string) int {
		la := netlink.NewLinkAttrs()
		la.Name = nodeSide
		if err := nh.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: podSide}); err != nil {
			t.Fatalf("add veth %s: %v", nodeSide, err)
		}
		peer, err := nh.LinkByName(podSide)
		if err != nil {
			t.Fatal(err)
		}
		if err := nh.LinkSetNsFd(peer, pod.FD()); err != nil {
			t.Fatal(err)
		}
		l, err := nh.LinkByName(nodeSide)
		if err != nil {
			t.Fatal(err)
		}
		if err := nh.AddrAdd(l, &netlink.Addr{IPNet: mustIPNet(gw + "/24")}); err != nil {
			t.Fatal(err)
		}
		if err := nh.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		ph, err := pod.Netlink()
		if err != nil {
			t.Fatal(err)
		}
		defer ph.Close()
		pl, err := ph.LinkByName(podSide)
		if err != nil {
			t.Fatal(err)
		}
		if err := ph.AddrAdd(pl, &netlink.Addr{IPNet: mustIPNet(addr + "/24")}); err != nil {
			t.Fatal(err)
		}
		if err := ph.LinkSetUp(pl); err != nil {
			t.Fatal(err)
		}
		lo, err := ph.LinkByName("lo")
		if err == nil {
			ph.LinkSetUp(lo)
		}
		if err := ph.RouteAdd(&netlink.Route{Dst: mustIPNet("198.18.0.0/15"), Gw: net.ParseIP(gw), LinkIndex: pl.Attrs().Index}); err != nil {
			t.Fatalf("route in pod netns: %v", err)
		}
		return l.Attrs().Index
	}
	p.ifA = link("npbA", "eth0", p.a, "198.18.0.1", "198.18.0.2")
	p.ifB = link("npbB", "eth0", p.b, "198.18.1.1", "198.18.1.2")
	if err := p.node.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatalf("enable forwarding in node netns: %v", err)
	}
	return p
}

func mustIPNet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// mustUDP opens a UDP socket bound to addr inside ns.
func mustUDP(t *testing.T, ns *netns.NS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendUDP sends n datagrams from c to dst, paced so the ring buffer and queues never fill.
func sendUDP(t *testing.T, c *net.UDPConn, dst netip.AddrPort, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := c.WriteToUDPAddrPort([]byte("netpolbench"), dst); err != nil {
			t.Fatalf("send to %s: %v", dst, err)
		}
		if i%50 == 49 {
			time.Sleep(time.Millisecond)
		}
	}
}

func mustStamps(t *testing.T, opts Options) *Stamps {
	t.Helper()
	s, err := Load(opts)
	if err != nil {
		t.Fatalf("load stamps: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func collect(t *testing.T, s *Stamps, want int) []Sample {
	t.Helper()
	var all []Sample
	deadline := time.Now().Add(3 * time.Second)
	for len(all) < want && time.Now().Before(deadline) {
		got, err := s.Drain(200 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	return all
}

type tally struct{ passed, dropped int }

func count(samples []Sample, port uint16) (tally, map[string]int, map[Hook]int) {
	var tl tally
	reasons := map[string]int{}
	hooks := map[Hook]int{}
	for _, s := range samples {
		if s.DstPort != port {
			continue
		}
		hooks[s.Hook]++
		if s.Dropped {
			tl.dropped++
			reasons[fmt.Sprint(s.Reason)]++
		} else {
			tl.passed++
		}
	}
	return tl, reasons, hooks
}

func TestTCXStampsPairAllowedAndDroppedPackets(t *testing.T) {
	p := mustPair(t)
	const allowPort, dropPort, n = 9000, 9001, 200
	s := mustStamps(t, Options{PodRange: p.podRange, StepDropPort: dropPort})
	if err := p.node.Do(func() error {
		for _, ifi := range []int{p.ifA, p.ifB} {
			if err := s.AttachTCX(ifi); err != nil {
				return err
			}
		}
		return s.AttachStep(p.ifA)
	}); err != nil {
		t.Fatal(err)
	}
	src := mustUDP(t, p.a, netip.AddrPortFrom(p.addrA, 40000))
	mustUDP(t, p.b, netip.AddrPortFrom(p.addrB, allowPort))
	// Warm up neighbour entries so no packet waits in an ARP queue between the stamps.
	sendUDP(t, src, netip.AddrPortFrom(p.addrB, allowPort), 5)
	time.Sleep(100 * time.Millisecond)
	if _, err := s.Drain(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, src, netip.AddrPortFrom(p.addrB, allowPort), n)
	sendUDP(t, src, netip.AddrPortFrom(p.addrB, dropPort), n)
	samples := collect(t, s, 2*n)

	allowed, _, hooks := count(samples, allowPort)
	if allowed.passed < n*95/100 || allowed.dropped != 0 {
		t.Errorf("allowed port: %d passed, %d dropped of %d sent (hooks %v)", allowed.passed, allowed.dropped, n, hooks)
	}
	if hooks[HookTCXEgress] != allowed.passed {
		t.Errorf("allowed packets should close at the destination's egress stamp: hooks %v", hooks)
	}
	for _, smp := range samples {
		if smp.DstPort == allowPort && (smp.Carry == 0 || smp.Carry >= smp.Delta) {
			t.Fatalf("allowed pod-to-pod sample without both parts: %+v", smp)
		}
	}
	denied, reasons, _ := count(samples, dropPort)
	if denied.dropped < n*95/100 || denied.passed != 0 {
		t.Errorf("dropped port: %d dropped, %d passed of %d sent", denied.dropped, denied.passed, n)
	}
	for r := range reasons {
		var num uint32
		fmt.Sscan(r, &num)
		if name := s.ReasonName(num); !strings.Contains(name, "TC_INGRESS") {
			t.Errorf("drop reason %s, want SKB_DROP_REASON_TC_INGRESS", name)
		}
	}
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Lost != 0 {
		t.Errorf("ring buffer lost %d samples", c.Lost)
	}
	t.Logf("counters %+v; median allowed delta %d ns", c, medianDelta(samples, allowPort))
}

func TestNetfilterStampsPairAroundFilterTable(t *testing.T) {
	testenv.NeedKernel(t, needs.Tool("nft", "nftables"))
	p := mustPair(t)
	const allowPort, dropPort, n = 9000, 9001, 200
	// The trivial step: a filter-priority forward chain that drops one port, in the node netns.
	rules := fmt.Sprintf("table ip npbtest { chain forward { type filter hook forward priority 0; udp dport %d drop\n}\n}\n", dropPort)
	if _, stderr, err := p.node.Run("nft", []string{"-f", "-"}, []byte(rules)); err != nil {
		t.Fatalf("nft in node netns: %v: %s", err, stderr)
	}
	s := mustStamps(t, Options{PodRange: p.podRange})
	if err := p.node.Do(s.AttachNetfilter); err != nil {
		t.Fatal(err)
	}
	src := mustUDP(t, p.a, netip.AddrPortFrom(p.addrA, 40000))
	mustUDP(t, p.b, netip.AddrPortFrom(p.addrB, allowPort))
	sendUDP(t, src, netip.AddrPortFrom(p.addrB, allowPort), 5)
	time.Sleep(100 * time.Millisecond)
	if _, err := s.Drain(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	sendUDP(t, src, netip.AddrPortFrom(p.addrB, allowPort), n)
	sendUDP(t, src, netip.AddrPortFrom(p.addrB, dropPort), n)
	samples := collect(t, s, 2*n)
	allowed, _, hooks := count(samples, allowPort)
	if allowed.passed < n*95/100 || allowed.dropped != 0 || hooks[HookNetfilterForward] != allowed.passed {
		t.Errorf("allowed port: %d passed, %d dropped of %d sent (hooks %v)", allowed.passed, allowed.dropped, n, hooks)
	}
	denied, reasons, _ := count(samples, dropPort)
	if denied.dropped < n*95/100 || denied.passed != 0 {
		t.Errorf("dropped port: %d dropped, %d passed of %d sent", denied.dropped, denied.passed, n)
	}
	for r := range reasons {
		var num uint32
		fmt.Sscan(r, &num)
		if name := s.ReasonName(num); !strings.Contains(name, "NETFILTER_DROP") {
			t.Errorf("drop reason %s, want SKB_DROP_REASON_NETFILTER_DROP", name)
		}
	}
	t.Logf("median allowed delta %d ns", medianDelta(samples, allowPort))
}

func medianDelta(samples []Sample, port uint16) uint64 {
	var d []uint64
	for _, s := range samples {
		if s.DstPort == port && !s.Dropped {
			d = append(d, s.Delta)
		}
	}
	if len(d) == 0 {
		return 0
	}
	for i := range d {
		for j := i + 1; j < len(d); j++ {
			if d[j] < d[i] {
				d[i], d[j] = d[j], d[i]
			}
		}
	}
	return d[len(d)/2]
}
