package policy

import (
	"cmp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// ruleSet is a RuleSet with what the compiler keeps to maintain it. Endpoints with the same
// origin (see origin) share the set and refs counts them; the set goes when the last one
// leaves, and is renamed in place when all of them move to one origin no set has yet. counts
// holds, per entry, how many (policy, rule, port) contributions give it; Entries lists the
// entries whose count is not zero, sorted.
type ruleSet struct {
	RuleSet
	origin   string
	ports    []ContainerPort
	policies []*compiledPolicy
	refs     int
	counts   countTable
	// full means the set is new: Entries must be built from counts. Otherwise touched lists
	// the entries whose count the current event changed, and Entries is as of its start.
	full    bool
	touched []touch
	changed uint32 // the compiler's epoch+1 when it was last listed for finish
}

// origin names the rule set an endpoint gets in a direction: the selecting policies and, when
// an ingress rule of one of them uses a named port, the pod's named ports (they resolve there).
func origin(dir Direction, sel []*compiledPolicy, sig string) string {
	if len(sel) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(dir.String())
	for _, cp := range sel {
		b.WriteByte('|')
		b.WriteString(cp.key)
	}
	if namedIngress(dir, sel) {
		b.WriteString("|ports")
		if sig != "" {
			b.WriteByte(',')
			b.WriteString(sig)
		}
	}
	return b.String()
}

// portSignature lists what a pod's named ports resolve to, sorted and comma-joined. A later
// port with a name and protocol already declared (allowed across containers) never resolves,
// since Pod.NamedPort takes the first, so it is left out: two pods declaring the same names in
// different orders resolve them differently and must not share a rule set.
func portSignature(p *Pod) string {
	var out []string
	for i, cp := range p.Ports {
		if cp.Name == "" || slices.ContainsFunc(p.Ports[:i], func(q ContainerPort) bool {
			return q.Name == cp.Name && q.Protocol == cp.Protocol
		}) {
			continue
		}
		out = append(out, cp.Name+"/"+strconv.Itoa(int(cp.Protocol))+"/"+strconv.Itoa(int(cp.Port)))
	}
	if len(out) > 1 {
		sort.Strings(out)
	}
	return strings.Join(out, ",")
}

// namedIngress says whether the origin of a set of selecting policies depends on the pod's
// named ports.
func namedIngress(dir Direction, sel []*compiledPolicy) bool {
	if dir != Ingress {
		return false
	}
	for _, cp := range sel {
		if cp.hasNamedIngress {
			return true
		}
	}
	return false
}

func originOf(s *ruleSet) string {
	if s == nil {
		return ""
	}
	return s.origin
}

func setID(s *ruleSet) RuleSetID {
	if s == nil {
		return RuleSetAllowAll
	}
	return s.ID
}

// acquireOrigin is acquireSet with the origin already built.
func (c *Compiler) acquireOrigin(dir Direction, sel []*compiledPolicy, pod *Pod, o string) *ruleSet {
	if o == "" {
		return nil
	}
	if s, ok := c.setByOrigin[o]; ok {
		s.refs++
		return s
	}
	s := &ruleSet{
		RuleSet:  RuleSet{ID: c.nextSet, Direction: dir},
		counts:   countTable{seed: uint32(c.nextSet)},
		origin:   o,
		ports:    slices.Clone(pod.Ports),
		policies: slices.Clone(sel),
		refs:     1,
		full:     true,
	}
	c.markChanged(s)
	c.nextSet++
	for _, cp := range sel {
		s.Policies = append(s.Policies, cp.key)
		c.addPolicySet(cp.key, s)
	}
	c.sets[s.ID] = s
	c.setByOrigin[o] = s
	if c.d != nil {
		c.d.sets[s.ID]++
	}
	for _, cp := range sel { // a new set is full: its entries are not tracked one by one
		c.contribute(s, cp, 1)
	}
	return s
}

// markChanged lists a set for finish, once per event.
func (c *Compiler) markChanged(s *ruleSet) {
	if s.changed != c.epoch+1 {
		s.changed = c.epoch + 1
		c.changed = append(c.changed, s)
	}
}

// releaseSet drops n references on a set.
func (c *Compiler) releaseSet(s *ruleSet, n int) {
	if s == nil {
		return
	}
	s.refs -= n
	if s.refs > 0 {
		return
	}
	c.markChanged(s) // its entries leave with it
	for _, cp := range s.policies {
		c.dropPolicySet(cp.key, s)
	}
	delete(c.sets, s.ID)
	delete(c.setByOrigin, s.origin)
	c.d.sets[s.ID]--
}

// addPolicySet notes that policy key selects the endpoints of set s.
func (c *Compiler) addPolicySet(key string, s *ruleSet) {
	ps := c.setsByPolicy[key]
	if ps == nil {
		ps = new([2][]*ruleSet)
		c.setsByPolicy[key] = ps
	}
	ps[s.Direction] = append(ps[s.Direction], s)
}

// dropPolicySet undoes addPolicySet.
func (c *Compiler) dropPolicySet(key string, s *ruleSet) {
	ps := c.setsByPolicy[key]
	l := ps[s.Direction]
	i := slices.Index(l, s)
	l[i] = l[len(l)-1]
	l[len(l)-1] = nil
	ps[s.Direction] = l[:len(l)-1]
	if len(ps[Ingress])+len(ps[Egress]) == 0 {
		delete(c.setsByPolicy, key)
	}
}

// computeSel returns the policies that select an identity, per direction, sorted by key.
func (c *Compiler) computeSel(id *identity) [2][]*compiledPolicy {
	var sel [2][]*compiledPolicy
	set := labels.Set(id.info.PodLabels)
	for _, cp := range c.cluster.byNS[id.info.Namespace] {
		if !cp.subject.Matches(set) {
			continue
		}
		for dir := range 2 {
			if cp.applies[dir] {
				sel[dir] = append(sel[dir], cp)
			}
		}
	}
	for dir := range 2 {
		slices.SortFunc(sel[dir], func(a, b *compiledPolicy) int { return strings.Compare(a.key, b.key) })
	}
	return sel
}

// reselect takes policy gone out of, and puts policy came into, the selecting policies of the
// identities of a namespace it selects (either may be nil), and brings the rule sets of their
// endpoints up to date. A rule set whose endpoints all move to one new origin that
// no set has yet is renamed in place: only the entries of the policies that joined or left
// it change, and its endpoints keep their rule set id. A policy event typically moves whole
// rule sets (the endpoints of a set share their selecting policies), so its delta holds the
// policy's own entries instead of a copy of every entry of every set it touches.
func (c *Compiler) reselect(ns string, gone, came *compiledPolicy) {
	var moves []*groupMove
	for id := range c.alloc.byNS[ns] {
		sel, changed := reselectOne(id, gone, came)
		if !changed[Ingress] && !changed[Egress] {
			continue
		}
		id.sel = sel
		// A direction whose policies did not change keeps its set. Without a named ingress
		// port every group of the identity has the same origin: build it once.
		var shared [2]string
		var perSig [2]bool
		for dir := range 2 {
			if changed[dir] {
				perSig[dir] = namedIngress(Direction(dir), sel[dir])
				if !perSig[dir] {
					shared[dir] = origin(Direction(dir), sel[dir], "")
				}
			}
		}
		for _, g := range id.groups {
			m := &groupMove{id: id, g: g, to: shared}
			for dir := range 2 {
				if !changed[dir] {
					continue
				}
				if perSig[dir] {
					m.to[dir] = origin(Direction(dir), sel[dir], g.sig)
				}
				m.move[dir] = originOf(g.sets[dir]) != m.to[dir]
			}
			if m.move[Ingress] || m.move[Egress] {
				moves = append(moves, m)
			}
		}
	}
	if len(moves) == 0 {
		return
	}
	// Which sets see all their endpoints leave for one origin?
	type plan struct {
		to    string
		n     int
		whole bool
		first *groupMove
	}
	plans := map[*ruleSet]*plan{}
	var order []*ruleSet
	for _, m := range moves {
		for dir := range 2 {
			s, to := m.g.sets[dir], m.to[dir]
			if s == nil || !m.move[dir] {
				continue
			}
			p := plans[s]
			if p == nil {
				p = &plan{to: to, whole: to != "", first: m}
				plans[s] = p
				order = append(order, s)
			} else if p.to != to {
				p.whole = false
			}
			p.n += len(m.g.eps)
		}
	}
	slices.SortFunc(order, func(a, b *ruleSet) int { return cmp.Compare(a.ID, b.ID) })
	for _, s := range order {
		p := plans[s]
		if _, taken := c.setByOrigin[p.to]; !p.whole || p.n != s.refs || taken {
			continue
		}
		c.renameSet(s, p.to, p.first.id.sel[s.Direction], p.first.g.eps[0].Pod)
	}
	// The rest move group by group, in the order of their first endpoint so new rule set ids
	// are deterministic.
	moves = slices.DeleteFunc(moves, func(m *groupMove) bool {
		for dir := range 2 {
			m.move[dir] = m.move[dir] && originOf(m.g.sets[dir]) != m.to[dir]
		}
		if !m.move[Ingress] && !m.move[Egress] {
			return true // renamed
		}
		m.first = m.g.eps[0].ID
		for _, ep := range m.g.eps[1:] {
			m.first = min(m.first, ep.ID)
		}
		return false
	})
	slices.SortFunc(moves, func(a, b *groupMove) int { return cmp.Compare(a.first, b.first) })
	// Origins hold every selecting policy's key: building and hashing one per group adds up,
	// so the sets acquired here are kept by origin.
	acquired := map[string]*ruleSet{}
	for _, m := range moves {
		g, n := m.g, len(m.g.eps)
		old, sets := g.sets, g.sets
		for dir := range 2 {
			if !m.move[dir] {
				continue
			}
			s, ok := acquired[m.to[dir]]
			switch {
			case !ok:
				s = c.acquireOrigin(Direction(dir), m.id.sel[dir], g.eps[0].Pod, m.to[dir])
				acquired[m.to[dir]] = s
				if s != nil {
					s.refs += n - 1
				}
			case s != nil:
				s.refs += n
			}
			sets[dir] = s
		}
		for _, ep := range g.eps {
			c.d.touch(ep, false)
			ep.sets = sets
			ep.Ingress, ep.Egress = setID(sets[Ingress]), setID(sets[Egress])
		}
		for dir := range 2 {
			if m.move[dir] {
				c.releaseSet(old[dir], n)
			}
		}
		g.sets = sets
	}
}

// groupMove is where reselect sends a group of an identity's endpoints: to the origin to in
// the directions move marks.
type groupMove struct {
	id    *identity
	g     *epGroup
	to    [2]string
	move  [2]bool
	first uint32 // the group's lowest endpoint id
}

// reselectOne returns an identity's selecting policies without gone and with came when came
// selects it, and in which directions they changed.
func reselectOne(id *identity, gone, came *compiledPolicy) ([2][]*compiledPolicy, [2]bool) {
	sel, changed := id.sel, [2]bool{}
	in := came != nil && came.subject.Matches(labels.Set(id.info.PodLabels))
	for dir := range 2 {
		i := slices.Index(sel[dir], gone)
		add := in && came.applies[dir]
		if gone == nil || i < 0 {
			if !add {
				continue
			}
		}
		s := slices.Clone(sel[dir])
		if gone != nil && i >= 0 {
			s = slices.Delete(s, i, i+1)
		}
		if add {
			j, _ := slices.BinarySearchFunc(s, came.key, func(cp *compiledPolicy, key string) int { return strings.Compare(cp.key, key) })
			s = slices.Insert(s, j, came)
		}
		sel[dir], changed[dir] = s, true
	}
	return sel, changed
}

// renameSet gives a rule set a new origin and selecting policies, and changes its entries by
// what the policies that left and joined contribute. pod is one of its endpoints' pods, whose
// named ports the new origin resolves (every endpoint of the set has the same). When the named
// ports that ingress rules resolve against change, the kept policies that use them are taken
// back with the old ports and contributed again with the new.
func (c *Compiler) renameSet(s *ruleSet, to string, sel []*compiledPolicy, pod *Pod) {
	keep := make(map[*compiledPolicy]bool, len(sel))
	for _, cp := range sel {
		keep[cp] = true
	}
	had := make(map[*compiledPolicy]bool, len(s.policies))
	repo := namedIngress(s.Direction, sel) &&
		portSignature(pod) != portSignature(&Pod{Ports: s.ports})
	var redo []*compiledPolicy
	for _, cp := range s.policies {
		had[cp] = true
		switch {
		case !keep[cp]:
			c.contribute(s, cp, -1)
			c.dropPolicySet(cp.key, s)
		case repo && cp.hasNamedIngress:
			c.contribute(s, cp, -1)
			redo = append(redo, cp)
		}
	}
	if repo {
		s.ports = slices.Clone(pod.Ports)
	}
	for _, cp := range redo {
		c.contribute(s, cp, 1)
	}
	for _, cp := range sel {
		if had[cp] {
			continue
		}
		c.contribute(s, cp, 1)
		c.addPolicySet(cp.key, s)
	}
	c.d.renamed[s.ID] = true
	delete(c.setByOrigin, s.origin)
	s.origin = to
	c.setByOrigin[to] = s
	s.policies = slices.Clone(sel)
	s.Policies = s.Policies[:0]
	for _, cp := range sel {
		s.Policies = append(s.Policies, cp.key)
	}
}
