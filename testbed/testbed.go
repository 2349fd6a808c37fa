package testbed

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"netpolbench/internal/needs"
	"netpolbench/internal/netns"
)

var (
	// PodRange holds every pod address the testbed can carry.
	PodRange = netip.MustParsePrefix("198.18.0.0/15")
	// OutsideRange holds the external hosts of the outside namespace.
	OutsideRange = netip.MustParsePrefix("203.0.113.0/24")
)

const (
	defaultPodNamespaces = 4
	defaultBlockBits     = 24
	maxPodNamespaces     = 64

	// podTable is the routing table a pod namespace uses for locally sent pod-range traffic: one
	// route to the node, so traffic between two addresses of one block still crosses the node.
	podTable = 100
	// selfMark marks self-traffic probes; a rule above podTable's sends them to the local table.
	selfMark = 0x1

	// Rule priorities in pod namespaces: self traffic, then pod-range via the node, then the
	// local table moved down from priority 0.
	prioSelf  = 50
	prioToPod = 100
	prioLocal = 200
)

// Link-local gateway addresses for the static neighbours on each veth. They are never put on
// an interface and never appear in a packet: they only name the next hop.
var (
	nodeGateway    = net.IPv4(169, 254, 1, 1)
	outsideGateway = net.IPv4(169, 254, 3, 1)
)

func podGateway(i int) net.IP { return net.IPv4(169, 254, 2, byte(i+1)) }

// Options configure a Testbed.
type Options struct {
	// PodNamespaces is the number of real pod namespaces, 1..64; 0 means 4.
	PodNamespaces int
	// PodPrefix is the part of 198.18.0.0/15 the testbed carries; the zero value means all of
	// it. A smaller prefix means fewer blocks and so fewer routes to set up.
	PodPrefix netip.Prefix
	// BlockBits is the prefix length of the address blocks of PodPrefix that are dealt out to
	// the pod namespaces round-robin, up to 28; 0 means 24 (256 addresses a block, 512 blocks
	// in the /15). Setup cost grows with the number of blocks, not with the number of pods.
	BlockBits int

	// stepHook, when set, is called after each setup step (tests stop a run mid-setup).
	stepHook func(step string)
}

// Veth is the node-side end of a veth pair, as seen in the node namespace.
type Veth struct {
	// Name and Index identify the interface inside the node namespace.
	Name  string
	Index int
	// Peer is the name of the namespace at the other end.
	Peer string
	// Outside is true for the veth to the outside namespace.
	Outside bool
}

type nsInfo struct {
	name string
	ns   *netns.NS
	h    *netlink.Handle
	veth Veth // node side; zero for the node itself
}

// Testbed is a set of namespaces built by New. Close removes them; so does SIGINT or SIGTERM
// while the process runs, and Cleanup after it was killed.
type Testbed struct {
	run       string
	podNS     int
	podPrefix netip.Prefix
	blockBits int
	node      nsInfo
	pods      []nsInfo
	out       nsInfo

	mu        sync.Mutex
	closed    bool
	pendingNS []string // every namespace created so far, for Close

	// ports are the source ports generated new-flow packets have used (Generator).
	ports sourcePorts
	// until are the receivers concurrent SendUntil calls share.
	until sharedReceivers
}

// New builds a testbed. It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
func New(opts Options) (tb *Testbed, err error) {
	if opts.PodNamespaces == 0 {
		opts.PodNamespaces = defaultPodNamespaces
	}
	if opts.BlockBits == 0 {
		opts.BlockBits = defaultBlockBits
	}
	if opts.PodNamespaces < 1 || opts.PodNamespaces > maxPodNamespaces {
		return nil, fmt.Errorf("new testbed: %d pod namespaces (want 1..%d)", opts.PodNamespaces, maxPodNamespaces)
	}
	if !opts.PodPrefix.IsValid() {
		opts.PodPrefix = PodRange
	}
	opts.PodPrefix = opts.PodPrefix.Masked()
	if !opts.PodPrefix.Addr().Is4() || opts.PodPrefix.Bits() < PodRange.Bits() || !PodRange.Contains(opts.PodPrefix.Addr()) {
		return nil, fmt.Errorf("new testbed: pod prefix %s is not inside %s", opts.PodPrefix, PodRange)
	}
	if opts.BlockBits < opts.PodPrefix.Bits() || opts.BlockBits > 28 {
		return nil, fmt.Errorf("new testbed: block bits %d (want %d..28)", opts.BlockBits, opts.PodPrefix.Bits())
	}
	if n := 1 << (opts.BlockBits - opts.PodPrefix.Bits()); n < opts.PodNamespaces {
		return nil, fmt.Errorf("new testbed: %d blocks for %d pod namespaces (use longer blocks)", n, opts.PodNamespaces)
	}
	if needs.Root.Check() != nil {
		return nil, fmt.Errorf("new testbed: %w", ErrNeedRoot)
	}
	run, err := newRunName()
	if err != nil {
		return nil, err
	}
	tb = &Testbed{run: run, podNS: opts.PodNamespaces, podPrefix: opts.PodPrefix, blockBits: opts.BlockBits}
	register(tb)
	defer func() {
		if err != nil {
			err = errors.Join(err, tb.Close())
			tb = nil
		}
	}()
	step := func(s string) {
		if opts.stepHook != nil {
			opts.stepHook(s)
		}
	}
	if err := tb.build(step); err != nil {
		return nil, err
	}
	// A packet sent before a veth's queueing discipline is in place is dropped: no probe or
	// generator may meet a testbed in that state.
	if err := tb.WaitLinksUp(5 * time.Second); err != nil {
		return nil, fmt.Errorf("new testbed: %w", err)
	}
	return tb, nil
}

