package policy

import (
	"cmp"
	"net/netip"
	"slices"
)

// deltaBuilder accumulates the net changes of one event: +1 for every 0→1 transition, -1 for
// every 1→0; what nets to zero was added and removed again and is not reported.
type deltaBuilder struct {
	ids     map[Identity]int
	members map[Member]int
	cidrs   map[CIDR]int
	sets    map[RuleSetID]int
	renamed map[RuleSetID]bool
	// eps holds each touched endpoint as it was before the event.
	eps   []touchedEndpoint
	epoch uint32
}

type touchedEndpoint struct {
	ep     *epState
	before Endpoint
	isNew  bool
}

func newDeltaBuilder(epoch uint32) *deltaBuilder {
	return &deltaBuilder{
		ids:     map[Identity]int{},
		members: map[Member]int{},
		cidrs:   map[CIDR]int{},
		sets:    map[RuleSetID]int{},
		renamed: map[RuleSetID]bool{},
		epoch:   epoch,
	}
}

// touch records an endpoint's state before its first change in this event (isNew: it is
// being added).
func (b *deltaBuilder) touch(ep *epState, isNew bool) {
	if ep.touched != b.epoch {
		ep.touched = b.epoch
		b.eps = append(b.eps, touchedEndpoint{ep, ep.Endpoint, isNew})
	}
}

func split[K comparable](m map[K]int, cmpf func(a, b K) int) (added, removed []K) {
	for k, n := range m {
		switch {
		case n > 0:
			added = append(added, k)
		case n < 0:
			removed = append(removed, k)
		}
	}
	slices.SortFunc(added, cmpf)
	slices.SortFunc(removed, cmpf)
	return added, removed
}

func (b *deltaBuilder) build(c *Compiler) *Delta {
	d := &Delta{}
	d.IdentitiesAllocated, d.IdentitiesReleased = split(b.ids, cmp.Compare[Identity])
	d.MembersAdded, d.MembersRemoved = split(b.members, func(x, y Member) int {
		return cmp.Or(cmp.Compare(x.Identity, y.Identity), x.IP.Compare(y.IP))
	})
	d.CIDRsAdded, d.CIDRsRemoved = split(b.cidrs, func(x, y CIDR) int { return comparePrefix(x.Prefix, y.Prefix) })
	d.RuleSetsAdded, d.RuleSetsRemoved = split(b.sets, cmp.Compare[RuleSetID])
	for id := range b.renamed {
		if _, alive := c.sets[id]; alive {
			d.RuleSetsRenamed = append(d.RuleSetsRenamed, id)
		}
	}
	slices.Sort(d.RuleSetsRenamed)
	if len(b.eps) > 1 {
		slices.SortFunc(b.eps, func(x, y touchedEndpoint) int { return cmp.Compare(x.ep.ID, y.ep.ID) })
	}
	for i := range b.eps {
		t := &b.eps[i]
		after, alive := t.ep, !t.ep.removed
		before := &t.before
		switch {
		case t.isNew && alive:
			d.EndpointsAdded = append(d.EndpointsAdded, after.Endpoint)
		case !t.isNew && !alive:
			d.EndpointsRemoved = append(d.EndpointsRemoved, *before)
		case !t.isNew && alive && (before.Identity != after.Identity ||
			before.Ingress != after.Ingress || before.Egress != after.Egress):
			d.EndpointsChanged = append(d.EndpointsChanged, after.Endpoint)
		}
	}
	return d
}

// State accessors.

// Cluster returns the cluster the state was compiled from, as of the last applied event.
func (s *State) Cluster() *Cluster { return s.c.cluster }

