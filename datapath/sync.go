package datapath

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"netpolbench/policy"
)

type tables struct {
	lxc     *table[uint32, bpfEndpoint]
	ipcache *table[bpfIpcacheKey, bpfIpcacheValue]
	summary *table[bpfSummaryKey, bpfSummary]
	policy  *table[bpfPolicyKey, uint8]
	named   *table[bpfNamedPortKey, bpfNamedPortValue]

	// Ownership, so an incremental update knows which keys a unit held before.
	epNamed    map[uint32][]bpfNamedPortKey
	epIP       map[uint32]netip.Addr
	groupKeys  map[bpfSummaryKey][]bpfPolicyKey
	cidrPrefix map[netip.Prefix]policy.Identity
	// rsFlags caches the RS_HAS_* flags of each rule set, which endpoint values carry.
	rsFlags map[policy.RuleSetID]uint8
}

func newTables(d *Datapath) *tables {
	return &tables{
		lxc: newTable[uint32, bpfEndpoint]("lxc", func(c *MapCounts) *int { return &c.Lxc },
			d.objs.Lxc, d.sizes.Endpoints),
		ipcache: newTable[bpfIpcacheKey, bpfIpcacheValue]("ipcache", func(c *MapCounts) *int { return &c.IPCache },
			d.objs.Ipcache, d.sizes.IPCache),
		summary: newTable[bpfSummaryKey, bpfSummary]("policy_summary", func(c *MapCounts) *int { return &c.PolicySummary },
			d.objs.PolicySummary, d.sizes.Summaries),
		policy: newTable[bpfPolicyKey, uint8]("policy", func(c *MapCounts) *int { return &c.Policy },
			d.objs.Policy, d.sizes.Policy),
		named: newTable[bpfNamedPortKey, bpfNamedPortValue]("named_ports", func(c *MapCounts) *int { return &c.NamedPorts },
			d.objs.NamedPorts, d.sizes.NamedPorts),
		epNamed:    map[uint32][]bpfNamedPortKey{},
		epIP:       map[uint32]netip.Addr{},
		groupKeys:  map[bpfSummaryKey][]bpfPolicyKey{},
		cidrPrefix: map[netip.Prefix]policy.Identity{},
		rsFlags:    map[policy.RuleSetID]uint8{},
	}
}

// ipKey is an IPv4 address as the programs read it from the packet: network byte order in
// memory, so the native-endian uint32 of the four bytes.
func ipKey(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func ipOfKey(k uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], k)
	return netip.AddrFrom4(b)
}

func protoBit(p policy.Protocol) uint8 {
	switch p {
	case policy.ProtoTCP:
		return 0x01
	case policy.ProtoUDP:
		return 0x02
	case policy.ProtoSCTP:
		return 0x04
	case policy.ProtoICMP:
		return 0x08
	}
	return 0x10
}

// nameTable numbers named ports. Ids are never reused, so a name id in the kernel always
// means the same name; at most 65535 names.
type nameTable struct {
	ids   map[string]uint16
	names []string
}

func newNameTable() *nameTable { return &nameTable{ids: map[string]uint16{}, names: []string{""}} }

func (n *nameTable) id(name string) (uint16, error) {
	if id, ok := n.ids[name]; ok {
		return id, nil
	}
	if len(n.names) > 65535 {
		return 0, fmt.Errorf("allocate named-port id for %q: all 65535 ids in use", name)
	}
	id := uint16(len(n.names))
	n.ids[name] = id
	n.names = append(n.names, name)
	return id, nil
}

func (n *nameTable) name(id uint16) string {
	if int(id) < len(n.names) {
		return n.names[id]
	}
	return fmt.Sprintf("#%d", id)
}

// endpointPlan collects the entries endpoints own: a part of a full sync, or the one
// endpoint of setEndpoint.
type endpointPlan struct {
	lxcK   []uint32
	lxcV   []bpfEndpoint
	ipcK   []bpfIpcacheKey
	ipcV   []bpfIpcacheValue
	namedK []bpfNamedPortKey
	namedV []bpfNamedPortValue
}

