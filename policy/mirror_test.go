package policy

import (
	"fmt"
	"slices"
)

// mirror is what a backend holds if it starts from a full sync and then applies only deltas.
type mirror struct {
	sets      map[RuleSetID]map[Entry]bool
	endpoints map[uint32]Endpoint
	members   map[Member]bool
	cidrs     map[CIDR]bool
	ids       map[Identity]bool
}

func newMirror(s *State) *mirror {
	m := &mirror{sets: map[RuleSetID]map[Entry]bool{}, endpoints: map[uint32]Endpoint{},
		members: map[Member]bool{}, cidrs: map[CIDR]bool{}, ids: map[Identity]bool{}}
	for _, rs := range s.RuleSets() {
		m.sets[rs.ID] = map[Entry]bool{}
		for _, e := range rs.Entries {
			m.sets[rs.ID][e] = true
		}
	}
	for _, ep := range s.Endpoints() {
		m.endpoints[ep.ID] = *ep
	}
	for _, id := range s.Identities() {
		m.ids[id.ID] = true
		for _, ip := range s.Members(id.ID) {
			m.members[Member{id.ID, ip}] = true
		}
	}
	for _, c := range s.CIDRs() {
		m.cidrs[c] = true
	}
	return m
}

// apply applies a delta in the order the Delta documentation gives, failing on anything a
// backend could not do (adding what exists, removing what does not).
func (m *mirror) apply(d *Delta) error {
	for _, id := range d.IdentitiesAllocated {
		if m.ids[id] {
			return fmt.Errorf("identity %d allocated twice", id)
		}
		m.ids[id] = true
	}
	for _, c := range d.CIDRsAdded {
		if m.cidrs[c] {
			return fmt.Errorf("cidr %v added twice", c)
		}
		m.cidrs[c] = true
	}
	for _, id := range d.RuleSetsAdded {
		if m.sets[id] != nil {
			return fmt.Errorf("rule set %d added twice", id)
		}
		m.sets[id] = map[Entry]bool{}
	}
	for _, e := range d.EntriesAdded {
		if m.sets[e.Set] == nil {
			return fmt.Errorf("entry %v added to missing set %d", e.Entry, e.Set)
		}
		if m.sets[e.Set][e.Entry] {
			return fmt.Errorf("entry %v added twice to set %d", e.Entry, e.Set)
		}
		m.sets[e.Set][e.Entry] = true
	}
	for _, mb := range d.MembersAdded {
		if m.members[mb] {
			return fmt.Errorf("member %v added twice", mb)
		}
		m.members[mb] = true
	}
	for _, ep := range d.EndpointsAdded {
		if _, ok := m.endpoints[ep.ID]; ok {
			return fmt.Errorf("endpoint %d added twice", ep.ID)
		}
		m.endpoints[ep.ID] = ep
	}
	for _, ep := range d.EndpointsChanged {
		if _, ok := m.endpoints[ep.ID]; !ok {
			return fmt.Errorf("missing endpoint %d changed", ep.ID)
		}
		m.endpoints[ep.ID] = ep
	}
	for _, ep := range d.EndpointsRemoved {
		if _, ok := m.endpoints[ep.ID]; !ok {
			return fmt.Errorf("missing endpoint %d removed", ep.ID)
		}
		delete(m.endpoints, ep.ID)
	}
	for _, mb := range d.MembersRemoved {
		if !m.members[mb] {
			return fmt.Errorf("missing member %v removed", mb)
		}
		delete(m.members, mb)
	}
	for _, e := range d.EntriesRemoved {
		if !m.sets[e.Set][e.Entry] {
			return fmt.Errorf("missing entry %v removed from set %d", e.Entry, e.Set)
		}
		delete(m.sets[e.Set], e.Entry)
	}
	for _, id := range d.RuleSetsRemoved {
		if m.sets[id] == nil {
			return fmt.Errorf("missing rule set %d removed", id)
		}
		if len(m.sets[id]) != 0 {
			return fmt.Errorf("rule set %d removed with %d entries left", id, len(m.sets[id]))
		}
		delete(m.sets, id)
	}
	for _, c := range d.CIDRsRemoved {
		if !m.cidrs[c] {
			return fmt.Errorf("missing cidr %v removed", c)
		}
		delete(m.cidrs, c)
	}
	for _, id := range d.IdentitiesReleased {
		if !m.ids[id] {
			return fmt.Errorf("missing identity %d released", id)
		}
		delete(m.ids, id)
	}
	return nil
}