// Endpoints returns every endpoint, sorted by ID.
func (s *State) Endpoints() []*Endpoint {
	out := make([]*Endpoint, 0, len(s.c.epByID))
	for _, ep := range s.c.epByID {
		out = append(out, &ep.Endpoint)
	}
	slices.SortFunc(out, func(a, b *Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// NumEndpoints returns the number of endpoints.
func (s *State) NumEndpoints() int { return len(s.c.epByID) }

// Endpoint returns the endpoint with the given id.
func (s *State) Endpoint(id uint32) (*Endpoint, bool) {
	ep, ok := s.c.epByID[id]
	if !ok {
		return nil, false
	}
	return &ep.Endpoint, true
}

// EndpointByIP returns the endpoint of the pod with that IP.
func (s *State) EndpointByIP(ip netip.Addr) (*Endpoint, bool) {
	ep, ok := s.c.epByIP[ip]
	if !ok {
		return nil, false
	}
	return &ep.Endpoint, true
}

// EndpointByPod returns the endpoint of a pod ("namespace/name").
func (s *State) EndpointByPod(key string) (*Endpoint, bool) {
	ep, ok := s.c.eps[key]
	if !ok {
		return nil, false
	}
	return &ep.Endpoint, true
}

// RuleSets returns every rule set, sorted by ID.
func (s *State) RuleSets() []*RuleSet {
	out := make([]*RuleSet, 0, len(s.c.sets))
	for _, rs := range s.c.sets {
		out = append(out, &rs.RuleSet)
	}
	slices.SortFunc(out, func(a, b *RuleSet) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// RuleSet returns a rule set by id. RuleSetAllowAll is not stored.
func (s *State) RuleSet(id RuleSetID) (*RuleSet, bool) {
	rs, ok := s.c.sets[id]
	if !ok {
		return nil, false
	}
	return &rs.RuleSet, true
}

// PeerEntries returns the entries of a rule set for one peer: a sub-slice of its sorted
// entries, found by binary search. Callers must not modify it.
func (s *State) PeerEntries(id RuleSetID, peer Identity) []Entry {
	rs, ok := s.c.sets[id]
	if !ok {
		return nil
	}
	return peerEntries(rs.Entries, peer)
}

// peerEntries returns the run of sorted entries with one peer.
func peerEntries(es []Entry, peer Identity) []Entry {
	i, _ := slices.BinarySearchFunc(es, peer, func(e Entry, p Identity) int { return cmp.Compare(e.Peer, p) })
	j := i
	for j < len(es) && es[j].Peer == peer {
		j++
	}
	return es[i:j:j]
}

// NumEntries returns the number of entries over all rule sets.
func (s *State) NumEntries() int {
	n := 0
	for _, rs := range s.c.sets {
		n += len(rs.Entries)
	}
	return n
}

// Identities returns every allocated identity (pod and CIDR), sorted by ID.
func (s *State) Identities() []*IdentityInfo {
	out := make([]*IdentityInfo, 0, len(s.c.ids))
	for _, id := range s.c.ids {
		out = append(out, &id.info)
	}
	slices.SortFunc(out, func(a, b *IdentityInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Identity returns an identity's description.
func (s *State) Identity(id Identity) (*IdentityInfo, bool) {
	i, ok := s.c.ids[id]
	if !ok {
		return nil, false
	}
	return &i.info, true
}

// Members returns the pod IPs that hold a pod identity, sorted.
func (s *State) Members(id Identity) []netip.Addr {
	i, ok := s.c.ids[id]
	if !ok {
		return nil
	}
	out := make([]netip.Addr, 0, len(i.members))
	for ip := range i.members {
		out = append(out, ip)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// CIDRs returns the ipBlock prefixes with their identities, sorted by prefix.
func (s *State) CIDRs() []CIDR {
	out := make([]CIDR, 0, len(s.c.cidrs))
	for p, id := range s.c.cidrs {
		out = append(out, CIDR{p, id.info.ID})
	}
	slices.SortFunc(out, func(a, b CIDR) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

// CIDRIdentityOf returns the identity of the longest ipBlock prefix holding ip, or
// IdentityWorld when none does. For a pod IP this is the identity the CIDR fall-back uses.
func (s *State) CIDRIdentityOf(ip netip.Addr) Identity {
	if !ip.Is4() {
		return IdentityWorld
	}
	for bits := 32; bits >= 0; bits-- {
		if s.c.cidrLens&(1<<bits) == 0 {
			continue
		}
		p, _ := ip.Prefix(bits)
		if id, ok := s.c.cidrs[p]; ok {
			return id.info.ID
		}
	}
	return IdentityWorld
}

// PeerIdentities returns the identities an address is known by, in lookup order: for a pod its
// pod identity then CIDRIdentityOf(ip); otherwise CIDRIdentityOf(ip) alone.
func (s *State) PeerIdentities(ip netip.Addr) []Identity {
	if ep, ok := s.c.epByIP[ip]; ok {
		return []Identity{ep.Identity, s.CIDRIdentityOf(ip)}
	}
	return []Identity{s.CIDRIdentityOf(ip)}
}

// Verdict decides a flow by a plain lookup in the compiled state (the "compiled" backend).
func (s *State) Verdict(f Flow) Verdict {
	src, srcPod := s.c.epByIP[f.Src]
	dst, dstPod := s.c.epByIP[f.Dst]
	if srcPod && dstPod && src == dst {
		return Allow
	}
	if srcPod && !s.allows(src.sets[Egress], f, s.PeerIdentities(f.Dst), dst) {
		return Deny
	}
	if dstPod && !s.allows(dst.sets[Ingress], f, s.PeerIdentities(f.Src), dst) {
		return Deny
	}
	return Allow
}

// allows looks a flow up in one rule set; dst is the destination endpoint (nil outside the
// cluster), against which egress named ports resolve.
func (s *State) allows(rs *ruleSet, f Flow, peers []Identity, dst *epState) bool {
	if rs == nil {
		return true
	}
	check := func(id Identity) bool {
		for _, e := range peerEntries(rs.Entries, id) {
			if e.NamedPort != "" {
				if dst == nil || e.Proto != f.Proto {
					continue
				}
				if n, ok := dst.Pod.NamedPort(e.NamedPort, e.Proto); ok && n == f.Port {
					return true
				}
				continue
			}
			if e.MatchesL4(f.Proto, f.Port) {
				return true
			}
		}
		return false
	}
	for _, id := range peers {
		if check(id) {
			return true
		}
	}
	return check(IdentityAny)
}