// planEndpoint appends the entries one endpoint owns to p: its lxc value, its /32 in the Cilium
// layout's ipcache, and its named container ports. cidrID is the CIDR identity of the pod's
// address and flags gives the RS_HAS_* flags of a rule set.
func planEndpoint(p *endpointPlan, ep *policy.Endpoint, cidrID policy.Identity, cilium bool,
	flags func(policy.RuleSetID) uint8, nameID func(string) (uint16, error)) error {
	k, v, err := endpointEntry(ep, cidrID, flags)
	if err != nil {
		return err
	}
	p.lxcK, p.lxcV = append(p.lxcK, k), append(p.lxcV, v)
	if cilium {
		p.ipcK = append(p.ipcK, bpfIpcacheKey{Prefixlen: 32, Addr: k})
		p.ipcV = append(p.ipcV, bpfIpcacheValue{Identity: uint32(ep.Identity), CidrIdentity: uint32(cidrID)})
	}
	p.namedK, p.namedV, err = appendNamedPorts(p.namedK, p.namedV, ep, nameID)
	return err
}

// endpointEntry is an endpoint's lxc key and value.
func endpointEntry(ep *policy.Endpoint, cidrID policy.Identity, flags func(policy.RuleSetID) uint8) (uint32, bpfEndpoint, error) {
	ip := ep.Pod.IP
	if !ip.Is4() {
		return 0, bpfEndpoint{}, fmt.Errorf("sync endpoint %d (%s): pod IP %s is not IPv4", ep.ID, ep.Pod.Key(), ip)
	}
	return ipKey(ip), bpfEndpoint{
		EpId: ep.ID, Identity: uint32(ep.Identity), CidrIdentity: uint32(cidrID),
		IngressRs: uint32(ep.Ingress), EgressRs: uint32(ep.Egress),
		IngressFlags: flags(ep.Ingress), EgressFlags: flags(ep.Egress),
	}, nil
}

// appendNamedPorts appends an endpoint's named container ports: one entry per (protocol,
// port) with the names declared there.
func appendNamedPorts(ks []bpfNamedPortKey, vs []bpfNamedPortValue, ep *policy.Endpoint,
	nameID func(string) (uint16, error)) ([]bpfNamedPortKey, []bpfNamedPortValue, error) {
	first := len(ks)
	for _, cp := range ep.Pod.Ports {
		if cp.Name == "" {
			continue
		}
		port, ok := ep.Pod.NamedPort(cp.Name, cp.Protocol)
		if !ok || port != cp.Port {
			continue // a later duplicate of a name: NamedPort resolves to the first
		}
		id, err := nameID(cp.Name)
		if err != nil {
			return ks, vs, err
		}
		k := bpfNamedPortKey{EpId: ep.ID, Proto: uint8(cp.Protocol), Port: cp.Port}
		i := first
		for i < len(ks) && ks[i] != k {
			i++
		}
		if i == len(ks) {
			ks, vs = append(ks, k), append(vs, bpfNamedPortValue{})
		}
		v := &vs[i]
		placed := false
		for j := range v.Names {
			if v.Names[j] == id {
				placed = true
				break
			}
			if v.Names[j] == 0 {
				v.Names[j] = id
				placed = true
				break
			}
		}
		if !placed {
			return ks, vs, fmt.Errorf("sync endpoint %d (%s): more than %d names on %s port %d", ep.ID, ep.Pod.Key(), len(v.Names), cp.Protocol, cp.Port)
		}
	}
	return ks, vs, nil
}

// setEndpoint plans the entries one endpoint owns (see planEndpoint).
func (d *Datapath) setEndpoint(s *policy.State, ep *policy.Endpoint) error {
	t := d.tabs
	cidrID := s.CIDRIdentityOf(ep.Pod.IP)
	k, v, err := endpointEntry(ep, cidrID, func(id policy.RuleSetID) uint8 { return d.flagsOf(s, id) })
	if err != nil {
		return err
	}
	var kbuf [4]bpfNamedPortKey
	var vbuf [4]bpfNamedPortValue
	ks, vs, err := appendNamedPorts(kbuf[:0], vbuf[:0], ep, d.names.id)
	if err != nil {
		return err
	}
	t.lxc.set(k, v)
	if d.opts.Layout == LayoutCilium {
		t.ipcache.set(bpfIpcacheKey{Prefixlen: 32, Addr: k}, bpfIpcacheValue{Identity: uint32(ep.Identity), CidrIdentity: uint32(cidrID)})
	}
	t.epIP[ep.ID] = ep.Pod.IP
	for i := range ks {
		t.named.set(ks[i], vs[i])
	}
	var owned []bpfNamedPortKey
	if len(ks) > 0 {
		owned = slices.Clone(ks)
	}
	t.epNamed[ep.ID] = owned
	return nil
}

