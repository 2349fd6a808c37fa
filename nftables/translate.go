package nftables

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"netpolbench/policy"
)

// The table and its fixed objects. Everything the backend writes lives in this one table.
const (
	// Family is the table's family: inet sees IPv4 and IPv6 in one forward hook; the rules
	// match IPv4 only (pod and peer addresses are IPv4), so IPv6 passes untouched.
	Family = knftables.InetFamily
	// TableName is the table's name.
	TableName = "netpolbench"

	chainForward = "forward"
	mapEgress    = "egress"
	mapIngress   = "ingress"
	setSelf      = "self"
	// maxComment is nft's limit on a rule comment, in bytes.
	maxComment = 128
)

var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}

func protoName(p policy.Protocol) string {
	if n, ok := protoNames[uint8(p)]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func ruleSetChain(id policy.RuleSetID) string { return "rs-" + strconv.FormatUint(uint64(id), 10) }

func namedPortSet(id policy.RuleSetID) string { return "np-" + strconv.FormatUint(uint64(id), 10) }

// dispatchMap is the verdict map of a direction: egress is looked up by the source address,
// ingress by the destination.
func dispatchMap(dir policy.Direction) string {
	if dir == policy.Egress {
		return mapEgress
	}
	return mapIngress
}

// dispatchVerdict enters a rule-set chain: egress jumps (an allow returns, so the destination's
// ingress is looked up next), ingress goes (an allow accepts).
func dispatchVerdict(dir policy.Direction, rs policy.RuleSetID) string {
	if dir == policy.Egress {
		return "jump " + ruleSetChain(rs)
	}
	return "goto " + ruleSetChain(rs)
}

// peerField is the address of the remote peer: the source for ingress, the destination for
// egress.
func peerField(dir policy.Direction) string {
	if dir == policy.Egress {
		return "ip daddr"
	}
	return "ip saddr"
}

func allowVerdict(dir policy.Direction) string {
	if dir == policy.Egress {
		return "return"
	}
	return "accept"
}

// setKind is what a named set holds.
type setKind uint8

const (
	// kindPods: the member addresses of a list of pod identities (ipv4_addr), shared by every
	// rule set that allows the same identities with the same ports.
	kindPods setKind = iota + 1
	// kindNets: the addresses whose longest ipBlock prefix is one of a list of CIDR identities
	// (or, for IdentityWorld, no prefix), as disjoint address ranges (interval set).
	kindNets
	// kindNamed: the (pod address, protocol, port) targets of a rule set's egress named ports.
	kindNamed
)

func (k setKind) spec() (typ string, flags []knftables.SetFlag) {
	switch k {
	case kindNets:
		return "ipv4_addr", []knftables.SetFlag{knftables.IntervalFlag}
	case kindNamed:
		return "ipv4_addr . inet_proto . inet_service", nil
	}
	return "ipv4_addr", nil
}

// identitySetName names a shared set by its kind and identity list (sorted, unique), so rule
// sets that allow the same peers find the same set.
func identitySetName(kind setKind, ids []policy.Identity) string {
	h := fnv.New64a()
	var buf [4]byte
	for _, id := range ids {
		binary.BigEndian.PutUint32(buf[:], uint32(id))
		h.Write(buf[:])
	}
	prefix := "p-"
	if kind == kindNets {
		prefix = "n-"
	}
	return fmt.Sprintf("%s%016x", prefix, h.Sum64())
}

// setSpec is a named set a rule-set chain matches against.
type setSpec struct {
	name string
	kind setKind
	// ids are the identities of a pods or nets set.
	ids []policy.Identity
	// rs is the rule set of a named-port set, as of the sync that specified it; rsID stays
	// with the set and later syncs look the rule set up by it.
	rs   *policy.RuleSet
	rsID policy.RuleSetID
}

// ruleSpec is one rule of a chain.
type ruleSpec struct{ rule, comment string }

// chainSpec is the chain of one rule set.
type chainSpec struct {
	rs    policy.RuleSetID
	rules []ruleSpec
	// sets are the named sets its rules match against, sorted.
	sets []string
}

// gen translates one State. Shared sets are specified once per sync, their elements computed
// only when a set is written.
type gen struct {
	s     *policy.State
	sets  map[string]*setSpec
	parts []owned
	eps   []*policy.Endpoint
	memb  map[policy.Identity][]netip.Addr
}

func newGen(s *policy.State) *gen {
	return &gen{s: s, sets: map[string]*setSpec{}, memb: map[policy.Identity][]netip.Addr{}}
}

// members is an identity's member addresses, sorted, looked up once a sync: many pods sets
// hold the same identity, and State.Members copies and sorts them on every call.
func (g *gen) members(id policy.Identity) []netip.Addr {
	m, ok := g.memb[id]
	if !ok {
		m = g.s.Members(id)
		g.memb[id] = m
	}
	return m
}

// l4 is one allowed (protocol, port range); proto ProtoAny allows everything.
type l4 struct {
	proto  policy.Protocol
	lo, hi uint16
}

func l4Of(e policy.Entry) l4 {
	switch {
	case e.Proto == policy.ProtoAny:
		return l4{}
	case e.Port == 0:
		return l4{e.Proto, 0, 65535}
	case e.EndPort < e.Port:
		return l4{e.Proto, e.Port, e.Port}
	}
	return l4{e.Proto, e.Port, e.EndPort}
}

// normalizeL4 sorts a peer's allowed (protocol, port range)s and merges what overlaps or
// touches: an interval set refuses overlapping elements, and merged ranges are what the
// kernel would print anyway.
func normalizeL4(ks []l4) []l4 {
	for _, k := range ks {
		if k.proto == policy.ProtoAny {
			return []l4{{}}
		}
	}
	slices.SortFunc(ks, func(a, b l4) int { return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.lo, b.lo)) })
	var out []l4
	for _, k := range ks {
		if n := len(out); n > 0 && out[n-1].proto == k.proto && uint32(out[n-1].hi)+1 >= uint32(k.lo) {
			out[n-1].hi = max(out[n-1].hi, k.hi)
			continue
		}
		out = append(out, k)
	}
	return out
}