// ErrNeedRoot is returned when the process lacks the privileges the testbed needs.
var ErrNeedRoot = errors.New("testbed needs root (CAP_SYS_ADMIN to mount /run/netns, CAP_NET_ADMIN)")

func (tb *Testbed) build(step func(string)) error {
	var err error
	if tb.node, err = tb.newNS("node"); err != nil {
		return err
	}
	step(tb.node.name)
	if err := tb.node.ns.Do(func() error { return setSysctls(nodeSysctls) }); err != nil {
		return fmt.Errorf("configure node netns: %w", err)
	}
	for i := range tb.podNS {
		p, err := tb.newNS(fmt.Sprintf("pod%d", i))
		if err != nil {
			return err
		}
		tb.pods = append(tb.pods, p)
		step(p.name)
	}
	if tb.out, err = tb.newNS("out"); err != nil {
		return err
	}
	step(tb.out.name)
	for i := range tb.pods {
		p := &tb.pods[i]
		if err := tb.connect(p, fmt.Sprintf("npb-pod%d", i)); err != nil {
			return err
		}
		if err := tb.routePod(i); err != nil {
			return err
		}
		step("veth " + p.name)
	}
	if err := tb.connect(&tb.out, "npb-out"); err != nil {
		return err
	}
	tb.out.veth.Outside = true
	if err := tb.routeOutside(); err != nil {
		return err
	}
	step("veth " + tb.out.name)
	return nil
}

var (
	// Every namespace: no IPv6 (its autoconfiguration would add packets to the counters the
	// tests read) and no reverse-path filter (traffic between addresses of one block leaves and
	// comes back on the same veth).
	commonSysctls = [][2]string{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	}
	nodeSysctls = append(append([][2]string(nil), commonSysctls...),
		[2]string{"net.ipv4.ip_forward", "1"},
		// Pod-to-pod traffic inside one block leaves and re-enters through the same veth; a
		// redirect would tell the pod to bypass the node.
		[2]string{"net.ipv4.conf.all.send_redirects", "0"},
		[2]string{"net.ipv4.conf.default.send_redirects", "0"},
	)
	endSysctls = append(append([][2]string(nil), commonSysctls...),
		// Packets from another address of the same block arrive with a local source address.
		[2]string{"net.ipv4.conf.all.accept_local", "1"},
		[2]string{"net.ipv4.conf.default.accept_local", "1"},
		// Replies to marked self traffic keep the mark, so they stay local too.
		[2]string{"net.ipv4.fwmark_reflect", "1"},
		[2]string{"net.ipv4.tcp_fwmark_accept", "1"},
	)
)

func setSysctls(kv [][2]string) error {
	for _, s := range kv {
		if err := writeSysctl(s[0], s[1]); err != nil {
			if errors.Is(err, os.ErrNotExist) && len(s[0]) > 9 && s[0][:9] == "net.ipv6." {
				continue // a kernel without IPv6 has nothing to disable
			}
			return err
		}
	}
	return nil
}

