package iptables

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"netpolbench/policy"
)

// Variant is how peers are matched.
type Variant string

const (
	// VariantIPTables matches every peer address with a rule of its own.
	VariantIPTables Variant = "iptables"
	// VariantIPSet matches peers through ipsets, one per (rule set, protocol, port range).
	VariantIPSet Variant = "ipset"
)

// ParseVariant reads a backend name.
func ParseVariant(s string) (Variant, error) {
	switch Variant(s) {
	case VariantIPTables, VariantIPSet:
		return Variant(s), nil
	}
	return "", fmt.Errorf("unknown iptables variant %q (want iptables or ipset)", s)
}

const (
	chainPrefix  = "NPB-"
	chainForward = "NPB-FORWARD"
	chainIngress = "NPB-INGRESS"
	chainEgress  = "NPB-EGRESS"
	chainAllowE  = "NPB-ALLOW-E"
	setPrefix    = "npb-"
	// setMaxElem is fixed so that `create -exist` of an existing set never conflicts; the kernel
	// grows a hash set as members arrive, so the limit costs nothing until used.
	setMaxElem = 1 << 20
	// maxComment is the kernel's limit for -m comment (XT_MAX_COMMENT_LEN - 1).
	maxComment = 255
)

func endpointChain(dir policy.Direction, id uint32) string {
	if dir == policy.Egress {
		return fmt.Sprintf("NPB-E-%d", id)
	}
	return fmt.Sprintf("NPB-I-%d", id)
}

func ruleSetChain(id policy.RuleSetID) string { return fmt.Sprintf("NPB-R-%d", id) }

// exclusionChain names the chain that allows the addresses whose longest ipBlock prefix is the
// CIDR identity id (or, for IdentityWorld, that no prefix holds).
func exclusionChain(dir policy.Direction, id policy.Identity) string {
	d := "I"
	if dir == policy.Egress {
		d = "E"
	}
	if id == policy.IdentityWorld {
		return "NPB-X" + d + "-W"
	}
	return fmt.Sprintf("NPB-X%s-%d", d, uint32(id&^policy.IdentityLocalScope))
}

func dispatchChain(dir policy.Direction) string {
	if dir == policy.Egress {
		return chainEgress
	}
	return chainIngress
}

// peerFlag is the address match of the remote peer: the source for ingress, the destination
// for egress.
func peerFlag(dir policy.Direction) string {
	if dir == policy.Egress {
		return "-d"
	}
	return "-s"
}

func setDir(dir policy.Direction) string {
	if dir == policy.Egress {
		return "dst"
	}
	return "src"
}

// allowTarget ends the policy walk with "allowed": for ingress the packet is accepted, for egress
// the destination's ingress still has to allow it.
func allowTarget(dir policy.Direction) []string {
	if dir == policy.Egress {
		return []string{"-g", chainAllowE}
	}
	return []string{"-j", "ACCEPT"}
}

func hostPrefix(ip netip.Addr) string { return netip.PrefixFrom(ip, ip.BitLen()).String() }

