package policy

import (
	"cmp"
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