func (tb *Testbed) newNS(suffix string) (nsInfo, error) {
	name := tb.run + "-" + suffix
	ns, err := netns.Create(name)
	if err != nil {
		return nsInfo{}, err
	}
	info := nsInfo{name: name, ns: ns}
	// Record it before anything else can fail, so Close removes it.
	tb.mu.Lock()
	tb.pendingNS = append(tb.pendingNS, name)
	tb.mu.Unlock()
	info.h, err = ns.Netlink()
	if err != nil {
		return info, err
	}
	lo, err := info.h.LinkByName("lo")
	if err != nil {
		return info, fmt.Errorf("find lo in %s: %w", name, err)
	}
	if err := info.h.LinkSetUp(lo); err != nil {
		return info, fmt.Errorf("set lo up in %s: %w", name, err)
	}
	if suffix != "node" {
		if err := ns.Do(func() error { return setSysctls(endSysctls) }); err != nil {
			return info, fmt.Errorf("configure %s: %w", name, err)
		}
	}
	return info, nil
}

// connect creates the veth pair node:nodeName <-> p:eth0 and the static neighbours on both
// sides; the veth is created inside the node namespace, so it never exists in the root one.
func (tb *Testbed) connect(p *nsInfo, nodeName string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: nodeName},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(p.ns.FD()),
	}
	if err := tb.node.h.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s to %s: %w", nodeName, p.name, err)
	}
	nodeEnd, err := tb.node.h.LinkByName(nodeName)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", nodeName, err)
	}
	podEnd, err := p.h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 in %s: %w", p.name, err)
	}
	for _, x := range []struct {
		h *netlink.Handle
		l netlink.Link
	}{{tb.node.h, nodeEnd}, {p.h, podEnd}} {
		if err := x.h.LinkSetUp(x.l); err != nil {
			return fmt.Errorf("set %s up: %w", x.l.Attrs().Name, err)
		}
	}
	if err := tb.node.ns.Do(func() error {
		return setSysctls([][2]string{
			{"net.ipv4.conf." + nodeName + ".rp_filter", "0"},
			{"net.ipv4.conf." + nodeName + ".send_redirects", "0"},
		})
	}); err != nil {
		return fmt.Errorf("configure %s: %w", nodeName, err)
	}
	p.veth = Veth{Name: nodeName, Index: nodeEnd.Attrs().Index, Peer: p.name}
	// The pod side reaches the node through nodeGateway.
	if err := p.h.NeighAdd(&netlink.Neigh{
		LinkIndex: podEnd.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: nodeGateway, HardwareAddr: nodeEnd.Attrs().HardwareAddr,
	}); err != nil {
		return fmt.Errorf("add gateway neighbour in %s: %w", p.name, err)
	}
	if err := p.h.RouteAdd(&netlink.Route{
		LinkIndex: podEnd.Attrs().Index, Gw: nodeGateway, Flags: int(netlink.FLAG_ONLINK),
	}); err != nil {
		return fmt.Errorf("add default route in %s: %w", p.name, err)
	}
	return nil
}

// routePod makes pod namespace i carry its blocks: local (AnyIP) there, routed to its veth on
// the node, and pod-range traffic sent from it forced through the node.
func (tb *Testbed) routePod(i int) error {
	p := &tb.pods[i]
	gw := podGateway(i)
	podEnd, err := p.h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 in %s: %w", p.name, err)
	}
	if err := tb.node.h.NeighAdd(&netlink.Neigh{
		LinkIndex: p.veth.Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: gw, HardwareAddr: podEnd.Attrs().HardwareAddr,
	}); err != nil {
		return fmt.Errorf("add neighbour for %s on node: %w", p.name, err)
	}
	lo, err := p.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", p.name, err)
	}
	for _, blk := range tb.blocksOf(i) {
		dst := prefixNet(blk)
		if err := tb.node.h.RouteAdd(&netlink.Route{
			LinkIndex: p.veth.Index, Dst: dst, Gw: gw, Flags: int(netlink.FLAG_ONLINK),
		}); err != nil {
			return fmt.Errorf("route %s to %s on node: %w", blk, p.name, err)
		}
		if err := p.h.RouteAdd(&netlink.Route{
			LinkIndex: lo.Attrs().Index, Dst: dst, Table: unix.RT_TABLE_LOCAL,
			Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST,
		}); err != nil {
			return fmt.Errorf("make %s local in %s: %w", blk, p.name, err)
		}
	}
	if err := p.h.RouteAdd(&netlink.Route{
		LinkIndex: podEnd.Attrs().Index, Dst: prefixNet(PodRange), Gw: nodeGateway,
		Flags: int(netlink.FLAG_ONLINK), Table: podTable,
	}); err != nil {
		return fmt.Errorf("add pod-range route in %s: %w", p.name, err)
	}
	return tb.podRules(p)
}