func protoName(p policy.Protocol) string {
	switch p {
	case policy.ProtoTCP:
		return "tcp"
	case policy.ProtoUDP:
		return "udp"
	case policy.ProtoSCTP:
		return "sctp"
	case policy.ProtoICMP:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

func portRange(lo, hi uint16) string {
	if hi == 0 || hi == lo {
		return strconv.Itoa(int(lo))
	}
	return fmt.Sprintf("%d:%d", lo, hi)
}

// l4Args matches an entry's protocol and numeric port range.
func l4Args(proto policy.Protocol, port, end uint16) []string {
	if proto == policy.ProtoAny {
		return nil
	}
	name := protoName(proto)
	if port == 0 || proto == policy.ProtoICMP {
		return []string{"-p", name}
	}
	return []string{"-p", name, "-m", name, "--dport", portRange(port, end)}
}

func commentArgs(rs *policy.RuleSet) []string {
	c := strings.Join(rs.Policies, ",")
	if c == "" {
		c = fmt.Sprintf("ruleset %d", rs.ID)
	}
	if len(c) > maxComment {
		// Keep whole names: cut at the last comma that fits and say how many were left out.
		n := len(rs.Policies)
		for k := n - 1; k > 0; k-- {
			s := strings.Join(rs.Policies[:k], ",") + fmt.Sprintf(",+%d more", n-k)
			if len(s) <= maxComment {
				c = s
				break
			}
		}
		if len(c) > maxComment {
			c = c[:maxComment]
		}
	}
	return []string{"-m", "comment", "--comment", c}
}

func join(parts ...[]string) []string {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]string, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// cidrInfo holds the ipBlock prefixes of a State and, for each, the more specific prefixes
// directly under it: an address in one of those has a longer ipBlock prefix, so the outer
// identity does not hold it.
type cidrInfo struct {
	list     []policy.CIDR
	prefix   map[policy.Identity]netip.Prefix
	byPrefix map[netip.Prefix]policy.Identity
	subs     map[policy.Identity][]netip.Prefix
	// top are the prefixes under no other; hasZero reports a 0.0.0.0/0 ipBlock, which leaves
	// nothing to IdentityWorld.
	top     []netip.Prefix
	hasZero bool
}

func newCIDRInfo(s *policy.State) *cidrInfo {
	ci := &cidrInfo{
		prefix:   map[policy.Identity]netip.Prefix{},
		byPrefix: map[netip.Prefix]policy.Identity{},
		subs:     map[policy.Identity][]netip.Prefix{},
	}
	for _, c := range s.CIDRs() {
		p := c.Prefix.Masked()
		if !p.Addr().Is4() {
			continue
		}
		ci.list = append(ci.list, policy.CIDR{Prefix: p, Identity: c.Identity})
		ci.prefix[c.Identity] = p
		ci.byPrefix[p] = c.Identity
		if p.Bits() == 0 {
			ci.hasZero = true
		}
	}
	all := make([]netip.Prefix, 0, len(ci.list))
	for _, c := range ci.list {
		all = append(all, c.Prefix)
	}
	for _, c := range ci.list {
		ci.subs[c.Identity] = maximalUnder(c.Prefix, all, true)
	}
	ci.top = maximalUnder(netip.PrefixFrom(netip.IPv4Unspecified(), 0), all, false)
	return ci
}

// strictlyInside reports q ⊊ p.
func strictlyInside(q, p netip.Prefix) bool {
	return q.Bits() > p.Bits() && p.Contains(q.Addr())
}

// maximalUnder returns the prefixes of all inside p (strictly if strict) that no other such
// prefix contains, sorted.
func maximalUnder(p netip.Prefix, all []netip.Prefix, strict bool) []netip.Prefix {
	var in []netip.Prefix
	for _, q := range all {
		if strictlyInside(q, p) || (!strict && q == p) {
			in = append(in, q)
		}
	}
	var out []netip.Prefix
	for _, q := range in {
		covered := false
		for _, r := range in {
			if strictlyInside(q, r) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, q)
		}
	}
	sortPrefixes(out)
	return out
}

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}

// exclusionChains returns the shared chains the iptables variant jumps to for CIDR peers that
// have more specific prefixes under them, and for IdentityWorld. Both directions are always
// written so that a partial sync can refer to any of them.
func (ci *cidrInfo) exclusionChains(p *plan) {
	if len(ci.list) == 0 {
		return
	}
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		flag := peerFlag(dir)
		for _, c := range ci.list {
			subs := ci.subs[c.Identity]
			if len(subs) == 0 {
				continue
			}
			name := exclusionChain(dir, c.Identity)
			p.declare = append(p.declare, name)
			for _, q := range subs {
				p.rule(name, flag, q.String(), "-j", "RETURN")
			}
			p.rule(name, allowTarget(dir)...)
		}
		if !ci.hasZero {
			name := exclusionChain(dir, policy.IdentityWorld)
			p.declare = append(p.declare, name)
			for _, q := range ci.top {
				p.rule(name, flag, q.String(), "-j", "RETURN")
			}
			p.rule(name, allowTarget(dir)...)
		}
	}
}

// gen translates one State.
type gen struct {
	s       *policy.State
	variant Variant
	ci      *cidrInfo
	shared  map[string]setSpec
	// count makes shared sets hold their member count alone (Plan); members caches the
	// member counts it needs.
	count   bool
	members map[policy.Identity]int
}

// memberCount is how many pods hold a pod identity, looked up once per identity: the
// per-IP ruleset asks for the same identities' counts millions of times.
func (g *gen) memberCount(id policy.Identity) int {
	n, ok := g.members[id]
	if !ok {
		n = len(g.s.Members(id))
		if g.members == nil {
			g.members = map[policy.Identity]int{}
		}
		g.members[id] = n
	}
	return n
}

