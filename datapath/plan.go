package datapath

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"netpolbench/policy"
)

// The pure half of a sync: what the maps must hold for a state, planned without the kernel
// (sync.go diffs plans against the kernel's maps and writes the difference). planState plans a
// whole state for a full sync; planEndpoint and planGroup plan the units an incremental
// update rewrites, so both write the same entries.

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

// Flags of struct endpoint (RS_HAS_*).
const (
	rsHasAny   = 0x01
	rsHasCIDR  = 0x02
	rsHasWorld = 0x04
)

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

// group is the (rule set, peer) unit of the policy maps.
type group struct {
	rs   policy.RuleSetID
	peer policy.Identity
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

// statePlan is everything a full sync of a state writes, planned in parts on all cores: each
// map's keys and values (one slice per part; ipcache in one, since an LPM trie gains nothing
// from parallel writes), the rule-set flags endpoint values carry, and the parts themselves,
// from which the sync learns which endpoint and which group owns which keys.
type statePlan struct {
	ipcK []bpfIpcacheKey
	ipcV []bpfIpcacheValue
	sumK [][]bpfSummaryKey
	sumV [][]bpfSummary
	polK [][]bpfPolicyKey
	polV [][]uint8
	lxcK [][]uint32
	lxcV [][]bpfEndpoint
	namK [][]bpfNamedPortKey
	namV [][]bpfNamedPortValue

	flags    map[policy.RuleSetID]uint8
	eps      []*policy.Endpoint
	epBounds []int // endpoint part i is eps[epBounds[i]:epBounds[i+1]]
	epPlans  []*endpointPlan
	rsPlans  []*ruleSetPlan
}

// planState plans every entry s needs, in up to parts parts per map. Named-port ids come from
// names, which it extends; cilium selects the Cilium layout (pod /32s in the ipcache) and
// inline the port spans kept in a summary value (see planGroup).
func planState(s *policy.State, cilium bool, inline int, names *nameTable, parts int) (*statePlan, error) {
	eps := s.Endpoints()
	rss := s.RuleSets()

	// Name ids and rule-set flags first, so the parallel planners only read them.
	allFlags := make(map[policy.RuleSetID]uint8, len(rss))
	for _, rs := range rss {
		var f uint8
		for i := range rs.Entries {
			e := &rs.Entries[i]
			f |= peerFlag(e.Peer)
			if e.NamedPort != "" {
				if _, err := names.id(e.NamedPort); err != nil {
					return nil, fmt.Errorf("sync rule set %d: %w", rs.ID, err)
				}
			}
		}
		allFlags[rs.ID] = f
	}
	for _, ep := range eps {
		for _, cp := range ep.Pod.Ports {
			if cp.Name != "" {
				if _, err := names.id(cp.Name); err != nil {
					return nil, fmt.Errorf("sync endpoint %d (%s): %w", ep.ID, ep.Pod.Key(), err)
				}
			}
		}
	}
	nameID := func(name string) (uint16, error) {
		if id, ok := names.ids[name]; ok {
			return id, nil
		}
		return 0, fmt.Errorf("named port %q has no id", name) // allocated above: a bug if seen
	}
	flags := func(id policy.RuleSetID) uint8 { return allFlags[id] }

	p := &statePlan{flags: allFlags, eps: eps}
	for _, c := range s.CIDRs() {
		if cilium && c.Prefix.Bits() == 32 {
			if _, ok := s.EndpointByIP(c.Prefix.Addr()); ok {
				continue // the pod's own entry takes the key
			}
		}
		p.ipcK = append(p.ipcK, bpfIpcacheKey{Prefixlen: uint32(c.Prefix.Bits()), Addr: ipKey(c.Prefix.Addr())})
		p.ipcV = append(p.ipcV, bpfIpcacheValue{Identity: uint32(c.Identity), CidrIdentity: uint32(c.Identity)})
	}

	rsParts := splitRuleSets(rss, parts)
	p.rsPlans = make([]*ruleSetPlan, len(rsParts))
	p.epBounds = splitEven(len(eps), parts, minPart/4)
	p.epPlans = make([]*endpointPlan, len(p.epBounds)-1)
	var tasks []func() error
	for i, part := range rsParts {
		tasks = append(tasks, func() (err error) {
			p.rsPlans[i], err = planRuleSets(part, inline, nameID)
			return err
		})
	}
	for i := range p.epPlans {
		part := eps[p.epBounds[i]:p.epBounds[i+1]]
		tasks = append(tasks, func() error {
			ep := &endpointPlan{lxcK: make([]uint32, 0, len(part)), lxcV: make([]bpfEndpoint, 0, len(part))}
			if cilium {
				ep.ipcK, ep.ipcV = make([]bpfIpcacheKey, 0, len(part)), make([]bpfIpcacheValue, 0, len(part))
			}
			p.epPlans[i] = ep
			for _, e := range part {
				if err := planEndpoint(ep, e, s.CIDRIdentityOf(e.Pod.IP), cilium, flags, nameID); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := parallel(tasks...); err != nil {
		return nil, err
	}
	for _, rp := range p.rsPlans {
		p.sumK, p.sumV = append(p.sumK, rp.sumK), append(p.sumV, rp.sumV)
		p.polK, p.polV = append(p.polK, rp.polK), append(p.polV, rp.polV)
	}
	for _, ep := range p.epPlans {
		p.lxcK, p.lxcV = append(p.lxcK, ep.lxcK), append(p.lxcV, ep.lxcV)
		p.namK, p.namV = append(p.namK, ep.namedK), append(p.namV, ep.namedV)
		p.ipcK, p.ipcV = append(p.ipcK, ep.ipcK...), append(p.ipcV, ep.ipcV...)
	}
	return p, nil
}

// PlannedMaps is what a full sync of s into a fresh datapath of layout writes, planned without
// the kernel: per policy-state map (lxc, ipcache, policy_summary, policy, named_ports), the
// entries it will hold, the capacity SizesWithHeadroom gives it, and its key and value sizes
// from the programs' own map definitions. Memlock is left 0: the kernel's charge is known only
// once the map exists.
func PlannedMaps(s *policy.State, layout Layout, headroom float64) ([]MapFacts, error) {
	if layout == "" {
		layout = LayoutHash
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	c := countState(s, layout, maxInline)
	sz := SizesWithHeadroom(s, layout, headroom)
	var out []MapFacts
	for _, m := range []struct {
		name    string
		entries int
		max     uint32
	}{{"ipcache", c.ipcache, sz.IPCache}, {"lxc", c.endpoints, sz.Endpoints}, {"named_ports", c.named, sz.NamedPorts},
		{"policy", c.policy, sz.Policy}, {"policy_summary", c.summaries, sz.Summaries}} {
		ms, ok := spec.Maps[m.name]
		if !ok {
			return nil, fmt.Errorf("plan maps: the programs define no map %s", m.name)
		}
		out = append(out, MapFacts{Name: m.name, Type: ms.Type.String(), Entries: m.entries, MaxEntries: m.max,
			KeyBytes: ms.KeySize, ValueBytes: ms.ValueSize})
	}
	return out, nil
}
