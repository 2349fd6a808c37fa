package datapath

import (
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
		lxc: newTable[uint32, bpfEndpoint](d.sizes.sized("lxc"),
			func(c *MapCounts) *int { return &c.Lxc }, d.objs.Lxc),
		ipcache: newTable[bpfIpcacheKey, bpfIpcacheValue](d.sizes.sized("ipcache"),
			func(c *MapCounts) *int { return &c.IPCache }, d.objs.Ipcache),
		summary: newTable[bpfSummaryKey, bpfSummary](d.sizes.sized("policy_summary"),
			func(c *MapCounts) *int { return &c.PolicySummary }, d.objs.PolicySummary),
		policy: newTable[bpfPolicyKey, uint8](d.sizes.sized("policy"),
			func(c *MapCounts) *int { return &c.Policy }, d.objs.Policy),
		named: newTable[bpfNamedPortKey, bpfNamedPortValue](d.sizes.sized("named_ports"),
			func(c *MapCounts) *int { return &c.NamedPorts }, d.objs.NamedPorts),
		epNamed:    map[uint32][]bpfNamedPortKey{},
		epIP:       map[uint32]netip.Addr{},
		groupKeys:  map[bpfSummaryKey][]bpfPolicyKey{},
		cidrPrefix: map[netip.Prefix]policy.Identity{},
		rsFlags:    map[policy.RuleSetID]uint8{},
	}
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

func (d *Datapath) setCIDR(c policy.CIDR) {
	k := bpfIpcacheKey{Prefixlen: uint32(c.Prefix.Bits()), Addr: ipKey(c.Prefix.Addr())}
	d.tabs.ipcache.set(k, bpfIpcacheValue{Identity: uint32(c.Identity), CidrIdentity: uint32(c.Identity)})
	d.tabs.cidrPrefix[c.Prefix] = c.Identity
}

func (d *Datapath) removeCIDR(p netip.Prefix) {
	d.tabs.ipcache.remove(bpfIpcacheKey{Prefixlen: uint32(p.Bits()), Addr: ipKey(p.Addr())})
	delete(d.tabs.cidrPrefix, p)
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

// Sync replaces the maps' contents with s: it plans every entry s needs, diffs the plan against
// what the kernel holds, and applies only the difference (everything on a fresh datapath).
// Planning and writing run on all cores (see fullsync.go).
func (d *Datapath) Sync(s *policy.State) (policy.SyncStats, error) {
	start := time.Now()
	st, err := d.syncFull(s)
	st.Duration = time.Since(start)
	if err != nil {
		d.needFull = true
		return st, fmt.Errorf("%w (%w)", err, policy.ErrNextSyncFull)
	}
	d.needFull = false
	d.synced = true
	return st, nil
}

func (d *Datapath) syncFull(s *policy.State) (policy.SyncStats, error) {
	t := d.tabs
	p, err := planState(s, d.opts.Layout == LayoutCilium, d.opts.InlinePorts, d.names, workers())
	if err != nil {
		return policy.SyncStats{}, err
	}
	clear(t.cidrPrefix)
	for _, c := range s.CIDRs() {
		t.cidrPrefix[c.Prefix] = c.Identity
	}
	plan := fullPlan{
		ipcache: newFullSync(t.ipcache, [][]bpfIpcacheKey{p.ipcK}, [][]bpfIpcacheValue{p.ipcV}),
		summary: newFullSync(t.summary, p.sumK, p.sumV),
		policy:  newFullSync(t.policy, p.polK, p.polV),
		named:   newFullSync(t.named, p.namK, p.namV),
		lxc:     newFullSync(t.lxc, p.lxcK, p.lxcV),
	}
	// Who owns what, for incremental updates; built beside the kernel writes.
	ownership := func() {
		eps := p.eps
		t.epIP = make(map[uint32]netip.Addr, len(eps))
		t.epNamed = make(map[uint32][]bpfNamedPortKey, len(eps))
		for i, part := range p.epPlans {
			k := 0
			for _, ep := range eps[p.epBounds[i]:p.epBounds[i+1]] {
				t.epIP[ep.ID] = ep.Pod.IP
				lo := k
				for k < len(part.namedK) && part.namedK[k].EpId == ep.ID {
					k++
				}
				t.epNamed[ep.ID] = part.namedK[lo:k:k]
			}
		}
		t.groupKeys = map[bpfSummaryKey][]bpfPolicyKey{}
		for _, rp := range p.rsPlans {
			for _, g := range rp.owned {
				t.groupKeys[g.key] = rp.polK[g.lo:g.hi:g.hi]
			}
		}
		clear(t.rsFlags)
		for _, ep := range eps {
			for _, id := range []policy.RuleSetID{ep.Ingress, ep.Egress} {
				if id != policy.RuleSetAllowAll {
					t.rsFlags[id] = p.flags[id]
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
		retry := d.needFull
		st, err := d.Sync(s)
		if c, ok := st.Detail.(*Counts); ok {
			c.Fallback = retry
		}
		if err != nil && retry {
			return st, fmt.Errorf("update fell back to a full sync after an earlier failure: %w", err)
		}
		return st, err
	}
	start := time.Now()
	fail := func(err error) (policy.SyncStats, error) {
		d.needFull = true
		return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("incremental update: %w (%w)", err, policy.ErrNextSyncFull)
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
		return st, fmt.Errorf("incremental update: %w (%w)", err, policy.ErrNextSyncFull)
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
// at their next forward packet, and counts the entries held. An epoch that failed to reach the
// kernel is written by the next flush even when that flush changes nothing else: the change
// it marks is in the maps, and flows allowed before it must still be checked again.
func (d *Datapath) finishFlush(st *opStats) (policy.SyncStats, error) {
	t := d.tabs
	if st.ops > 0 || d.epochStale {
		d.epoch++
		if err := d.epochMap.Put(uint32(0), d.epoch); err != nil {
			d.epochStale = true
			return st.stats(), fmt.Errorf("update map epoch: %w", err)
		}
		d.epochStale = false
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
	// Fallback is set for a full sync that replaced an Update after a failed call.
	Fallback bool
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