func newGen(s *policy.State, v Variant) *gen {
	return &gen{s: s, variant: v, ci: newCIDRInfo(s)}
}

// setSpec is an ipset the rules of a rule set match against.
type setSpec struct {
	name    string
	typ     string
	members []string
	// ids are the pod identities of a shared hash:ip set; nil for a set private to one rule
	// set (hash:net, hash:ip,port).
	ids []policy.Identity
	// n is the member count of a shared set planned only to be counted (members is then nil).
	n int
}

// size is the set's member count.
func (s setSpec) size() int {
	if s.members == nil {
		return s.n
	}
	return len(s.members)
}

func (s setSpec) lines() []string {
	out := make([]string, 0, len(s.members)+2)
	out = append(out, fmt.Sprintf("create %s %s family inet hashsize 1024 maxelem %d", s.name, s.typ, setMaxElem))
	out = append(out, "flush "+s.name)
	for _, m := range s.members {
		out = append(out, "add "+s.name+" "+m)
	}
	return out
}

// l4Key groups the entries of a rule set that share protocol and ports (ipset variant).
type l4Key struct {
	proto     policy.Protocol
	port, end uint16
}

func entryKey(e policy.Entry) l4Key {
	k := l4Key{proto: e.Proto, port: e.Port, end: e.EndPort}
	if k.port != 0 && k.end == 0 {
		k.end = k.port
	}
	return k
}

// groupIndex numbers the (protocol, port range) groups of a rule set's address-matched entries
// in entry order; set names derive from it, so the numbering depends only on the entries.
func groupIndex(rs *policy.RuleSet) map[l4Key]int {
	idx := map[l4Key]int{}
	for _, e := range rs.Entries {
		if e.NamedPort != "" || e.Peer == policy.IdentityAny || !addressPeer(e.Peer) {
			continue
		}
		k := entryKey(e)
		if _, ok := idx[k]; !ok {
			idx[k] = len(idx)
		}
	}
	return idx
}

// addressPeer reports whether a peer is matched by address: a pod identity, a CIDR identity or
// the world.
func addressPeer(id policy.Identity) bool {
	return id == policy.IdentityWorld || id.IsCIDR() ||
		(id >= policy.IdentityClusterMin && id <= policy.IdentityClusterMax)
}

// sharedSetName names the hash:ip set of a list of pod identities (sorted, unique): rule sets
// that allow the same peers share one set, as a careful CNI shares one set per selector, so
// set members grow with the distinct peer lists instead of with rule sets × pods.
func sharedSetName(ids []policy.Identity) string {
	h := fnv.New64a()
	var buf [4]byte
	for _, id := range ids {
		binary.LittleEndian.PutUint32(buf[:], uint32(id))
		h.Write(buf[:])
	}
	return fmt.Sprintf("%sp-%016x", setPrefix, h.Sum64())
}

// sharedSet returns the set of an identity list, computed once per sync.
func (g *gen) sharedSet(ids []policy.Identity) setSpec {
	name := sharedSetName(ids)
	if ss, ok := g.shared[name]; ok {
		return ss
	}
	ss := setSpec{name: name, typ: "hash:ip", ids: ids}
	for _, id := range ids {
		if g.count {
			// A pod has one identity, so the identities' members are distinct addresses.
			ss.n += g.memberCount(id)
			continue
		}
		for _, ip := range g.s.Members(id) {
			ss.members = append(ss.members, ip.String())
		}
	}
	sort.Strings(ss.members)
	ss.members = dedup(ss.members)
	if g.shared == nil {
		g.shared = map[string]setSpec{}
	}
	g.shared[name] = ss
	return ss
}
func netSetName(rs policy.RuleSetID, group int) string {
	return fmt.Sprintf("%s%d-%d-net", setPrefix, rs, group)
}
func portSetName(rs policy.RuleSetID) string { return fmt.Sprintf("%s%d-np", setPrefix, rs) }