func portRange(lo, hi uint16) string {
	if lo == hi {
		return strconv.Itoa(int(lo))
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// l4Match writes the protocol and port match of a normalized list: nothing for "everything",
// one protocol with its ports, several protocols, or a concatenated anonymous set
// `meta l4proto . th dport { tcp . 80, udp . 53 }` that decides them all in one lookup.
func l4Match(ks []l4) string {
	if len(ks) == 1 && ks[0].proto == policy.ProtoAny {
		return ""
	}
	allPorts, oneProto := true, true
	for _, k := range ks {
		if k.lo != 0 || k.hi != 65535 {
			allPorts = false
		}
		if k.proto != ks[0].proto {
			oneProto = false
		}
	}
	switch {
	case allPorts && len(ks) == 1:
		return "meta l4proto " + protoName(ks[0].proto)
	case allPorts:
		names := make([]string, len(ks))
		for i, k := range ks {
			names[i] = protoName(k.proto)
		}
		return "meta l4proto { " + strings.Join(names, ", ") + " }"
	case oneProto && len(ks) == 1:
		return "meta l4proto " + protoName(ks[0].proto) + " th dport " + portRange(ks[0].lo, ks[0].hi)
	case oneProto:
		ports := make([]string, len(ks))
		for i, k := range ks {
			ports[i] = portRange(k.lo, k.hi)
		}
		return "meta l4proto " + protoName(ks[0].proto) + " th dport { " + strings.Join(ports, ", ") + " }"
	}
	elems := make([]string, len(ks))
	for i, k := range ks {
		elems[i] = protoName(k.proto) + " . " + portRange(k.lo, k.hi)
	}
	return "meta l4proto . th dport { " + strings.Join(elems, ", ") + " }"
}

func isPodIdentity(id policy.Identity) bool {
	return id >= policy.IdentityClusterMin && id <= policy.IdentityClusterMax
}

// policiesComment names the policies of a rule set, cut at a whole name to fit nft's limit.
func policiesComment(rs *policy.RuleSet) string {
	c := strings.Join(rs.Policies, ",")
	if c == "" {
		return fmt.Sprintf("ruleset %d", rs.ID)
	}
	if len(c) <= maxComment {
		return c
	}
	n := len(rs.Policies)
	for k := n - 1; k > 0; k-- {
		s := strings.Join(rs.Policies[:k], ",") + fmt.Sprintf(",+%d more", n-k)
		if len(s) <= maxComment {
			return s
		}
	}
	return c[:maxComment]
}

// chain translates one rule set. For each (protocol, port range) its entries allow, the peers
// allowed on it form an identity list; the list's members make a set shared by every rule
// set that allows the same identities (pod identities in an ipv4_addr set, CIDR identities in
// an interval set of the addresses they own). Ranges allowed to the same list collapse into
// one rule whose protocols and ports are one lookup in a concatenated anonymous set. Peers
// allowed everywhere need no address match; egress named ports become one lookup of
// (destination, protocol, port) in the rule set's own set. Every rule but the last allows, so
// their order does not matter; the last drops.
func (g *gen) chain(rs *policy.RuleSet) *chainSpec {
	dir := rs.Direction
	allow := allowVerdict(dir)
	type kindKey struct {
		kind setKind
		l4   l4
	}
	byKey := map[kindKey][]policy.Identity{}
	var anyL4 []l4
	named := false
	for _, e := range rs.Entries {
		switch {
		case e.NamedPort != "":
			// Ingress named ports arrive resolved against the endpoint's own ports.
			named = named || dir == policy.Egress
		case e.Peer == policy.IdentityAny:
			anyL4 = append(anyL4, l4Of(e))
		case isPodIdentity(e.Peer):
			k := kindKey{kindPods, l4Of(e)}
			byKey[k] = append(byKey[k], e.Peer)
		case e.Peer.IsCIDR() || e.Peer == policy.IdentityWorld:
			k := kindKey{kindNets, l4Of(e)}
			byKey[k] = append(byKey[k], e.Peer)
		}
		// Other reserved identities (host) have no address a packet here could carry.
	}
	cs := &chainSpec{rs: rs.ID}
	if len(anyL4) > 0 {
		cs.rules = append(cs.rules, ruleSpec{rule: join(l4Match(normalizeL4(anyL4)), allow)})
	}
	type group struct {
		kind setKind
		name string
		ids  []policy.Identity
		l4s  []l4
	}
	groups := map[string]*group{}
	for k, ids := range byKey {
		slices.Sort(ids)
		ids = slices.Compact(ids)
		name := identitySetName(k.kind, ids)
		gr := groups[name]
		if gr == nil {
			gr = &group{kind: k.kind, name: name, ids: ids}
			groups[name] = gr
		}
		gr.l4s = append(gr.l4s, k.l4)
	}
	for _, name := range sortedKeys(groups) {
		gr := groups[name]
		if _, ok := g.sets[name]; !ok {
			g.sets[name] = &setSpec{name: name, kind: gr.kind, ids: gr.ids}
		}
		cs.sets = append(cs.sets, name)
		cs.rules = append(cs.rules, ruleSpec{rule: join(peerField(dir)+" @"+name, l4Match(normalizeL4(gr.l4s)), allow)})
	}
	if named {
		name := namedPortSet(rs.ID)
		g.sets[name] = &setSpec{name: name, kind: kindNamed, rs: rs, rsID: rs.ID}
		cs.sets = append(cs.sets, name)
		cs.rules = append(cs.rules, ruleSpec{rule: "ip daddr . meta l4proto . th dport @" + name + " " + allow})
	}
	cs.rules = append(cs.rules, ruleSpec{rule: "drop", comment: policiesComment(rs)})
	return cs
}

func join(parts ...string) string {
	out := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

// owned is an address range and the identity that holds it: the longest ipBlock prefix
// covering it, or IdentityWorld.
type owned struct {
	span
	id policy.Identity
}

// partition divides the IPv4 space by longest ipBlock prefix, once per sync.
func (g *gen) partition() []owned {
	if g.parts == nil {
		g.parts = partition(g.s.CIDRs())
	}
	return g.parts
}

// partition returns disjoint ranges covering every IPv4 address, each owned by the longest
// prefix holding it (IdentityWorld where none does), in address order. Prefixes nest or are
// disjoint, so one sweep with a stack of the prefixes around the current address does it.
func partition(cidrs []policy.CIDR) []owned {
	type pfx struct {
		lo, hi uint64
		id     policy.Identity
	}
	ps := make([]pfx, 0, len(cidrs))
	for _, c := range cidrs {
		p := c.Prefix.Masked()
		if !p.Addr().Is4() {
			continue
		}
		lo := uint64(addrNum(p.Addr()))
		ps = append(ps, pfx{lo, lo + uint64(1)<<(32-p.Bits()) - 1, c.Identity})
	}
	// Outer prefixes first where they start together.
	slices.SortFunc(ps, func(a, b pfx) int { return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(b.hi, a.hi)) })
	var out []owned
	// next is the first address not yet owned; emit owns [next, end) to id.
	next := uint64(0)
	emit := func(end uint64, id policy.Identity) {
		if end > next {
			out = append(out, owned{span{uint32(next), uint32(end - 1)}, id})
			next = end
		}
	}
	var stack []pfx
	top := func() policy.Identity {
		if len(stack) == 0 {
			return policy.IdentityWorld
		}
		return stack[len(stack)-1].id
	}
	for _, p := range ps {
		for len(stack) > 0 && stack[len(stack)-1].hi < p.lo {
			emit(stack[len(stack)-1].hi+1, stack[len(stack)-1].id)
			stack = stack[:len(stack)-1]
		}
		emit(p.lo, top())
		stack = append(stack, p)
	}
	for len(stack) > 0 {
		emit(stack[len(stack)-1].hi+1, stack[len(stack)-1].id)
		stack = stack[:len(stack)-1]
	}
	emit(1<<32, policy.IdentityWorld)
	return out
}

// netSpans returns the merged address ranges that the identities own.
func (g *gen) netSpans(ids []policy.Identity) []span {
	var out []span
	for _, o := range g.partition() {
		if _, ok := slices.BinarySearch(ids, o.id); !ok {
			continue
		}
		if n := len(out); n > 0 && uint64(out[n-1].hi)+1 == uint64(o.lo) {
			out[n-1].hi = o.hi
			continue
		}
		out = append(out, o.span)
	}
	return out
}

// target is one resolved egress named port: a destination pod's address, protocol and port.
type target struct {
	ip    netip.Addr
	proto policy.Protocol
	port  uint16
}

// namedTargets resolves a rule set's egress named ports against the destination pods: every
// pod the entry's peer holds (a pod identity's members; for a CIDR identity the pods whose
// longest prefix it is; every pod for IdentityAny) whose container port of that name and
// protocol exists. only, if not nil, limits the pods to those addresses.
func (g *gen) namedTargets(rs *policy.RuleSet, only []netip.Addr) []target {
	var out []target
	seen := map[target]bool{}
	add := func(ep *policy.Endpoint, e policy.Entry) {
		if ep == nil || ep.Pod == nil {
			return
		}
		ip := ep.Pod.IP
		switch {
		case e.Peer == policy.IdentityAny:
		case isPodIdentity(e.Peer):
			if ep.Identity != e.Peer {
				return
			}
		default:
			if g.s.CIDRIdentityOf(ip) != e.Peer {
				return
			}
		}
		port, ok := ep.Pod.NamedPort(e.NamedPort, e.Proto)
		if !ok {
			return
		}
		t := target{ip, e.Proto, port}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	for _, e := range rs.Entries {
		if e.NamedPort == "" {
			continue
		}
		switch {
		case only != nil:
			for _, ip := range only {
				ep, _ := g.s.EndpointByIP(ip)
				add(ep, e)
			}
		case isPodIdentity(e.Peer):
			for _, ip := range g.members(e.Peer) {
				ep, _ := g.s.EndpointByIP(ip)
				add(ep, e)
			}
		default:
			if g.eps == nil {
				g.eps = g.s.Endpoints()
			}
			for _, ep := range g.eps {
				add(ep, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b target) int {
		return cmp.Or(a.ip.Compare(b.ip), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
	})
	return out
}