// removeEndpoint plans the removal of everything setEndpoint planned for the endpoint.
func (d *Datapath) removeEndpoint(id uint32) {
	t := d.tabs
	if ip, ok := t.epIP[id]; ok {
		t.lxc.remove(ipKey(ip))
		if d.opts.Layout == LayoutCilium {
			// An ipBlock prefix can be exactly the pod's /32: the pod's entry hid it, and
			// it takes the key back.
			k := bpfIpcacheKey{Prefixlen: 32, Addr: ipKey(ip)}
			if cid, ok := t.cidrPrefix[netip.PrefixFrom(ip, 32)]; ok {
				t.ipcache.set(k, bpfIpcacheValue{Identity: uint32(cid), CidrIdentity: uint32(cid)})
			} else {
				t.ipcache.remove(k)
			}
		}
		delete(t.epIP, id)
	}
	for _, k := range t.epNamed[id] {
		t.named.remove(k)
	}
	delete(t.epNamed, id)
}

// Flags of struct endpoint (RS_HAS_*).
const (
	rsHasAny   = 0x01
	rsHasCIDR  = 0x02
	rsHasWorld = 0x04
)

// flagsOf says which fall-back lookups can match in a rule set: any-peer entries, and entries
// for CIDR identities or for world, one of which a pod's CIDR fall-back looks up.
func (d *Datapath) flagsOf(s *policy.State, id policy.RuleSetID) uint8 {
	if id == policy.RuleSetAllowAll {
		return 0
	}
	if f, ok := d.tabs.rsFlags[id]; ok {
		return f
	}
	f := computeFlags(s, id)
	d.tabs.rsFlags[id] = f
	return f
}

func computeFlags(s *policy.State, id policy.RuleSetID) uint8 {
	var f uint8
	rs, ok := s.RuleSet(id)
	if !ok {
		return 0
	}
	for i := range rs.Entries {
		f |= peerFlag(rs.Entries[i].Peer)
	}
	return f
}

// peerFlag is the RS_HAS_* flag an entry for the peer sets, if any.
func peerFlag(p policy.Identity) uint8 {
	switch {
	case p == policy.IdentityAny:
		return rsHasAny
	case p.IsCIDR():
		return rsHasCIDR
	case p < policy.IdentityClusterMin || p > policy.IdentityClusterMax:
		return rsHasWorld
	}
	return 0
}

func (d *Datapath) setCIDR(c policy.CIDR) {
	k := bpfIpcacheKey{Prefixlen: uint32(c.Prefix.Bits()), Addr: ipKey(c.Prefix.Addr())}
	d.tabs.ipcache.set(k, bpfIpcacheValue{Identity: uint32(c.Identity), CidrIdentity: uint32(c.Identity)})
	d.tabs.cidrPrefix[c.Prefix] = c.Identity
}

func (d *Datapath) removeCIDR(p netip.Prefix) {
	d.tabs.ipcache.remove(bpfIpcacheKey{Prefixlen: uint32(p.Bits()), Addr: ipKey(p.Addr())})
	delete(d.tabs.cidrPrefix, p)
}

// group is the (rule set, peer) unit of the policy maps.
type group struct {
	rs   policy.RuleSetID
	peer policy.Identity
}

// setGroup plans the summary and exact keys of one (rule set, peer) from its entries.
func (d *Datapath) setGroup(g group, entries []policy.Entry) error {
	t := d.tabs
	sk := bpfSummaryKey{Rs: uint32(g.rs), Peer: uint32(g.peer)}
	for _, k := range t.groupKeys[sk] {
		t.policy.remove(k)
	}
	delete(t.groupKeys, sk)
	if len(entries) == 0 {
		t.summary.remove(sk)
		return nil
	}
	sum, keys, err := planGroup(entries, d.opts.InlinePorts, d.names.id)
	if err != nil {
		return err
	}
	t.summary.set(sk, sum)
	for i := range keys {
		keys[i].Rs, keys[i].Peer = sk.Rs, sk.Peer
		t.policy.set(keys[i], 1)
	}
	if len(keys) > 0 { // most groups fit their summary and own no exact key
		t.groupKeys[sk] = keys
	}
	return nil
}

// planGroup turns the entries of one (rule set, peer) into its summary value and its exact
// keys (Rs and Peer left zero). It is a pure function of the entries, so an incremental update
// and a full sync write the same entries.
//
// Ports: overlapping and adjacent ranges of a protocol are merged into spans. Up to inline
// spans (widest first) are kept in the summary value, which the program checks with compares
// after the one lookup it pays anyway; the rest are expanded into single-port hash keys. So a
// peer allowed on a few ports or ranges costs one hash lookup, whatever the range widths. We
// chose this over Cilium's LPM port-prefix key (1-65535 → 30 entries, one LPM lookup per
// identity) because an LPM lookup costs more than a hash lookup and grows with the number of
// keys, and every flow would pay it, while groups with more than inline spans are rare:
// BenchmarkPolicyLookup measured, above the empty-program floor, 26 ns for a hash lookup at
// 1k, 10k and 100k entries against 55, 79 and 94 ns for the LPM key. And over pure expansion,
// whose 1-65535 is 65,535 keys per group. BenchmarkRange measures inline against expanded.
func planGroup(entries []policy.Entry, inline int, nameID func(string) (uint16, error)) (bpfSummary, []bpfPolicyKey, error) {
	return planGroupInto(nil, entries, inline, nameID)
}

