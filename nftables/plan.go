package nftables

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"sigs.k8s.io/knftables"

	"netpolbench/policy"
)

// txb builds one transaction and counts what it writes. For the Fake it is a knftables
// transaction; on the kernel's path (an interface that takes nft input) the input is written
// as the transaction is planned: at 100,000 pods a full sync has 5.8 million elements, and a
// knftables object and a line of text each, merged into batches afterwards, took most of the
// suite's time and memory for the sync.
type txb struct {
	nft knftables.Interface
	tx  *knftables.Transaction // the Fake's path
	in  *input                 // the kernel's path
	st  *Counts
}

func newTxb(cfg Config, full bool) *txb {
	t := &txb{nft: cfg.NFT, st: &Counts{Full: full}}
	if _, ok := cfg.NFT.(textRunner); ok {
		batch := elementBatch
		if cfg.PerElement {
			batch = 1
		}
		t.in = newInput(batch)
	} else {
		t.tx = cfg.NFT.NewTransaction()
	}
	return t
}

func (t *txb) chain(name string, existing bool) {
	if existing {
		t.object(verbFlush, &knftables.Chain{Name: name})
	} else {
		t.object(verbAdd, &knftables.Chain{Name: name})
	}
	t.st.ChainsWritten++
}

func (t *txb) deleteChain(name string) {
	t.object(verbFlush, &knftables.Chain{Name: name})
	t.object(verbDelete, &knftables.Chain{Name: name})
	t.st.ChainsDeleted++
}

func (t *txb) rule(chain string, r ruleSpec) {
	kr := &knftables.Rule{Chain: chain, Rule: r.rule}
	if r.comment != "" {
		kr.Comment = knftables.PtrTo(r.comment)
	}
	t.object(verbAdd, kr)
	t.st.RulesWritten++
}

func (t *txb) createSet(name string, kind setKind) {
	typ, flags := kind.spec()
	t.object(verbAdd, &knftables.Set{Name: name, Type: typ, Flags: flags})
	t.st.SetsCreated++
}

func (t *txb) deleteSet(name string) {
	t.object(verbDelete, &knftables.Set{Name: name})
	t.st.SetsDeleted++
}

func (t *txb) flushSet(name string, had int) {
	t.object(verbFlush, &knftables.Set{Name: name})
	t.st.ElementsDeleted += had
}

func (t *txb) addAddr(set string, ip netip.Addr) {
	t.addrElem(verbAdd, set, ip)
	t.st.ElementsAdded++
}

func (t *txb) delAddr(set string, ip netip.Addr) {
	t.addrElem(verbDelete, set, ip)
	t.st.ElementsDeleted++
}

func (t *txb) addSelf(ip netip.Addr) {
	t.selfElem(verbAdd, ip)
	t.st.ElementsAdded++
}

func (t *txb) delSelf(ip netip.Addr) {
	t.selfElem(verbDelete, ip)
	t.st.ElementsDeleted++
}

func (t *txb) addTarget(set string, tg target) {
	t.targetElem(verbAdd, set, tg)
	t.st.ElementsAdded++
}

func (t *txb) delTarget(set string, tg target) {
	t.targetElem(verbDelete, set, tg)
	t.st.ElementsDeleted++
}

func (t *txb) addRange(set, r string) {
	t.rangeElem(verbAdd, set, r)
	t.st.ElementsAdded++
}

func (t *txb) addVerdict(m string, ip netip.Addr, v string) {
	t.verdictElem(verbAdd, m, ip, v)
	t.st.ElementsAdded++
}

func (t *txb) delVerdict(m string, ip netip.Addr) {
	t.verdictElem(verbDelete, m, ip, "")
	t.st.ElementsDeleted++
}

