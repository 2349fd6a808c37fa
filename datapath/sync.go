package datapath

import (
	"encoding/binary"
	"fmt"
	"net/netip"
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
		lxc:        newTable[uint32, bpfEndpoint]("lxc", d.objs.Lxc, d.sizes.Endpoints),
		ipcache:    newTable[bpfIpcacheKey, bpfIpcacheValue]("ipcache", d.objs.Ipcache, d.sizes.IPCache),
		summary:    newTable[bpfSummaryKey, bpfSummary]("policy_summary", d.objs.PolicySummary, d.sizes.Summaries),
		policy:     newTable[bpfPolicyKey, uint8]("policy", d.objs.Policy, d.sizes.Policy),
		named:      newTable[bpfNamedPortKey, bpfNamedPortValue]("named_ports", d.objs.NamedPorts, d.sizes.NamedPorts),
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

// setEndpoint plans the entries one endpoint owns: its lxc value, its /32 in the Cilium
// layout's ipcache, and its named container ports.
func (d *Datapath) setEndpoint(s *policy.State, ep *policy.Endpoint) error {
	t := d.tabs
	ip := ep.Pod.IP
	if !ip.Is4() {
		return fmt.Errorf("sync endpoint %d (%s): pod IP %s is not IPv4", ep.ID, ep.Pod.Key(), ip)
	}
	cidrID := uint32(s.CIDRIdentityOf(ip))
	t.lxc.set(ipKey(ip), bpfEndpoint{
		EpId: ep.ID, Identity: uint32(ep.Identity), CidrIdentity: cidrID,
		IngressRs: uint32(ep.Ingress), EgressRs: uint32(ep.Egress),
		IngressFlags: d.flagsOf(s, ep.Ingress), EgressFlags: d.flagsOf(s, ep.Egress),
	})
	if d.opts.Layout == LayoutCilium {
		t.ipcache.set(bpfIpcacheKey{Prefixlen: 32, Addr: ipKey(ip)}, bpfIpcacheValue{Identity: uint32(ep.Identity), CidrIdentity: cidrID})
	}
	t.epIP[ep.ID] = ip
	vals := map[bpfNamedPortKey]bpfNamedPortValue{}
	for _, cp := range ep.Pod.Ports {
		if cp.Name == "" {
			continue
		}
		port, ok := ep.Pod.NamedPort(cp.Name, cp.Protocol)
		if !ok || port != cp.Port {
			continue // a later duplicate of a name: NamedPort resolves to the first
		}
		id, err := d.names.id(cp.Name)
		if err != nil {
			return err
		}
		k := bpfNamedPortKey{EpId: ep.ID, Proto: uint8(cp.Protocol), Port: cp.Port}
		v := vals[k]
		placed := false
		for i := range v.Names {
			if v.Names[i] == id {
				placed = true
				break
			}
			if v.Names[i] == 0 {
				v.Names[i] = id
				placed = true
				break
			}
		}
		if !placed {
			return fmt.Errorf("sync endpoint %d (%s): more than %d names on %s port %d", ep.ID, ep.Pod.Key(), len(v.Names), cp.Protocol, cp.Port)
		}
		vals[k] = v
	}
	keys := make([]bpfNamedPortKey, 0, len(vals))
	for k, v := range vals {
		t.named.set(k, v)
		keys = append(keys, k)
	}
	t.epNamed[ep.ID] = keys
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
	for _, e := range rs.Entries {
		switch {
		case e.Peer == policy.IdentityAny:
			f |= rsHasAny
		case e.Peer.IsCIDR():
			f |= rsHasCIDR
		case e.Peer < policy.IdentityClusterMin || e.Peer > policy.IdentityClusterMax:
			f |= rsHasWorld
		}
	}
	return f
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
	var sum bpfSummary
	var keys []bpfPolicyKey
	type span struct {
		proto  policy.Protocol
		lo, hi int
	}
	ranges := map[policy.Protocol][]span{}
	for _, e := range entries {
		switch {
		case e.Proto == policy.ProtoAny:
			sum.AnyProto = 1
		case e.NamedPort != "":
			id, err := nameID(e.NamedPort)
			if err != nil {
				return sum, nil, err
			}
			keys = append(keys, bpfPolicyKey{Proto: uint8(e.Proto), Kind: 1, Port: id})
			sum.Named |= protoBit(e.Proto)
		case e.Port == 0:
			sum.AllPorts |= protoBit(e.Proto)
		default:
			hi := max(int(e.EndPort), int(e.Port))
			ranges[e.Proto] = append(ranges[e.Proto], span{e.Proto, int(e.Port), hi})
		}
	}
	if sum.AnyProto != 0 {
		// Every protocol and port is allowed: no other key can change a verdict.
		return bpfSummary{AnyProto: 1}, nil, nil
	}
	var spans []span
	for p, rs := range ranges {
		if sum.AllPorts&protoBit(p) != 0 {
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
		merged := rs[:1]
		for _, r := range rs[1:] {
			last := &merged[len(merged)-1]
			if r.lo <= last.hi+1 {
				last.hi = max(last.hi, r.hi)
				continue
			}
			merged = append(merged, r)
		}
		spans = append(spans, merged...)
	}
	// Widest first (expanding them would cost the most keys), then a fixed order.
	sort.Slice(spans, func(i, j int) bool {
		a, b := spans[i], spans[j]
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
	for _, r := range spans {
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

func groupEntries(rs *policy.RuleSet) map[policy.Identity][]policy.Entry {
	out := map[policy.Identity][]policy.Entry{}
	for _, e := range rs.Entries {
		out[e.Peer] = append(out[e.Peer], e)
	}
	return out
}

// Sync replaces the maps' contents with s: it plans every entry s needs, diffs the plan against
// what the kernel holds, and applies only the difference (everything on a fresh datapath).
func (d *Datapath) Sync(s *policy.State) (policy.SyncStats, error) {
	start := time.Now()
	t := d.tabs
	eps := s.Endpoints()
	t.lxc.removeAll(len(eps))
	t.ipcache.removeAll(len(t.ipcache.cur))
	// A (rule set, peer) group per entry at most: presizing the plan saves rehashing a
	// million-entry map at 100k pods.
	t.summary.removeAll(max(len(t.summary.cur), s.NumEntries()))
	t.policy.removeAll(len(t.policy.cur))
	t.named.removeAll(len(eps))
	t.epNamed = make(map[uint32][]bpfNamedPortKey, len(eps))
	t.epIP = make(map[uint32]netip.Addr, len(eps))
	clear(t.groupKeys)
	clear(t.cidrPrefix)
	clear(t.rsFlags)
	for _, c := range s.CIDRs() {
		d.setCIDR(c)
	}
	for _, rs := range s.RuleSets() {
		for peer, es := range groupEntries(rs) {
			if err := d.setGroup(group{rs.ID, peer}, es); err != nil {
				d.needFull = true
				return policy.SyncStats{}, fmt.Errorf("sync rule set %d: %w", rs.ID, err)
			}
		}
	}
	for _, ep := range eps {
		if err := d.setEndpoint(s, ep); err != nil {
			d.needFull = true
			return policy.SyncStats{}, err
		}
	}
	st, err := d.flush()
	st.Duration = time.Since(start)
	if err != nil {
		d.needFull = true
		return st, fmt.Errorf("full sync: %w", err)
	}
	d.needFull = false
	d.synced = true
	return st, nil
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
		var es []policy.Entry
		if rs, ok := s.RuleSet(g.rs); ok {
			for _, e := range rs.Entries {
				if e.Peer == g.peer {
					es = append(es, e)
				}
			}
		}
		if err := d.setGroup(g, es); err != nil {
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
	st := &opStats{perMap: map[string]int64{}}
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
	out := policy.SyncStats{Detail: st.perMap}
	for _, step := range steps {
		if err := step(); err != nil {
			out.Ops, out.Bytes = st.ops, st.bytes
			return out, err
		}
	}
	if st.ops > 0 {
		d.epoch++
		if err := d.objs.Epoch.Put(uint32(0), d.epoch); err != nil {
			return out, fmt.Errorf("update map epoch: %w", err)
		}
		st.add("epoch", 1, 8)
	}
	out.Ops, out.Bytes = st.ops, st.bytes
	for name, n := range map[string]int{"lxc": len(t.lxc.cur), "ipcache": len(t.ipcache.cur),
		"policy_summary": len(t.summary.cur), "policy": len(t.policy.cur), "named_ports": len(t.named.cur)} {
		st.perMap["entries_"+name] = int64(n)
	}
	return out, nil
}