// equal compares the mirror with a fresh mirror of the state.
func (m *mirror) equal(s *State) error {
	want := newMirror(s)
	if len(m.sets) != len(want.sets) {
		return fmt.Errorf("%d rule sets, want %d", len(m.sets), len(want.sets))
	}
	for id, es := range want.sets {
		got := m.sets[id]
		if len(got) != len(es) {
			return fmt.Errorf("rule set %d: %d entries, want %d", id, len(got), len(es))
		}
		for e := range es {
			if !got[e] {
				return fmt.Errorf("rule set %d: entry %v missing", id, e)
			}
		}
	}
	if len(m.endpoints) != len(want.endpoints) {
		return fmt.Errorf("%d endpoints, want %d", len(m.endpoints), len(want.endpoints))
	}
	for id, ep := range want.endpoints {
		got := m.endpoints[id]
		if got.Identity != ep.Identity || got.Ingress != ep.Ingress || got.Egress != ep.Egress || got.Pod.IP != ep.Pod.IP {
			return fmt.Errorf("endpoint %d: %+v, want %+v", id, got, ep)
		}
	}
	for _, pair := range []struct {
		name      string
		got, want int
	}{{"members", len(m.members), len(want.members)}, {"cidrs", len(m.cidrs), len(want.cidrs)}, {"identities", len(m.ids), len(want.ids)}} {
		if pair.got != pair.want {
			return fmt.Errorf("%d %s, want %d", pair.got, pair.name, pair.want)
		}
	}
	for mb := range want.members {
		if !m.members[mb] {
			return fmt.Errorf("member %v missing", mb)
		}
	}
	for c := range want.cidrs {
		if !m.cidrs[c] {
			return fmt.Errorf("cidr %v missing", c)
		}
	}
	return nil
}

// checkBookkeeping checks what the compiler keeps beside the state: every endpoint is in the
// group of its identity for its port signature, the endpoints of a group share its rule sets,
// every rule set's reference count is the number of endpoints using it, and every policy
// lists the rule sets that name it.
func checkBookkeeping(c *Compiler) error {
	refs := map[*ruleSet]int{}
	grouped := 0
	for _, id := range c.alloc.ids {
		for sig, g := range id.groups {
			if g.sig != sig || len(g.eps) == 0 {
				return fmt.Errorf("identity %d: group %q filed under %q with %d endpoints", id.info.ID, g.sig, sig, len(g.eps))
			}
			for i, ep := range g.eps {
				if ep.group != g || ep.gi != i || ep.id != id || ep.sets != g.sets || ep.sig != sig {
					return fmt.Errorf("endpoint %d: in group %q of identity %d at %d with sets %v, but has sets %v sig %q identity %d index %d",
						ep.ID, sig, id.info.ID, i, g.sets, ep.sets, ep.sig, ep.Identity, ep.gi)
				}
				grouped++
			}
		}
	}
	if grouped != len(c.epByID) {
		return fmt.Errorf("%d endpoints in groups, %d endpoints", grouped, len(c.epByID))
	}
	for _, ep := range c.epByID {
		for _, s := range ep.sets {
			if s != nil {
				refs[s]++
			}
		}
	}
	for _, s := range c.sets {
		if refs[s] != s.refs {
			return fmt.Errorf("rule set %d: %d references counted, %d endpoints use it", s.ID, s.refs, refs[s])
		}
		delete(refs, s)
	}
	for s := range refs {
		return fmt.Errorf("endpoints use rule set %d, which the compiler no longer holds", s.ID)
	}
	listed := 0
	for key, ps := range c.setsByPolicy {
		for dir, l := range ps {
			for _, s := range l {
				listed++
				if c.sets[s.ID] != s || s.Direction != Direction(dir) || !slices.Contains(s.Policies, key) {
					return fmt.Errorf("policy %s lists rule set %d (%s) in direction %s wrongly", key, s.ID, s.Direction, Direction(dir))
				}
			}
		}
	}
	want := 0
	for _, s := range c.sets {
		want += len(s.Policies)
	}
	if listed != want {
		return fmt.Errorf("policies list %d (policy, rule set) pairs, rule sets name %d", listed, want)
	}
	return nil
}
