package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Identity is a Cilium-style numeric security identity.
type Identity uint32

const (
	// IdentityAny is the wildcard peer in an Entry: every source or destination, inside the
	// cluster or not. It is never allocated to anything.
	IdentityAny Identity = 0
	// IdentityHost is the node itself (reserved, as in Cilium).
	IdentityHost Identity = 1
	// IdentityWorld is every address outside the cluster that no ipBlock prefix covers.
	IdentityWorld Identity = 2
	// IdentityClusterMin is the first identity allocated to a pod label set.
	IdentityClusterMin Identity = 256
	// IdentityClusterMax is the last cluster identity (Cilium's 16-bit cluster-local range).
	IdentityClusterMax Identity = 65535
	// IdentityLocalScope marks node-local CIDR identities (Cilium's 1<<24 scope bit).
	IdentityLocalScope Identity = 1 << 24
)

// IsCIDR reports whether id is a CIDR identity.
func (id Identity) IsCIDR() bool { return id&IdentityLocalScope != 0 }

func (id Identity) String() string {
	switch id {
	case IdentityAny:
		return "any"
	case IdentityHost:
		return "host"
	case IdentityWorld:
		return "world"
	}
	return fmt.Sprintf("%d", uint32(id))
}

// Direction is the direction of enforcement at an endpoint.
type Direction uint8

const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Entry is one allow entry of a RuleSet.
//
// Peer is the remote identity (a pod identity, a CIDR identity, or IdentityAny). Proto is
// ProtoAny for rules without ports (then Port and EndPort are 0). Port 0 means every port of
// Proto. Otherwise the entry allows ports Port..EndPort inclusive (EndPort == Port for a single
// port). NamedPort is set only on egress entries: the port is the destination pod's container
// port of that name and Proto; it never matches a destination outside the cluster, and Port and
// EndPort are 0.
type Entry struct {
	Peer      Identity
	Proto     Protocol
	Port      uint16
	EndPort   uint16
	NamedPort string
}

func (e Entry) String() string {
	s := fmt.Sprintf("peer=%s proto=%s", e.Peer, e.Proto)
	switch {
	case e.NamedPort != "":
		s += " port=" + e.NamedPort
	case e.Port == 0:
	case e.EndPort == e.Port:
		s += fmt.Sprintf(" port=%d", e.Port)
	default:
		s += fmt.Sprintf(" port=%d-%d", e.Port, e.EndPort)
	}
	return s
}

// MatchesL4 reports whether the entry's protocol and numeric port allow (proto, port).
// Named-port entries are resolved by the caller.
func (e Entry) MatchesL4(proto Protocol, port uint16) bool {
	if e.Proto == ProtoAny {
		return true
	}
	if e.Proto != proto || e.NamedPort != "" {
		return false
	}
	if e.Port == 0 {
		return true
	}
	return port >= e.Port && port <= e.EndPort
}

// RuleSetID names a RuleSet. RuleSetAllowAll (0) is the implicit set of a direction that no
// policy selects: not isolated, everything allowed.
type RuleSetID uint32

const RuleSetAllowAll RuleSetID = 0

// RuleSet is the enforced policy of one direction, shared by every endpoint whose selecting
// policies (and, for ingress named ports, container ports) are the same. An isolated RuleSet
// allows exactly its entries. Entries is kept sorted (see SortEntries) and free of duplicates.
type RuleSet struct {
	ID        RuleSetID
	Direction Direction
	// Policies are the keys ("namespace/name") of the policies that select the endpoints of
	// this set in this direction, sorted.
	Policies []string
	Entries  []Entry
}

// Endpoint is a pod as the datapath sees it.
type Endpoint struct {
	// ID is the endpoint id, from 1, stable for the life of the pod.
	ID       uint32
	Pod      *Pod
	Identity Identity
	Ingress  RuleSetID
	Egress   RuleSetID
}

// CIDR is an ipBlock prefix and its node-local identity.
type CIDR struct {
	Prefix   netip.Prefix
	Identity Identity
}

// IdentityInfo describes an allocated identity.
type IdentityInfo struct {
	ID Identity
	// Labels are the identity-relevant labels in Cilium's "source:key=value" form, sorted.
	Labels []string
	// Namespace, NamespaceLabels and PodLabels are what selectors match against.
	Namespace       string
	NamespaceLabels map[string]string
	PodLabels       map[string]string
	// Prefix is set for CIDR identities.
	Prefix netip.Prefix
	// Refs counts the endpoints (pod identities) or policies (CIDR identities) holding it.
	Refs int
}