// fill writes a new set's elements and returns its mirror state.
func (g *gen) fill(t *txb, ss *setSpec) *setState {
	st := &setState{spec: *ss}
	st.spec.rs = nil
	switch ss.kind {
	case kindNets:
		for _, sp := range g.netSpans(ss.ids) {
			st.nets = append(st.nets, addrRange(sp))
		}
		for _, r := range st.nets {
			t.addRange(ss.name, r)
		}
		st.n = len(st.nets)
	case kindNamed:
		st.named = map[netip.Addr][]target{}
		for _, tg := range g.namedTargets(ss.rs, nil) {
			st.named[tg.ip] = append(st.named[tg.ip], tg)
			t.addTarget(ss.name, tg)
			st.n++
		}
	default:
		for _, id := range ss.ids {
			for _, ip := range g.members(id) {
				t.addAddr(ss.name, ip)
				st.n++
			}
		}
	}
	return st
}

// fullPlan writes the whole table in one transaction: the fixed objects and every set and
// chain are added if missing and flushed, then refilled; chains and sets the table holds
// beyond those are flushed and deleted. It returns the mirror of the table after it.
func (b *Backend) fullPlan(s *policy.State) (*txb, *mirror, error) {
	g := newGen(s)
	t := newTxb(b.cfg, true)
	nm := newMirror()
	nm.base = true
	t.object(verbAdd, &knftables.Table{})
	t.object(verbAdd, baseChain())
	t.object(verbFlush, &knftables.Chain{Name: chainForward})
	t.st.ChainsWritten++
	for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
		t.object(verbAdd, &knftables.Map{Name: dispatchMap(dir), Type: "ipv4_addr : verdict"})
		t.object(verbFlush, &knftables.Map{Name: dispatchMap(dir)})
		t.st.ElementsDeleted += len(b.m.dispatch[dir])
	}
	t.object(verbAdd, &knftables.Set{Name: setSelf, Type: "ipv4_addr . ipv4_addr"})
	t.st.SetsCreated += 3
	t.flushSet(setSelf, len(b.m.self))

	// The rule-set chains, and the sets they match against.
	var chains []*chainSpec
	for _, rs := range s.RuleSets() {
		cs := g.chain(rs)
		chains = append(chains, cs)
		nm.chains[ruleSetChain(rs.ID)] = cs
	}
	if t.in != nil {
		// Room for the input's elements (about 16 bytes a set member, 90 for a pod's self and
		// verdict map elements), so that 100 MB of it is not copied over and over as it grows.
		members := 0
		for _, ss := range g.sets {
			if ss.kind == kindPods {
				for _, id := range ss.ids {
					members += len(g.members(id))
				}
			}
		}
		t.in.b.Grow(16*members + 96*s.NumEndpoints())
	}
	for _, name := range sortedKeys(g.sets) {
		ss := g.sets[name]
		if old, ok := b.m.sets[name]; ok {
			t.flushSet(name, old.n)
		} else {
			t.createSet(name, ss.kind)
			if b.staleSet[name] {
				t.object(verbFlush, &knftables.Set{Name: name})
			}
		}
		nm.addSet(g.fill(t, ss))
	}
	for _, cs := range chains {
		name := ruleSetChain(cs.rs)
		_, known := b.m.chains[name]
		t.chain(name, false)
		if known || b.stale[name] {
			t.object(verbFlush, &knftables.Chain{Name: name})
		}
		for _, r := range cs.rules {
			t.rule(name, r)
		}
		for _, sn := range cs.sets {
			nm.sets[sn].users++
		}
	}
	for _, r := range baseRules {
		t.rule(chainForward, ruleSpec{rule: r})
	}
	for _, ep := range s.Endpoints() {
		if ep.Pod == nil {
			continue
		}
		t.addSelf(ep.Pod.IP)
		nm.self[ep.ID] = ep.Pod.IP
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			rs := ep.RuleSet(dir)
			if rs == policy.RuleSetAllowAll {
				continue
			}
			if _, ok := s.RuleSet(rs); !ok {
				return nil, nil, fmt.Errorf("endpoint %d (%s): %s rule set %d missing from the state", ep.ID, ep.Pod.Key(), dir, rs)
			}
			t.addVerdict(dispatchMap(dir), ep.Pod.IP, dispatchVerdict(dir, rs))
			nm.dispatch[dir][ep.ID] = dispatchEntry{ep.Pod.IP, rs}
		}
	}
	// What the table holds beyond the new content goes: the maps no longer jump to stale
	// chains and no chain matches against stale sets once every chain is flushed.
	var staleChains, staleSets []string
	for name := range b.m.chains {
		if nm.chains[name] == nil {
			staleChains = append(staleChains, name)
		}
	}
	for name := range b.stale {
		if nm.chains[name] == nil && b.m.chains[name] == nil {
			staleChains = append(staleChains, name)
		}
	}
	for name := range b.m.sets {
		if nm.sets[name] == nil {
			staleSets = append(staleSets, name)
		}
	}
	for name := range b.staleSet {
		if nm.sets[name] == nil && b.m.sets[name] == nil {
			staleSets = append(staleSets, name)
		}
	}
	sort.Strings(staleChains)
	sort.Strings(staleSets)
	for _, name := range staleChains {
		t.deleteChain(name)
	}
	for _, name := range staleSets {
		t.deleteSet(name)
		if st := b.m.sets[name]; st != nil {
			t.st.ElementsDeleted += st.n
		}
	}
	return t, nm, nil
}