// podRules moves the local table below a rule that sends locally generated pod-range traffic
// to the node, with marked self traffic above both.
func (tb *Testbed) podRules(p *nsInfo) error {
	mask := uint32(selfMark)
	self := netlink.NewRule()
	self.Priority, self.Mark, self.Mask, self.Table = prioSelf, selfMark, &mask, unix.RT_TABLE_LOCAL
	toPod := netlink.NewRule()
	toPod.Priority, toPod.IifName, toPod.Dst, toPod.Table = prioToPod, "lo", prefixNet(PodRange), podTable
	local := netlink.NewRule()
	local.Priority, local.Table = prioLocal, unix.RT_TABLE_LOCAL
	for _, r := range []*netlink.Rule{self, toPod, local} {
		if err := p.h.RuleAdd(r); err != nil {
			return fmt.Errorf("add rule %d in %s: %w", r.Priority, p.name, err)
		}
	}
	old := netlink.NewRule()
	old.Priority, old.Table = 0, unix.RT_TABLE_LOCAL
	if err := p.h.RuleDel(old); err != nil {
		return fmt.Errorf("delete local rule 0 in %s: %w", p.name, err)
	}
	return nil
}

func (tb *Testbed) routeOutside() error {
	o := &tb.out
	outEnd, err := o.h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 in %s: %w", o.name, err)
	}
	if err := tb.node.h.NeighAdd(&netlink.Neigh{
		LinkIndex: o.veth.Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: outsideGateway, HardwareAddr: outEnd.Attrs().HardwareAddr,
	}); err != nil {
		return fmt.Errorf("add neighbour for %s on node: %w", o.name, err)
	}
	if err := tb.node.h.RouteAdd(&netlink.Route{
		LinkIndex: o.veth.Index, Dst: prefixNet(OutsideRange), Gw: outsideGateway, Flags: int(netlink.FLAG_ONLINK),
	}); err != nil {
		return fmt.Errorf("route %s to %s on node: %w", OutsideRange, o.name, err)
	}
	lo, err := o.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", o.name, err)
	}
	if err := o.h.RouteAdd(&netlink.Route{
		LinkIndex: lo.Attrs().Index, Dst: prefixNet(OutsideRange), Table: unix.RT_TABLE_LOCAL,
		Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST,
	}); err != nil {
		return fmt.Errorf("make %s local in %s: %w", OutsideRange, o.name, err)
	}
	return nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// blocksOf returns the pod blocks dealt to pod namespace i.
func (tb *Testbed) blocksOf(i int) []netip.Prefix {
	n := 1 << (tb.blockBits - tb.podPrefix.Bits())
	base := addrUint(tb.podPrefix.Addr())
	var out []netip.Prefix
	for b := i; b < n; b += tb.podNS {
		a := uint32ToAddr(base + uint32(b)<<(32-tb.blockBits))
		out = append(out, netip.PrefixFrom(a, tb.blockBits))
	}
	return out
}

func addrUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uint32ToAddr(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// PodNamespaceOf returns the index of the pod namespace carrying a pod address, or -1 when
// the testbed does not carry it.
func (tb *Testbed) PodNamespaceOf(ip netip.Addr) int {
	if !ip.Is4() || !tb.podPrefix.Contains(ip) {
		return -1
	}
	off := addrUint(ip) - addrUint(tb.podPrefix.Addr())
	return int(off>>(32-tb.blockBits)) % tb.podNS
}

// nsFor returns the namespace an address lives in: a pod namespace, or the outside one.
func (tb *Testbed) nsFor(ip netip.Addr) (*nsInfo, error) {
	ip = ip.Unmap()
	if i := tb.PodNamespaceOf(ip); i >= 0 {
		return &tb.pods[i], nil
	}
	if ip.Is4() && OutsideRange.Contains(ip) {
		return &tb.out, nil
	}
	return nil, fmt.Errorf("address %s is in neither %s (this testbed's pods) nor %s (outside)", ip, tb.podPrefix, OutsideRange)
}

// Name is the run-unique prefix of the testbed's namespace names.
func (tb *Testbed) Name() string { return tb.run }

// NodeNamespace is the name of the node namespace under /run/netns (`ip netns exec` takes it).
func (tb *Testbed) NodeNamespace() string { return tb.node.name }

// NamespaceOf returns the name of the namespace an address lives in: the pod namespace
// carrying a pod address, or the outside namespace for 203.0.113.0/24.
func (tb *Testbed) NamespaceOf(ip netip.Addr) (string, error) {
	ns, err := tb.nsFor(ip)
	if err != nil {
		return "", err
	}
	return ns.name, nil
}

// InNamespaceOf runs fn inside the namespace an address lives in (see netns.NS.Do). Sockets
// made there stay in that namespace and may be used from any goroutine afterwards.
func (tb *Testbed) InNamespaceOf(ip netip.Addr, fn func() error) error {
	ns, err := tb.nsFor(ip)
	if err != nil {
		return err
	}
	return ns.ns.Do(fn)
}

// Namespaces lists every namespace of the testbed, in a fixed order: node, pod0..podN-1,
// outside.
func (tb *Testbed) Namespaces() []string {
	out := []string{tb.node.name}
	for _, p := range tb.pods {
		out = append(out, p.name)
	}
	return append(out, tb.out.name)
}

// PodVeths returns the node-side ends of the pod veths, in pod-namespace order.
func (tb *Testbed) PodVeths() []Veth {
	out := make([]Veth, len(tb.pods))
	for i, p := range tb.pods {
		out[i] = p.veth
	}
	return out
}

// OutsideVeth returns the node-side end of the veth to the outside namespace.
func (tb *Testbed) OutsideVeth() Veth { return tb.out.veth }

// InNode runs fn inside the node namespace (for TCX attachment and other calls that act on the
// current thread's namespace; see netns.NS.Do).
func (tb *Testbed) InNode(fn func() error) error { return tb.node.ns.Do(fn) }

// RunInNode runs a command inside the node namespace and returns its stdout; a non-zero exit
// is an error quoting stderr.
func (tb *Testbed) RunInNode(name string, args []string, stdin []byte) ([]byte, error) {
	out, stderr, err := tb.node.ns.Run(name, args, stdin)
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(stderr)))
	}
	return out, nil
}