// portSpan is the ports lo..hi (inclusive) of one protocol.
type portSpan struct {
	proto  policy.Protocol
	lo, hi int
}

// planGroupInto is planGroup appending the exact keys to keys, so a full sync plans a million
// groups into one slice. It allocates nothing else for groups of up to 8 port spans.
func planGroupInto(keys []bpfPolicyKey, entries []policy.Entry, inline int, nameID func(string) (uint16, error)) (bpfSummary, []bpfPolicyKey, error) {
	var sum bpfSummary
	first := len(keys)
	var buf [8]portSpan
	spans := buf[:0]
	for i := range entries {
		e := &entries[i]
		switch {
		case e.Proto == policy.ProtoAny:
			// Every protocol and port is allowed: no other key can change a verdict.
			return bpfSummary{AnyProto: 1}, keys[:first], nil
		case e.NamedPort != "":
			id, err := nameID(e.NamedPort)
			if err != nil {
				return sum, keys[:first], err
			}
			keys = append(keys, bpfPolicyKey{Proto: uint8(e.Proto), Kind: 1, Port: id})
			sum.Named |= protoBit(e.Proto)
		case e.Port == 0:
			sum.AllPorts |= protoBit(e.Proto)
		default:
			spans = append(spans, portSpan{e.Proto, int(e.Port), max(int(e.EndPort), int(e.Port))})
		}
	}
	if sum.AllPorts != 0 {
		n := 0
		for _, r := range spans {
			if sum.AllPorts&protoBit(r.proto) == 0 {
				spans[n] = r
				n++
			}
		}
		spans = spans[:n]
	}
	// Merge overlapping and adjacent spans of a protocol.
	sortSpans(spans, func(a, b portSpan) bool { return a.proto < b.proto || a.proto == b.proto && a.lo < b.lo })
	merged := spans[:0]
	for _, r := range spans {
		if n := len(merged); n > 0 && merged[n-1].proto == r.proto && r.lo <= merged[n-1].hi+1 {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	// Widest first (expanding them would cost the most keys), then a fixed order.
	sortSpans(merged, func(a, b portSpan) bool {
		if wa, wb := a.hi-a.lo, b.hi-b.lo; wa != wb {
			return wa > wb
		}
		if a.proto != b.proto {
			return a.proto < b.proto
		}
		return a.lo < b.lo
	})
	if inline > len(sum.Ranges) {
		inline = len(sum.Ranges)
	}
	for _, r := range merged {
		if int(sum.Nranges) < inline {
			x := &sum.Ranges[sum.Nranges]
			x.Proto, x.Lo, x.Hi = uint8(r.proto), uint16(r.lo), uint16(r.hi)
			sum.Nranges++
			continue
		}
		for port := r.lo; port <= r.hi; port++ {
			keys = append(keys, bpfPolicyKey{Proto: uint8(r.proto), Port: uint16(port)})
		}
		sum.Exact |= protoBit(r.proto)
	}
	return sum, keys, nil
}

// sortSpans sorts by less: insertion sort for the few spans of a group, which are mostly in
// order already (entries are sorted by protocol and port).
func sortSpans(s []portSpan, less func(a, b portSpan) bool) {
	if len(s) > 12 {
		slices.SortFunc(s, func(a, b portSpan) int {
			if less(a, b) {
				return -1
			}
			if less(b, a) {
				return 1
			}
			return 0
		})
		return
	}
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(s[j], s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// peerRuns returns the entries of a rule set ordered so that each peer's entries form one run:
// rule sets keep their entries sorted by peer first (policy.SortEntries), so that is
// normally the entries themselves.
func peerRuns(es []policy.Entry) []policy.Entry {
	for i := 1; i < len(es); i++ {
		if es[i].Peer < es[i-1].Peer {
			es = slices.Clone(es)
			slices.SortStableFunc(es, func(a, b policy.Entry) int { return cmp.Compare(a.Peer, b.Peer) })
			return es
		}
	}
	return es
}

// groupEntries cuts a rule set's entries into its (rule set, peer) groups, in peer order.
func groupEntries(rs *policy.RuleSet) [][]policy.Entry {
	es := peerRuns(rs.Entries)
	var out [][]policy.Entry
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && es[j].Peer == es[i].Peer {
			j++
		}
		out = append(out, es[i:j:j])
		i = j
	}
	return out
}

// ruleSetPlan is a full sync's plan of some rule sets: summaries in (rule set, peer) order and
// exact keys, with the groups that own exact keys.
type ruleSetPlan struct {
	sumK  []bpfSummaryKey
	sumV  []bpfSummary
	polK  []bpfPolicyKey
	polV  []uint8
	owned []groupKeys
}

// groupKeys says which exact keys of a plan a group owns: polK[lo:hi].
type groupKeys struct {
	key    bpfSummaryKey
	lo, hi int
}

func planRuleSets(rss []*policy.RuleSet, inline int, nameID func(string) (uint16, error)) (*ruleSetPlan, error) {
	n := 0
	for _, rs := range rss {
		n += len(rs.Entries)
	}
	// At most a group per entry; most groups have a single entry.
	p := &ruleSetPlan{sumK: make([]bpfSummaryKey, 0, n), sumV: make([]bpfSummary, 0, n)}
	for _, rs := range rss {
		es := peerRuns(rs.Entries)
		for i := 0; i < len(es); {
			j := i + 1
			for j < len(es) && es[j].Peer == es[i].Peer {
				j++
			}
			sk := bpfSummaryKey{Rs: uint32(rs.ID), Peer: uint32(es[i].Peer)}
			lo := len(p.polK)
			sum, keys, err := planGroupInto(p.polK, es[i:j], inline, nameID)
			if err != nil {
				return nil, fmt.Errorf("sync rule set %d: %w", rs.ID, err)
			}
			p.polK = keys
			if len(keys) > lo { // most groups fit their summary and own no exact key
				for k := lo; k < len(keys); k++ {
					keys[k].Rs, keys[k].Peer = sk.Rs, sk.Peer
				}
				p.owned = append(p.owned, groupKeys{sk, lo, len(keys)})
			}
			p.sumK = append(p.sumK, sk)
			p.sumV = append(p.sumV, sum)
			i = j
		}
	}
	p.polV = make([]uint8, len(p.polK))
	for i := range p.polV {
		p.polV[i] = 1
	}
	return p, nil
}

// splitRuleSets cuts rule sets into up to parts runs of about equal entry counts.
func splitRuleSets(rss []*policy.RuleSet, parts int) [][]*policy.RuleSet {
	total := 0
	for _, rs := range rss {
		total += len(rs.Entries)
	}
	parts = max(1, min(parts, total/minPart))
	out := make([][]*policy.RuleSet, 0, parts)
	lo, cum := 0, 0
	for i, rs := range rss {
		cum += len(rs.Entries)
		if len(out) < parts-1 && cum >= total*(len(out)+1)/parts {
			out = append(out, rss[lo:i+1])
			lo = i + 1
		}
	}
	return append(out, rss[lo:])
}

// Sync replaces the maps' contents with s: it plans every entry s needs, diffs the plan against
// what the kernel holds, and applies only the difference (everything on a fresh datapath).
// Planning and writing run on all cores (see fullsync.go).
func (d *Datapath) Sync(s *policy.State) (policy.SyncStats, error) {
	start := time.Now()
	st, err := d.syncFull(s)
	st.Duration = time.Since(start)
	if err != nil {
		d.needFull = true
		return st, err
	}
	d.needFull = false
	d.synced = true
	return st, nil
}

func (d *Datapath) syncFull(s *policy.State) (policy.SyncStats, error) {
	t := d.tabs
	cilium := d.opts.Layout == LayoutCilium
	eps := s.Endpoints()
	rss := s.RuleSets()
	cidrs := s.CIDRs()

	// Name ids and rule-set flags first, so the parallel planners only read them.
	allFlags := make(map[policy.RuleSetID]uint8, len(rss))
	for _, rs := range rss {
		var f uint8
		for i := range rs.Entries {
			e := &rs.Entries[i]
			f |= peerFlag(e.Peer)
			if e.NamedPort != "" {
				if _, err := d.names.id(e.NamedPort); err != nil {
					return policy.SyncStats{}, fmt.Errorf("sync rule set %d: %w", rs.ID, err)
				}
			}
		}
		allFlags[rs.ID] = f
	}
	for _, ep := range eps {
		for _, cp := range ep.Pod.Ports {
			if cp.Name != "" {
				if _, err := d.names.id(cp.Name); err != nil {
					return policy.SyncStats{}, fmt.Errorf("sync endpoint %d (%s): %w", ep.ID, ep.Pod.Key(), err)
				}
			}
		}
	}
	nameID := func(name string) (uint16, error) {
		if id, ok := d.names.ids[name]; ok {
			return id, nil
		}
		return 0, fmt.Errorf("named port %q has no id", name) // allocated above: a bug if seen
	}
	flags := func(id policy.RuleSetID) uint8 { return allFlags[id] }

	clear(t.cidrPrefix)
	var ipcK []bpfIpcacheKey
	var ipcV []bpfIpcacheValue
	for _, c := range cidrs {
		t.cidrPrefix[c.Prefix] = c.Identity
		if cilium && c.Prefix.Bits() == 32 {
			if _, ok := s.EndpointByIP(c.Prefix.Addr()); ok {
				continue // the pod's own entry takes the key
			}
		}
		ipcK = append(ipcK, bpfIpcacheKey{Prefixlen: uint32(c.Prefix.Bits()), Addr: ipKey(c.Prefix.Addr())})
		ipcV = append(ipcV, bpfIpcacheValue{Identity: uint32(c.Identity), CidrIdentity: uint32(c.Identity)})
	}

	rsParts := splitRuleSets(rss, workers())
	rsPlans := make([]*ruleSetPlan, len(rsParts))
	epBounds := splitEven(len(eps), workers(), minPart/4)
	epPlans := make([]*endpointPlan, len(epBounds)-1)
	var tasks []func() error
	for i, part := range rsParts {
		tasks = append(tasks, func() (err error) {
			rsPlans[i], err = planRuleSets(part, d.opts.InlinePorts, nameID)
			return err
		})
	}
	for i := range epPlans {
		part := eps[epBounds[i]:epBounds[i+1]]
		tasks = append(tasks, func() error {
			p := &endpointPlan{lxcK: make([]uint32, 0, len(part)), lxcV: make([]bpfEndpoint, 0, len(part))}
			if cilium {
				p.ipcK, p.ipcV = make([]bpfIpcacheKey, 0, len(part)), make([]bpfIpcacheValue, 0, len(part))
			}
			epPlans[i] = p
			for _, ep := range part {
				if err := planEndpoint(p, ep, s.CIDRIdentityOf(ep.Pod.IP), cilium, flags, nameID); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := parallel(tasks...); err != nil {
		return policy.SyncStats{}, err
	}

	var sumK [][]bpfSummaryKey
	var sumV [][]bpfSummary
	var polK [][]bpfPolicyKey
	var polV [][]uint8
	for _, p := range rsPlans {
		sumK, sumV = append(sumK, p.sumK), append(sumV, p.sumV)
		polK, polV = append(polK, p.polK), append(polV, p.polV)
	}
	var lxcK [][]uint32
	var lxcV [][]bpfEndpoint
	var namK [][]bpfNamedPortKey
	var namV [][]bpfNamedPortValue
	for _, p := range epPlans {
		lxcK, lxcV = append(lxcK, p.lxcK), append(lxcV, p.lxcV)
		namK, namV = append(namK, p.namedK), append(namV, p.namedV)
		// An LPM trie takes one lock per update, so its writes gain nothing from parts.
		ipcK, ipcV = append(ipcK, p.ipcK...), append(ipcV, p.ipcV...)
	}
	plan := fullPlan{
		ipcache: newFullSync(t.ipcache, [][]bpfIpcacheKey{ipcK}, [][]bpfIpcacheValue{ipcV}),
		summary: newFullSync(t.summary, sumK, sumV),
		policy:  newFullSync(t.policy, polK, polV),
		named:   newFullSync(t.named, namK, namV),
		lxc:     newFullSync(t.lxc, lxcK, lxcV),
	}
	// Who owns what, for incremental updates; built beside the kernel writes.
	ownership := func() {
		t.epIP = make(map[uint32]netip.Addr, len(eps))
		t.epNamed = make(map[uint32][]bpfNamedPortKey, len(eps))
		for i, p := range epPlans {
			k := 0
			for _, ep := range eps[epBounds[i]:epBounds[i+1]] {
				t.epIP[ep.ID] = ep.Pod.IP
				lo := k
				for k < len(p.namedK) && p.namedK[k].EpId == ep.ID {
					k++
				}
				t.epNamed[ep.ID] = p.namedK[lo:k:k]
			}
		}
		t.groupKeys = map[bpfSummaryKey][]bpfPolicyKey{}
		for _, p := range rsPlans {
			for _, g := range p.owned {
				t.groupKeys[g.key] = p.polK[g.lo:g.hi:g.hi]
			}
		}
		clear(t.rsFlags)
		for _, ep := range eps {
			for _, id := range []policy.RuleSetID{ep.Ingress, ep.Egress} {
				if id != policy.RuleSetAllowAll {
					t.rsFlags[id] = allFlags[id]
				}
			}
		}
	}
	return d.flushFull(&plan, ownership)
}

// fullPlan is everything a full sync writes.
type fullPlan struct {
	ipcache *fullSync[bpfIpcacheKey, bpfIpcacheValue]
	summary *fullSync[bpfSummaryKey, bpfSummary]
	policy  *fullSync[bpfPolicyKey, uint8]
	named   *fullSync[bpfNamedPortKey, bpfNamedPortValue]
	lxc     *fullSync[uint32, bpfEndpoint]
}

// flushFull applies a full sync's plan in flush's order: entries an endpoint value may refer
// to first, the endpoint values next, deletions last, then the epoch. side runs beside the
// kernel writes.
func (d *Datapath) flushFull(p *fullPlan, side func()) (policy.SyncStats, error) {
	pk := d.opts.PerKey
	st := &opStats{}
	fail := func(err error) (policy.SyncStats, error) {
		return st.stats(), fmt.Errorf("full sync: %w", err)
	}
	_ = parallel(
		func() error { p.ipcache.prepare(); return nil },
		func() error { p.summary.prepare(); return nil },
		func() error { p.policy.prepare(); return nil },
		func() error { p.named.prepare(); return nil },
		func() error { p.lxc.prepare(); return nil },
	)
	var bg background
	bg.run(side)
	p.ipcache.startMirror(&bg)
	p.summary.startMirror(&bg)
	p.policy.startMirror(&bg)
	p.named.startMirror(&bg)
	p.lxc.startMirror(&bg)
	for _, write := range []func(bool) error{p.ipcache.writeUpserts, p.summary.writeUpserts,
		p.policy.writeUpserts, p.named.writeUpserts, p.lxc.writeUpserts} {
		if write(pk) != nil {
			break
		}
	}
	bg.wait()
	var errs []error
	for _, finish := range []func(*opStats) error{p.ipcache.finishUpserts, p.summary.finishUpserts,
		p.policy.finishUpserts, p.named.finishUpserts, p.lxc.finishUpserts} {
		errs = append(errs, finish(st))
	}
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}
	for _, del := range []func(bool, *opStats) error{p.lxc.flushDeletes, p.named.flushDeletes,
		p.summary.flushDeletes, p.policy.flushDeletes, p.ipcache.flushDeletes} {
		if err := del(pk, st); err != nil {
			return fail(err)
		}
	}
	return d.finishFlush(st)
}

// Update applies one event's delta: it re-plans only the units (endpoints, CIDRs, rule-set
// groups) the delta names, diffs them against what the kernel holds and applies the
// difference. After a failure the next Update is a full sync.
func (d *Datapath) Update(s *policy.State, delta *policy.Delta) (policy.SyncStats, error) {
	if !d.synced || d.needFull {
		st, err := d.Sync(s)
		if err != nil {
			return st, fmt.Errorf("update fell back to a full sync after an earlier failure: %w", err)
		}
		return st, nil
	}
	start := time.Now()
	fail := func(err error) (policy.SyncStats, error) {
		d.needFull = true
		return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("incremental update (the next update resyncs in full): %w", err)
	}
	t := d.tabs
	// CIDR changes alter the cached fall-back identity of every pod inside the prefix.
	var changed []netip.Prefix
	for _, c := range delta.CIDRsRemoved {
		d.removeCIDR(c.Prefix)
		changed = append(changed, c.Prefix)
	}
	for _, c := range delta.CIDRsAdded {
		d.setCIDR(c)
		changed = append(changed, c.Prefix)
	}
	eps := map[uint32]bool{}
	for _, ep := range delta.EndpointsRemoved {
		d.removeEndpoint(ep.ID)
	}
	for _, ep := range delta.EndpointsAdded {
		eps[ep.ID] = true
	}
	for _, ep := range delta.EndpointsChanged {
		eps[ep.ID] = true
	}
	if len(changed) > 0 {
		for id, ip := range t.epIP {
			for _, p := range changed {
				if p.Contains(ip) {
					eps[id] = true
					break
				}
			}
		}
	}
	groups := map[group]bool{}
	for _, e := range delta.EntriesAdded {
		groups[group{e.Set, e.Entry.Peer}] = true
	}
	for _, e := range delta.EntriesRemoved {
		groups[group{e.Set, e.Entry.Peer}] = true
	}
	for g := range groups {
		if err := d.setGroup(g, s.PeerEntries(g.rs, g.peer)); err != nil {
			return fail(err)
		}
	}
	// A rule set whose fall-back flags changed is rewritten into every endpoint using it.
	// Rule-set ids may be reused, so an added or removed set forgets its cached flags.
	for _, id := range append(delta.RuleSetsRemoved[:len(delta.RuleSetsRemoved):len(delta.RuleSetsRemoved)], delta.RuleSetsAdded...) {
		delete(t.rsFlags, id)
	}
	var flagged map[policy.RuleSetID]bool
	for g := range groups {
		if _, ok := s.RuleSet(g.rs); !ok {
			delete(t.rsFlags, g.rs)
			continue
		}
		old, had := t.rsFlags[g.rs]
		now := computeFlags(s, g.rs)
		t.rsFlags[g.rs] = now
		if had && old != now {
			if flagged == nil {
				flagged = map[policy.RuleSetID]bool{}
			}
			flagged[g.rs] = true
		}
	}
	if flagged != nil {
		for _, ep := range s.Endpoints() {
			if flagged[ep.Ingress] || flagged[ep.Egress] {
				eps[ep.ID] = true
			}
		}
	}
	ids := make([]uint32, 0, len(eps))
	for id := range eps {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		ep, ok := s.Endpoint(id)
		if !ok {
			d.removeEndpoint(id)
			continue
		}
		if old, ok := t.epIP[id]; ok && old != ep.Pod.IP {
			d.removeEndpoint(id)
		}
		if err := d.setEndpoint(s, ep); err != nil {
			return fail(err)
		}
	}
	st, err := d.flush()
	st.Duration = time.Since(start)
	if err != nil {
		d.needFull = true
		return st, fmt.Errorf("incremental update (the next update resyncs in full): %w", err)
	}
	return st, nil
}

// flush applies the plan: entries a new endpoint value may refer to go in first, the
// endpoint values next, deletions last, then the policy epoch moves so established flows are
// checked again at their next forward packet.
func (d *Datapath) flush() (policy.SyncStats, error) {
	t := d.tabs
	pk := d.opts.PerKey
	st := &opStats{}
	steps := []func() error{
		func() error { return t.ipcache.flushUpserts(pk, st) },
		func() error { return t.summary.flushUpserts(pk, st) },
		func() error { return t.policy.flushUpserts(pk, st) },
		func() error { return t.named.flushUpserts(pk, st) },
		func() error { return t.lxc.flushUpserts(pk, st) },
		func() error { return t.lxc.flushDeletes(pk, st) },
		func() error { return t.named.flushDeletes(pk, st) },
		func() error { return t.summary.flushDeletes(pk, st) },
		func() error { return t.policy.flushDeletes(pk, st) },
		func() error { return t.ipcache.flushDeletes(pk, st) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return st.stats(), err
		}
	}
	return d.finishFlush(st)
}

// finishFlush moves the policy epoch after a change, so established flows are checked again
// at their next forward packet, and counts the entries held.
func (d *Datapath) finishFlush(st *opStats) (policy.SyncStats, error) {
	t := d.tabs
	if st.ops > 0 {
		d.epoch++
		if err := d.objs.Epoch.Put(uint32(0), d.epoch); err != nil {
			return st.stats(), fmt.Errorf("update map epoch: %w", err)
		}
		st.add(func(c *MapCounts) *int { return &c.Epoch }, 1, 8)
	}
	out := st.stats()
	out.Detail.(*Counts).Entries = MapCounts{Lxc: len(t.lxc.cur), IPCache: len(t.ipcache.cur),
		PolicySummary: len(t.summary.cur), Policy: len(t.policy.cur), NamedPorts: len(t.named.cur)}
	return out, nil
}

// Counts are the exact per-map counts of one sync or update, carried in
// policy.SyncStats.Detail (read them with CountsOf).
type Counts struct {
	// Ops are the map updates and deletes sent to the kernel, per map.
	Ops MapCounts
	// Entries are the entries each map holds afterwards (Epoch unused).
	Entries MapCounts
}

// MapCounts holds one count per map of the datapath.
type MapCounts struct {
	Lxc, IPCache, PolicySummary, Policy, NamedPorts, Epoch int
}

// CountsOf returns the counts a sync of this package reported; zero counts when st carries
// none.
func CountsOf(st policy.SyncStats) Counts {
	if c, ok := st.Detail.(*Counts); ok && c != nil {
		return *c
	}
	return Counts{}
}