// RuleSetEntry is an entry of a rule set, as it appears in a Delta.
type RuleSetEntry struct {
	Set       RuleSetID
	Direction Direction
	Entry     Entry
}

// Member is an identity's pod address, as it appears in a Delta: per-IP backends expand an
// identity into its members.
type Member struct {
	Identity Identity
	IP       netip.Addr
}

// Delta is what one churn event changed in the compiled State. Backends apply it instead of
// resyncing. Slices hold only real changes (an entry removed and re-added by one event is in
// neither list), sorted (entries by set, then entry), so applying a delta is deterministic.
// RuleSetsAdded are listed before any endpoint refers to them; RuleSetsRemoved after no
// endpoint does, and their entries are listed in EntriesRemoved.
type Delta struct {
	IdentitiesAllocated []Identity
	IdentitiesReleased  []Identity
	MembersAdded        []Member
	MembersRemoved      []Member
	CIDRsAdded          []CIDR
	CIDRsRemoved        []CIDR
	RuleSetsAdded       []RuleSetID
	RuleSetsRemoved     []RuleSetID
	// RuleSetsRenamed are kept sets whose origin changed (their selecting policies,
	// RuleSet.Policies, or the named ports their ingress rules resolve against): a policy
	// event moved all their endpoints together, so the set stayed and only its entries
	// changed (by EntriesAdded and EntriesRemoved, maybe none).
	RuleSetsRenamed []RuleSetID
	EntriesAdded    []RuleSetEntry
	EntriesRemoved  []RuleSetEntry
	// EndpointsAdded and EndpointsChanged hold the endpoints as they are after the event;
	// EndpointsRemoved as they were before it.
	EndpointsAdded   []Endpoint
	EndpointsRemoved []Endpoint
	EndpointsChanged []Endpoint
}

// Empty reports whether the delta changes nothing.
func (d *Delta) Empty() bool {
	return len(d.IdentitiesAllocated)+len(d.IdentitiesReleased)+len(d.MembersAdded)+
		len(d.MembersRemoved)+len(d.CIDRsAdded)+len(d.CIDRsRemoved)+len(d.RuleSetsAdded)+
		len(d.RuleSetsRemoved)+len(d.RuleSetsRenamed)+len(d.EntriesAdded)+len(d.EntriesRemoved)+len(d.EndpointsAdded)+
		len(d.EndpointsRemoved)+len(d.EndpointsChanged) == 0
}

// State is the compiled, backend-neutral enforcement state. It changes only through
// Compiler.Apply; read it through its methods. It is not safe for concurrent use with Apply.
type State struct {
	c *Compiler
}

// Cluster returns the cluster the state was compiled from, as of the last applied event.
func (s *State) Cluster() *Cluster { return s.c.cluster }

// Endpoints returns every endpoint, sorted by ID.
func (s *State) Endpoints() []*Endpoint {
	return sortedByID(s.c.epByID, func(ep *epState) *Endpoint { return &ep.Endpoint },
		func(ep *Endpoint) uint32 { return ep.ID })
}

// sortedByID returns what view gives of every value of m, sorted by id.
func sortedByID[K comparable, V, T any, ID cmp.Ordered](m map[K]V, view func(V) *T, id func(*T) ID) []*T {
	out := make([]*T, 0, len(m))
	for _, v := range m {
		out = append(out, view(v))
	}
	slices.SortFunc(out, func(a, b *T) int { return cmp.Compare(id(a), id(b)) })
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
	return sortedByID(s.c.sets, func(rs *ruleSet) *RuleSet { return &rs.RuleSet },
		func(rs *RuleSet) RuleSetID { return rs.ID })
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
	return sortedByID(s.c.alloc.ids, func(id *identity) *IdentityInfo { return &id.info },
		func(info *IdentityInfo) Identity { return info.ID })
}

// Identity returns an identity's description.
func (s *State) Identity(id Identity) (*IdentityInfo, bool) {
	i, ok := s.c.alloc.ids[id]
	if !ok {
		return nil, false
	}
	return &i.info, true
}

// Members returns the pod IPs that hold a pod identity, sorted.
func (s *State) Members(id Identity) []netip.Addr {
	i, ok := s.c.alloc.ids[id]
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
	out := make([]CIDR, 0, len(s.c.alloc.cidrs))
	for p, id := range s.c.alloc.cidrs {
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
		if s.c.alloc.cidrLens&(1<<bits) == 0 {
			continue
		}
		p, _ := ip.Prefix(bits)
		if id, ok := s.c.alloc.cidrs[p]; ok {
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