// NodeHandle is a netlink handle inside the node namespace, owned by the testbed.
func (tb *Testbed) NodeHandle() *netlink.Handle { return tb.node.h }

// FlushConntrack empties the node's conntrack table, so a backend never inherits the previous
// backend's connections.
func (tb *Testbed) FlushConntrack() error {
	if err := tb.node.h.ConntrackTableFlush(netlink.ConntrackTable); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("flush node conntrack: %w", err)
	}
	return nil
}

// Close removes every namespace of the testbed (with them their veths, routes and rules).
// It is safe to call twice.
func (tb *Testbed) Close() error {
	tb.mu.Lock()
	if tb.closed {
		tb.mu.Unlock()
		return nil
	}
	tb.closed = true
	names := tb.pendingNS
	tb.mu.Unlock()
	unregister(tb)
	var errs []error
	for _, p := range append(append([]nsInfo{tb.node}, tb.pods...), tb.out) {
		if p.h != nil {
			p.h.Close()
		}
		p.ns.Close()
	}
	for _, n := range names {
		if err := netns.Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Live testbeds are removed when the process gets SIGINT or SIGTERM; the signal is then
// delivered again with its default action, so the exit status still says what happened.
var (
	liveMu    sync.Mutex
	live      = map[*Testbed]struct{}{}
	sigCh     chan os.Signal
	sigOff    bool
	sigNotify sync.Once
)

// KeepOnSignal turns off the removal of live testbeds on SIGINT and SIGTERM, for a program
// that handles those signals itself and closes its testbeds as it stops (the benchmark, which
// writes what it measured first). Without it, the namespaces would vanish under the phases
// still running, and the signal's default action would end the process before it could write.
func KeepOnSignal() {
	liveMu.Lock()
	defer liveMu.Unlock()
	sigOff = true
	if sigCh != nil {
		signal.Stop(sigCh)
	}
}

func register(tb *Testbed) {
	liveMu.Lock()
	defer liveMu.Unlock()
	live[tb] = struct{}{}
	if sigOff {
		return
	}
	sigNotify.Do(func() {
		sigCh = make(chan os.Signal, 1)
		signal.Notify(sigCh, syscall.SIGINT, syscall.SIGTERM)
		go func(ch chan os.Signal) {
			sig := <-ch
			liveMu.Lock()
			all := make([]*Testbed, 0, len(live))
			for t := range live {
				all = append(all, t)
			}
			liveMu.Unlock()
			for _, t := range all {
				if err := t.Close(); err != nil {
					fmt.Fprintln(os.Stderr, "testbed: cleanup on signal:", err)
				}
			}
			signal.Reset(sig)
			_ = unix.Kill(os.Getpid(), sig.(syscall.Signal))
		}(sigCh)
	})
}

func unregister(tb *Testbed) {
	liveMu.Lock()
	delete(live, tb)
	liveMu.Unlock()
}