func sameRules(a, b []ruleSpec) bool { return slices.Equal(a, b) }

// partialPlan writes only what d changed, in one transaction, and returns the function that
// brings the mirror in step once the transaction succeeded.
func (b *Backend) partialPlan(s *policy.State, d *policy.Delta) (*txb, func(), error) {
	g := newGen(s)
	t := newTxb(b.cfg, false)
	m := b.m
	removed := map[policy.RuleSetID]bool{}
	for _, id := range d.RuleSetsRemoved {
		removed[id] = true
	}
	rewrite := map[policy.RuleSetID]bool{}
	for _, id := range d.RuleSetsAdded {
		rewrite[id] = true
	}
	for _, id := range d.RuleSetsRenamed { // the drop rule's comment names the policies
		rewrite[id] = true
	}
	for _, e := range d.EntriesAdded {
		rewrite[e.Set] = true
	}
	for _, e := range d.EntriesRemoved {
		rewrite[e.Set] = true
	}
	for id := range removed {
		delete(rewrite, id)
	}
	cidrChanged := len(d.CIDRsAdded)+len(d.CIDRsRemoved) > 0

	// New chains and the change in how many chains use each set.
	users := map[string]int{}
	newChains := map[string]*chainSpec{}
	var writeChains []*chainSpec
	rewriteIDs := make([]policy.RuleSetID, 0, len(rewrite))
	for id := range rewrite {
		rewriteIDs = append(rewriteIDs, id)
	}
	slices.Sort(rewriteIDs)
	for _, id := range rewriteIDs {
		rs, ok := s.RuleSet(id)
		if !ok {
			return nil, nil, fmt.Errorf("rule set %d changed but is missing from the state", id)
		}
		name := ruleSetChain(id)
		cs := g.chain(rs)
		newChains[name] = cs
		old := m.chains[name]
		if old != nil {
			for _, sn := range old.sets {
				users[sn]--
			}
		}
		for _, sn := range cs.sets {
			users[sn]++
		}
		if old == nil || !sameRules(old.rules, cs.rules) {
			writeChains = append(writeChains, cs)
		}
	}
	var removeChains []string
	for _, id := range d.RuleSetsRemoved {
		name := ruleSetChain(id)
		if old := m.chains[name]; old != nil {
			for _, sn := range old.sets {
				users[sn]--
			}
			removeChains = append(removeChains, name)
		}
	}
	slices.Sort(removeChains)

	// 1. New sets, filled from the state after the event.
	created := map[string]*setState{}
	for _, name := range sortedKeys(g.sets) {
		if _, ok := m.sets[name]; ok || users[name] <= 0 {
			continue
		}
		ss := g.sets[name]
		t.createSet(name, ss.kind)
		created[name] = g.fill(t, ss)
	}
	dropSets := map[string]bool{}
	for name, n := range users {
		if st := m.sets[name]; st != nil && st.users+n <= 0 {
			dropSets[name] = true
		}
	}

	// 2. Rule-set chains: new ones added, changed ones flushed and rewritten.
	for _, cs := range writeChains {
		name := ruleSetChain(cs.rs)
		t.chain(name, m.chains[name] != nil)
		for _, r := range cs.rules {
			t.rule(name, r)
		}
	}

	// 3. Endpoints: verdict map and self elements.
	type dispatchChange struct {
		dir   policy.Direction
		id    uint32
		entry dispatchEntry
		del   bool
	}
	var dispatchDels, dispatchAdds []dispatchChange
	type selfChange struct {
		id  uint32
		ip  netip.Addr
		del bool
	}
	var selfDels, selfAdds []selfChange
	touched := map[netip.Addr]bool{}
	for _, ep := range d.EndpointsRemoved {
		if ip, ok := m.self[ep.ID]; ok {
			selfDels = append(selfDels, selfChange{ep.ID, ip, true})
			touched[ip] = true
		}
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			if cur, ok := m.dispatch[dir][ep.ID]; ok {
				dispatchDels = append(dispatchDels, dispatchChange{dir, ep.ID, cur, true})
			}
		}
	}
	for _, ep := range d.Touched(s) {
		if ep.Pod == nil {
			continue
		}
		ip := ep.Pod.IP
		touched[ip] = true
		if old, ok := m.self[ep.ID]; !ok || old != ip {
			if ok {
				selfDels = append(selfDels, selfChange{ep.ID, old, true})
				touched[old] = true
			}
			selfAdds = append(selfAdds, selfChange{ep.ID, ip, false})
		}
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			want := ep.RuleSet(dir)
			cur, has := m.dispatch[dir][ep.ID]
			if has && cur.ip == ip && cur.rs == want {
				continue
			}
			if want != policy.RuleSetAllowAll {
				if _, ok := s.RuleSet(want); !ok {
					return nil, nil, fmt.Errorf("endpoint %d: %s rule set %d missing from the state", ep.ID, dir, want)
				}
			}
			if has {
				dispatchDels = append(dispatchDels, dispatchChange{dir, ep.ID, cur, true})
			}
			if want != policy.RuleSetAllowAll {
				dispatchAdds = append(dispatchAdds, dispatchChange{dir, ep.ID, dispatchEntry{ip, want}, false})
			}
		}
	}
	for _, c := range dispatchDels {
		t.delVerdict(dispatchMap(c.dir), c.entry.ip)
	}
	for _, c := range selfDels {
		t.delSelf(c.ip)
	}

	// 4. Peer sets that stay: pods sets follow their identities' members (removals first: a
	// relabelled pod leaves its old identity's sets before it joins the new one's), nets sets
	// are refilled when the ipBlock prefixes changed, named-port sets follow their pods.
	memberDelta := map[string]int{}
	editable := func(name string) bool { return created[name] == nil && !dropSets[name] }
	for _, mb := range d.MembersRemoved {
		touched[mb.IP] = true
		for _, name := range sortedKeys(m.idSets[mb.Identity]) {
			if editable(name) {
				t.delAddr(name, mb.IP)
				memberDelta[name]--
			}
		}
	}
	for _, mb := range d.MembersAdded {
		touched[mb.IP] = true
		for _, name := range sortedKeys(m.idSets[mb.Identity]) {
			if editable(name) {
				t.addAddr(name, mb.IP)
				memberDelta[name]++
			}
		}
	}
	netsNew := map[string][]string{}
	if cidrChanged {
		for _, name := range sortedKeys(m.sets) {
			st := m.sets[name]
			if st.spec.kind != kindNets || !editable(name) {
				continue
			}
			var want []string
			for _, sp := range g.netSpans(st.spec.ids) {
				want = append(want, addrRange(sp))
			}
			if slices.Equal(want, st.nets) {
				continue
			}
			t.flushSet(name, st.n)
			for _, r := range want {
				t.addRange(name, r)
			}
			netsNew[name] = want
		}
	}
	namedNew := map[string]map[netip.Addr][]target{}
	touchedIPs := make([]netip.Addr, 0, len(touched))
	for ip := range touched {
		touchedIPs = append(touchedIPs, ip)
	}
	slices.SortFunc(touchedIPs, netip.Addr.Compare)
	for _, name := range sortedKeys(m.sets) {
		st := m.sets[name]
		if st.spec.kind != kindNamed || !editable(name) {
			continue
		}
		full := cidrChanged || newChains[ruleSetChain(st.spec.rsID)] != nil
		if !full && len(touchedIPs) == 0 {
			continue
		}
		rs, ok := s.RuleSet(st.spec.rsID)
		if !ok {
			return nil, nil, fmt.Errorf("named-port set %s: rule set %d missing from the state", name, st.spec.rsID)
		}
		var want []target
		if full {
			want = g.namedTargets(rs, nil)
		} else {
			want = g.namedTargets(rs, touchedIPs)
		}
		byIP := map[netip.Addr][]target{}
		for _, tg := range want {
			byIP[tg.ip] = append(byIP[tg.ip], tg)
		}
		scope := touchedIPs
		if full {
			scope = nil
			for ip := range st.named {
				scope = append(scope, ip)
			}
			for ip := range byIP {
				if _, ok := st.named[ip]; !ok {
					scope = append(scope, ip)
				}
			}
			slices.SortFunc(scope, netip.Addr.Compare)
		}
		changed := map[netip.Addr][]target{}
		for _, ip := range scope {
			have, next := st.named[ip], byIP[ip]
			if slices.Equal(have, next) {
				continue
			}
			for _, tg := range have {
				if !slices.Contains(next, tg) {
					t.delTarget(name, tg)
				}
			}
			for _, tg := range next {
				if !slices.Contains(have, tg) {
					t.addTarget(name, tg)
				}
			}
			changed[ip] = next
		}
		if len(changed) > 0 {
			namedNew[name] = changed
		}
	}

	// 5. New verdict map and self elements, now that their chains exist.
	for _, c := range selfAdds {
		t.addSelf(c.ip)
	}
	for _, c := range dispatchAdds {
		t.addVerdict(dispatchMap(c.dir), c.entry.ip, dispatchVerdict(c.dir, c.entry.rs))
	}

	// 6. Chains of removed rule sets, then sets no chain uses any more.
	for _, name := range removeChains {
		t.deleteChain(name)
	}
	drop := make([]string, 0, len(dropSets))
	for name := range dropSets {
		drop = append(drop, name)
	}
	sort.Strings(drop)
	for _, name := range drop {
		t.deleteSet(name)
		t.st.ElementsDeleted += m.sets[name].n
	}

	commit := func() {
		for _, name := range removeChains {
			delete(m.chains, name)
		}
		for name, cs := range newChains {
			m.chains[name] = cs
		}
		for _, st := range created {
			m.addSet(st)
		}
		for name, n := range users {
			if st := m.sets[name]; st != nil && created[name] == nil {
				st.users += n
			}
		}
		for name := range created {
			m.sets[name].users = max(users[name], 0)
		}
		for name, n := range memberDelta {
			m.sets[name].n += n
		}
		for name, nets := range netsNew {
			m.sets[name].nets, m.sets[name].n = nets, len(nets)
		}
		for name, changed := range namedNew {
			st := m.sets[name]
			for ip, next := range changed {
				st.n += len(next) - len(st.named[ip])
				if len(next) == 0 {
					delete(st.named, ip)
				} else {
					st.named[ip] = next
				}
			}
		}
		for _, name := range drop {
			m.deleteSet(name)
		}
		for _, c := range dispatchDels {
			delete(m.dispatch[c.dir], c.id)
		}
		for _, c := range dispatchAdds {
			m.dispatch[c.dir][c.id] = c.entry
		}
		for _, c := range selfDels {
			delete(m.self, c.id)
		}
		for _, c := range selfAdds {
			m.self[c.id] = c.ip
		}
	}
	return t, commit, nil
}