// namedPortTargets resolves an egress named-port entry into (pod IP, port) pairs: every pod the
// peer holds whose container port of that name and protocol exists.
func (g *gen) namedPortTargets(e policy.Entry) []netip.AddrPort {
	var cands []netip.Addr
	if e.Peer >= policy.IdentityClusterMin && e.Peer <= policy.IdentityClusterMax {
		cands = g.s.Members(e.Peer)
	} else {
		for _, ep := range g.s.Endpoints() {
			if ep.Pod != nil {
				cands = append(cands, ep.Pod.IP)
			}
		}
	}
	var out []netip.AddrPort
	for _, ip := range cands {
		ep, ok := g.s.EndpointByIP(ip)
		if !ok || ep.Pod == nil {
			continue
		}
		if e.Peer != policy.IdentityAny && !(e.Peer >= policy.IdentityClusterMin && e.Peer <= policy.IdentityClusterMax) {
			if g.s.CIDRIdentityOf(ip) != e.Peer {
				continue
			}
		}
		port, ok := ep.Pod.NamedPort(e.NamedPort, e.Proto)
		if !ok {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, port))
	}
	return out
}

// ruleSet writes the chain of one rule set (declared by the caller) and returns the sets it
// matches against (ipset variant).
func (g *gen) ruleSet(p *plan, rs *policy.RuleSet) []setSpec {
	chain := ruleSetChain(rs.ID)
	dir := rs.Direction
	flag := peerFlag(dir)
	allow := allowTarget(dir)
	comment := commentArgs(rs)
	var sets []setSpec
	gi := groupIndex(rs)
	groups := map[int]*[2]setSpec{}
	var portSet *setSpec
	if g.variant == VariantIPSet {
		for _, i := range gi {
			groups[i] = &[2]setSpec{
				{typ: "hash:ip"},
				{name: netSetName(rs.ID, i), typ: "hash:net"},
			}
		}
	}
	netAllowed := map[int][]policy.Identity{}
	usedIP := map[int]bool{}
	for _, e := range rs.Entries {
		l4 := l4Args(e.Proto, e.Port, e.EndPort)
		switch {
		case e.NamedPort != "":
			if dir != policy.Egress {
				continue // ingress named ports arrive resolved; an unresolved one allows nothing
			}
			targets := g.namedPortTargets(e)
			if g.variant == VariantIPSet {
				if portSet == nil {
					portSet = &setSpec{name: portSetName(rs.ID), typ: "hash:ip,port"}
				}
				for _, t := range targets {
					portSet.members = append(portSet.members, fmt.Sprintf("%s,%s:%d", t.Addr(), protoName(e.Proto), t.Port()))
				}
				continue
			}
			for _, t := range targets {
				p.rule(chain, join([]string{"-d", hostPrefix(t.Addr())}, l4Args(e.Proto, t.Port(), t.Port()), comment, allow)...)
			}
		case e.Peer == policy.IdentityAny:
			p.rule(chain, join(l4, comment, allow)...)
		case !addressPeer(e.Peer):
			// Reserved identities (host, ...) have no address the datapath could match here.
		case g.variant == VariantIPSet:
			i := gi[entryKey(e)]
			if e.Peer.IsCIDR() || e.Peer == policy.IdentityWorld {
				netAllowed[i] = append(netAllowed[i], e.Peer)
			} else {
				usedIP[i] = true
				groups[i][0].ids = append(groups[i][0].ids, e.Peer)
			}
		case e.Peer == policy.IdentityWorld:
			switch {
			case g.ci.hasZero:
			case len(g.ci.list) == 0:
				p.rule(chain, join(l4, comment, allow)...)
			default:
				p.rule(chain, join(l4, comment, []string{"-j", exclusionChain(dir, e.Peer)})...)
			}
		case e.Peer.IsCIDR():
			pfx, ok := g.ci.prefix[e.Peer]
			if !ok {
				continue
			}
			var match []string
			if pfx.Bits() > 0 {
				match = []string{flag, pfx.String()}
			}
			if len(g.ci.subs[e.Peer]) == 0 {
				p.rule(chain, join(match, l4, comment, allow)...)
			} else {
				p.rule(chain, join(match, l4, comment, []string{"-j", exclusionChain(dir, e.Peer)})...)
			}
		default:
			if p.countOnly {
				// One rule per member: at 100,000 pods, billions; count them without writing.
				p.appends += g.memberCount(e.Peer)
				continue
			}
			for _, ip := range g.s.Members(e.Peer) {
				p.rule(chain, join([]string{flag, hostPrefix(ip)}, l4, comment, allow)...)
			}
		}
	}
	if g.variant == VariantIPSet {
		// One rule per set, in group order, so the chain stays the same as members come and go.
		keys := make([]l4Key, len(gi))
		for k, i := range gi {
			keys[i] = k
		}
		for i, k := range keys {
			l4 := l4Args(k.proto, k.port, k.end)
			gs := groups[i]
			if usedIP[i] {
				ids := gs[0].ids
				sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
				ids = slices.Compact(ids)
				ss := g.sharedSet(ids)
				sets = append(sets, ss)
				p.rule(chain, join([]string{"-m", "set", "--match-set", ss.name, setDir(dir)}, l4, comment, allow)...)
			}
			if ids := netAllowed[i]; len(ids) > 0 {
				gs[1].members = g.ci.netMembers(ids)
				sets = append(sets, gs[1])
				p.rule(chain, join([]string{"-m", "set", "--match-set", gs[1].name, setDir(dir)}, l4, comment, allow)...)
			}
		}
		if portSet != nil {
			sort.Strings(portSet.members)
			portSet.members = dedup(portSet.members)
			sets = append(sets, *portSet)
			p.rule(chain, join([]string{"-m", "set", "--match-set", portSet.name, setDir(dir) + "," + setDir(dir)}, comment, allow)...)
		}
	}
	p.rule(chain, join(comment, []string{"-j", "DROP"})...)
	return sets
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// netMembers returns hash:net members that match exactly the addresses whose longest ipBlock
// prefix is one of the allowed identities (IdentityWorld: no prefix at all). hash:net matches the
// most specific member, so a prefix that is not allowed but lies under an allowed one is added
// as nomatch. hash:net cannot hold /0; it is added as its two /1 halves.
func (ci *cidrInfo) netMembers(allowed []policy.Identity) []string {
	allow := map[netip.Prefix]bool{}
	var outer []netip.Prefix
	world := false
	for _, id := range allowed {
		if id == policy.IdentityWorld {
			if !ci.hasZero {
				world = true
				outer = append(outer, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
			}
			continue
		}
		if p, ok := ci.prefix[id]; ok {
			allow[p] = true
			outer = append(outer, p)
		}
	}
	var out []string
	halves := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1")}
	addZero := world
	for p := range allow {
		if p.Bits() == 0 {
			addZero = true
			continue
		}
		out = append(out, p.String())
	}
	if addZero {
		for _, h := range halves {
			if _, isCIDR := ci.byPrefix[h]; !isCIDR {
				out = append(out, h.String())
			}
		}
	}
	for _, c := range ci.list {
		if allow[c.Prefix] {
			continue
		}
		for _, o := range outer {
			if strictlyInside(c.Prefix, o) {
				out = append(out, c.Prefix.String()+" nomatch")
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// memberRule is the per-IP rule of one member of an entry's pod identity, as ruleSet writes it.
func (g *gen) memberRule(rs *policy.RuleSet, e policy.Entry, ip netip.Addr) []string {
	return join([]string{peerFlag(rs.Direction), hostPrefix(ip)}, l4Args(e.Proto, e.Port, e.EndPort), commentArgs(rs), allowTarget(rs.Direction))
}

// endpoint writes the chain of one isolated direction of an endpoint (declared by the caller).
func (g *gen) endpoint(p *plan, ep *policy.Endpoint, dir policy.Direction, rs policy.RuleSetID) {
	chain := endpointChain(dir, ep.ID)
	self := "-s"
	if dir == policy.Egress {
		self = "-d"
	}
	// A pod reaching its own address is always allowed, whatever its policies say.
	p.rule(chain, self, hostPrefix(ep.Pod.IP), "-j", "ACCEPT")
	p.rule(chain, "-g", ruleSetChain(rs))
}

func dispatchRule(dir policy.Direction, ep uint32, ip netip.Addr) []string {
	flag := "-d"
	if dir == policy.Egress {
		flag = "-s"
	}
	return []string{flag, hostPrefix(ip), "-g", endpointChain(dir, ep)}
}

func endpointRuleSet(ep *policy.Endpoint, dir policy.Direction) policy.RuleSetID {
	if dir == policy.Egress {
		return ep.Egress
	}
	return ep.Ingress
}

// topChains writes the fixed chains of the packet path.
func topChains(p *plan) {
	p.rule(chainForward, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
	p.rule(chainForward, "-j", chainEgress)
	p.rule(chainForward, "-j", chainIngress)
	p.rule(chainForward, "-j", "ACCEPT")
	p.rule(chainAllowE, "-j", chainIngress)
	p.rule(chainAllowE, "-j", "ACCEPT")
}
