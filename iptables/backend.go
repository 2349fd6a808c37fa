package iptables

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"netpolbench/internal/needs"
	"netpolbench/policy"
)

// ApplyPath is how rules reach the kernel.
type ApplyPath string

const (
	// ApplyRestore builds each sync in a buffer and applies it with one iptables-restore
	// --noflush (kube-proxy's way).
	ApplyRestore ApplyPath = "restore"
	// ApplyPerRule runs one iptables command per rule through coreos/go-iptables: the naive
	// baseline. A failure leaves a partly applied sync behind (the next call is a full sync).
	// Set members still go through ipset restore: only the rules are applied one by one.
	ApplyPerRule ApplyPath = "per-rule"
)

// Config configures a Backend.
type Config struct {
	// Variant is iptables (per-IP rules) or ipset. Required.
	Variant Variant
	// Mode is the binary flavour, nft (default) or legacy.
	Mode Mode
	// Apply is restore (default) or per-rule.
	Apply ApplyPath
	// Runner runs the binaries where the rules live, normally a NetnsRunner for the node
	// namespace, or a Fake. Required.
	Runner Runner
	// NoPartial makes every Update a full sync.
	NoPartial bool
	// MaxRules caps the rules one sync may write (0: no cap). A sync over the cap is counted
	// exactly but not applied, and fails with ErrCapped.
	MaxRules int
	// TimeLimit caps the per-rule path (0: no cap): it stops issuing commands after this long
	// and fails with ErrCapped, leaving what it applied so far (the next sync is full).
	TimeLimit time.Duration
}

// Needs is what a Backend in mode m needs from the machine when it applies rules in a
// namespace: root, the mode's iptables binaries and ipset (every variant lists the sets a
// previous run may have left).
func Needs(m Mode) []needs.Need {
	if m == "" {
		m = ModeNFT
	}
	return []needs.Need{needs.Root,
		needs.Tool(m.Binary("restore"), "iptables"), needs.Tool(m.Binary("save"), "iptables"),
		needs.Tool(m.Binary(""), "iptables"), needs.Tool("ipset", "ipset")}
}

// ErrCapped is returned when a sync exceeds Config.MaxRules or Config.TimeLimit; the sync's
// Counts then have Capped set and the exact or partial counts.
var ErrCapped = errors.New("sync capped")

// Backend enforces a policy.State with iptables rules (and ipsets) and implements
// policy.Backend.
type Backend struct {
	cfg  Config
	exec ruleExec

	discovered bool
	jump       bool
	// chains maps each NPB- chain the kernel holds to its rule count.
	chains map[string]int
	// sets maps each npb- set to its member count; rsSets the sets of each rule set.
	sets   map[string]int
	rsSets map[policy.RuleSetID][]string
	// setIDs holds the identity list of each shared hash:ip set.
	setIDs   map[string][]policy.Identity
	dispatch [2]map[uint32]netip.Addr
	synced   bool
	needFull bool
	tmpSeq   int
	// mutate, when set by a test, rewrites each restore payload before it is sent.
	mutate func([]byte) []byte
}

var _ policy.Backend = (*Backend)(nil)

// New returns a Backend. Nothing is applied until Sync.
func New(cfg Config) (*Backend, error) {
	if _, err := ParseVariant(string(cfg.Variant)); err != nil {
		return nil, err
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeNFT
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	if cfg.Apply == "" {
		cfg.Apply = ApplyRestore
	}
	if cfg.Runner == nil {
		return nil, errors.New("new iptables backend: no runner (want a NetnsRunner or a Fake)")
	}
	if cfg.MaxRules < 0 || cfg.TimeLimit < 0 {
		return nil, errors.New("new iptables backend: MaxRules and TimeLimit must be >= 0")
	}
	b := &Backend{cfg: cfg}
	switch cfg.Apply {
	case ApplyRestore:
	case ApplyPerRule:
		x, err := newRuleExec(cfg.Runner, cfg.Mode)
		if err != nil {
			return nil, err
		}
		b.exec = x
	default:
		return nil, fmt.Errorf("unknown apply path %q (want restore or per-rule)", cfg.Apply)
	}
	b.reset()
	return b, nil
}

// forget drops the backend's view of the kernel after a failure: the next sync is full and
// reads the chains and sets back first (discover).
func (b *Backend) forget() {
	b.needFull, b.discovered = true, false
	b.jump = false
	b.reset()
}

func (b *Backend) reset() {
	b.chains = map[string]int{}
	b.sets = map[string]int{}
	b.rsSets = map[policy.RuleSetID][]string{}
	b.setIDs = map[string][]policy.Identity{}
	b.dispatch = [2]map[uint32]netip.Addr{{}, {}}
}

// Name is the variant's name.
func (b *Backend) Name() string { return string(b.cfg.Variant) }

// Config returns the backend's configuration.
func (b *Backend) Config() Config { return b.cfg }

// Rules returns the number of rules the backend holds in the kernel (all NPB- chains plus the
// jump from FORWARD).
func (b *Backend) Rules() int {
	n := 0
	for _, c := range b.chains {
		n += c
	}
	if b.jump {
		n++
	}
	return n
}

// discover reads which NPB- chains and npb- sets a previous run left, so a full sync replaces
// them instead of failing on them.
func (b *Backend) discover() error {
	out, stderr, err := b.cfg.Runner.Run(b.cfg.Mode.Binary("save"), []string{"-t", "filter"}, nil)
	if err != nil {
		return fmt.Errorf("read filter table: %w: %s", err, firstLine(string(stderr)))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"+chainPrefix):
			name, _, _ := strings.Cut(line[1:], " ")
			if _, ok := b.chains[name]; !ok {
				b.chains[name] = 0
			}
		case strings.HasPrefix(line, "-A "+chainPrefix):
			name, _, _ := strings.Cut(line[3:], " ")
			b.chains[name]++
		case line == "-A FORWARD -j "+chainForward:
			b.jump = true
		}
	}
	out, stderr, err = b.cfg.Runner.Run("ipset", []string{"list", "-n"}, nil)
	if err != nil {
		return fmt.Errorf("list ipsets: %w: %s", err, firstLine(string(stderr)))
	}
	for _, name := range strings.Fields(string(out)) {
		if strings.HasPrefix(name, setPrefix) {
			b.sets[name] = -1 // unknown content: always rewritten through a temporary set
		}
	}
	b.discovered = true
	return nil
}

// Sync replaces whatever the backend enforces with s.
func (b *Backend) Sync(s *policy.State) (policy.SyncStats, error) {
	start := time.Now()
	if !b.discovered {
		if err := b.discover(); err != nil {
			b.needFull = true
			return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("full sync: %w (%w)", err, policy.ErrNextSyncFull)
		}
	}
	p, err := b.fullPlan(s)
	if err != nil {
		b.needFull = true
		return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("full sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	planned := time.Since(start)
	st, err := b.apply(p)
	st.Detail.(*Counts).PlanTime = planned
	st.Duration = time.Since(start)
	if err != nil {
		b.needFull = true
		return st, fmt.Errorf("full sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	b.synced, b.needFull = true, false
	return st, nil
}

// Update applies one event's delta, as a partial sync when it can: only the chains of rule sets
// whose entries or members changed, the chains of changed endpoints and their dispatch rules
// (and, for ipsets, only the changed members). The choice is made up front; after any failure
// the next call is a full sync.
func (b *Backend) Update(s *policy.State, d *policy.Delta) (policy.SyncStats, error) {
	if !b.synced || b.needFull || b.cfg.NoPartial || d == nil {
		retry := b.needFull
		st, err := b.Sync(s)
		if c, ok := st.Detail.(*Counts); ok && retry {
			c.Fallback = true
		}
		return st, err
	}
	start := time.Now()
	if d.Empty() {
		return policy.SyncStats{Duration: time.Since(start), Detail: &Counts{}}, nil
	}
	p, err := b.partialPlan(s, d)
	if err != nil {
		b.needFull = true
		return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("partial sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	planned := time.Since(start)
	st, err := b.apply(p)
	st.Detail.(*Counts).PlanTime = planned
	st.Duration = time.Since(start)
	if err != nil {
		b.needFull = true
		return st, fmt.Errorf("partial sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	return st, nil
}

// Close removes every chain, rule and set the backend created. After a failed sync the backend
// no longer knows what is in force, so it reads the kernel first: a capped per-rule sync must
// not leave half a ruleset behind.
func (b *Backend) Close() error {
	if !b.discovered {
		if err := b.discover(); err != nil {
			return fmt.Errorf("remove iptables rules: %w", err)
		}
		if len(b.chains) == 0 && len(b.sets) == 0 && !b.jump {
			b.discovered = false
			return nil
		}
	}
	p := &plan{full: true}
	names := make([]string, 0, len(b.chains))
	for c := range b.chains {
		names = append(names, c)
	}
	sort.Strings(names)
	p.declare = append(p.declare, names...)
	p.remove = append(p.remove, names...)
	if b.jump {
		p.ops = append(p.ops, op{kind: opDelete, chain: "FORWARD", args: []string{"-j", chainForward}})
	}
	for s := range b.sets {
		p.destroySets = append(p.destroySets, s)
	}
	sort.Strings(p.destroySets)
	saved := b.exec
	b.exec = nil // cleanup always goes through one restore
	_, err := b.apply(p)
	b.exec = saved
	if err != nil {
		return fmt.Errorf("remove iptables rules: %w", err)
	}
	b.reset()
	b.jump, b.synced, b.discovered = false, false, false
	return nil
}

// fullPlan writes the whole ruleset.
func (b *Backend) fullPlan(s *policy.State) (*plan, error) {
	return b.planFull(s, false)
}

// Planned is what a full sync of a state writes into a namespace that holds none of the
// backend's state, counted from the same translation, without building the rules, the restore
// payload or the set members, and without applying anything.
type Planned struct {
	// Rules (the jump from FORWARD included), Chains, Sets and SetMembers: what Counts'
	// TotalRules, TotalChains, TotalSets and TotalSetMembers report after that sync.
	Rules, Chains, Sets, SetMembers int
}

// Plan counts what a full sync of s with variant v writes. It takes time linear in the state's
// entries and endpoints, not in the rules: a per-IP ruleset of a billion rules is counted in
// about a second.
func Plan(s *policy.State, v Variant) (Planned, error) {
	if _, err := ParseVariant(string(v)); err != nil {
		return Planned{}, err
	}
	b := &Backend{cfg: Config{Variant: v}}
	b.reset()
	p, err := b.planFull(s, true)
	if err != nil {
		return Planned{}, fmt.Errorf("plan %s: %w", v, err)
	}
	out := Planned{Rules: p.appends, Chains: len(p.declare), Sets: len(p.setCounts), SetMembers: p.setMembers}
	for _, o := range p.ops {
		if o.kind == opInsert {
			out.Rules++
		}
	}
	return out, nil
}

// planFull plans a full sync; with countOnly it only counts (see Plan).
func (b *Backend) planFull(s *policy.State, countOnly bool) (*plan, error) {
	p := &plan{full: true, maxRules: b.cfg.MaxRules, countOnly: countOnly}
	g := newGen(s, b.cfg.Variant)
	g.count = countOnly
	desired := map[string]bool{}
	declare := func(c string) {
		desired[c] = true
		p.declare = append(p.declare, c)
	}
	for _, c := range []string{chainForward, chainEgress, chainIngress, chainAllowE} {
		declare(c)
	}
	topChains(p)
	if b.cfg.Variant == VariantIPTables {
		n := len(p.declare)
		g.ci.exclusionChains(p)
		for _, c := range p.declare[n:] {
			desired[c] = true
		}
	}
	wantSets := map[string]setSpec{}
	rsSets := map[policy.RuleSetID][]string{}
	for _, rs := range s.RuleSets() {
		declare(ruleSetChain(rs.ID))
		for _, ss := range g.ruleSet(p, rs) {
			wantSets[ss.name] = ss
			rsSets[rs.ID] = append(rsSets[rs.ID], ss.name)
		}
	}
	dispatch := [2]map[uint32]netip.Addr{{}, {}}
	for _, ep := range s.Endpoints() {
		if ep.Pod == nil {
			continue
		}
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			rs := endpointRuleSet(ep, dir)
			if rs == policy.RuleSetAllowAll {
				continue
			}
			if _, ok := s.RuleSet(rs); !ok {
				return nil, fmt.Errorf("endpoint %d (%s): %s rule set %d missing from the state", ep.ID, ep.Pod.Key(), dir, rs)
			}
			declare(endpointChain(dir, ep.ID))
			g.endpoint(p, ep, dir, rs)
			p.rule(dispatchChain(dir), dispatchRule(dir, ep.ID, ep.Pod.IP)...)
			dispatch[dir][ep.ID] = ep.Pod.IP
		}
	}
	stale := make([]string, 0)
	for c := range b.chains {
		if !desired[c] {
			stale = append(stale, c)
		}
	}
	sort.Strings(stale)
	p.declare = append(p.declare, stale...)
	p.remove = append(p.remove, stale...)
	if !b.jump {
		p.ops = append(p.ops, op{kind: opInsert, chain: "FORWARD", args: []string{"-j", chainForward}})
	}
	names := make([]string, 0, len(wantSets))
	for n := range wantSets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.fillSet(p, wantSets[n])
	}
	for n := range b.sets {
		if _, ok := wantSets[n]; !ok {
			p.destroySets = append(p.destroySets, n)
		}
	}
	sort.Strings(p.destroySets)
	setIDs := map[string][]policy.Identity{}
	for n, ss := range wantSets {
		if ss.ids != nil {
			setIDs[n] = ss.ids
		}
	}
	p.after = func() {
		b.dispatch = dispatch
		b.rsSets = rsSets
		b.setIDs = setIDs
	}
	return p, nil
}

// fillSet writes a set's members. A set the rules already use is filled under a temporary name
// and swapped in after the rules are committed, so a failed sync leaves its old content.
func (b *Backend) fillSet(p *plan, ss setSpec) {
	if p.countOnly {
		p.setMembers += ss.size()
		p.setCounts = append(p.setCounts, setCount{ss.name, ss.size()})
		return
	}
	if _, exists := b.sets[ss.name]; !exists {
		p.setLines = append(p.setLines, ss.lines()...)
		p.setMembers += len(ss.members)
		p.setCounts = append(p.setCounts, setCount{ss.name, len(ss.members)})
		p.newSets = append(p.newSets, ss.name)
		return
	}
	// A temporary name the kernel already holds (left by a failed sync or an earlier run)
	// would be filled on top of its old members: take the next free one.
	var tmp string
	for {
		b.tmpSeq++
		tmp = fmt.Sprintf("%st-%d", setPrefix, b.tmpSeq)
		if _, taken := b.sets[tmp]; !taken {
			break
		}
	}
	t := ss
	t.name = tmp
	p.setLines = append(p.setLines, t.lines()...)
	p.setMembers += len(ss.members)
	p.tmpSets = append(p.tmpSets, tmp)
	p.postLines = append(p.postLines, "swap "+tmp+" "+ss.name, "destroy "+tmp)
	p.setCounts = append(p.setCounts, setCount{ss.name, len(ss.members)})
}

// partialPlan writes only what d changed.
func (b *Backend) partialPlan(s *policy.State, d *policy.Delta) (*plan, error) {
	p := &plan{maxRules: b.cfg.MaxRules}
	g := newGen(s, b.cfg.Variant)
	removedRS := map[policy.RuleSetID]bool{}
	for _, id := range d.RuleSetsRemoved {
		removedRS[id] = true
	}
	rewrite := map[policy.RuleSetID]bool{}
	for _, id := range d.RuleSetsAdded {
		rewrite[id] = true
	}
	for _, id := range d.RuleSetsRenamed { // their rules' comments name the policies
		rewrite[id] = true
	}
	for _, e := range d.EntriesAdded {
		rewrite[e.Set] = true
	}
	for _, e := range d.EntriesRemoved {
		rewrite[e.Set] = true
	}
	changedIDs := map[policy.Identity]bool{}
	for _, m := range d.MembersAdded {
		changedIDs[m.Identity] = true
	}
	for _, m := range d.MembersRemoved {
		changedIDs[m.Identity] = true
	}
	podsChanged := len(changedIDs) > 0 || len(d.EndpointsAdded)+len(d.EndpointsRemoved) > 0
	// A new or removed ipBlock prefix changes which addresses every CIDR and world peer holds
	// (the longest prefix decides): rewrite every rule set with such a peer and the exclusion
	// chains.
	cidrChanged := len(d.CIDRsAdded)+len(d.CIDRsRemoved) > 0
	if cidrChanged {
		for _, rs := range s.RuleSets() {
			for _, e := range rs.Entries {
				if e.Peer.IsCIDR() || e.Peer == policy.IdentityWorld {
					rewrite[rs.ID] = true
					break
				}
			}
		}
	}
	// Rule sets with named ports follow pods through their ports: rewrite them whole.
	for _, rs := range s.RuleSets() {
		if !podsChanged || rewrite[rs.ID] || removedRS[rs.ID] {
			continue
		}
		for _, e := range rs.Entries {
			if e.NamedPort != "" {
				rewrite[rs.ID] = true
				break
			}
		}
	}
	// The other rule sets whose peers gained or lost members are edited in place: ipset
	// members are added and deleted; per-IP rules are inserted at the top of the chain and
	// deleted by spec. Their order does not matter: every rule of a rule-set chain but the final
	// DROP allows (or jumps to an exclusion chain that allows or returns).
	type memberRule struct {
		rs *policy.RuleSet
		e  policy.Entry
	}
	memberRules := map[policy.Identity][]memberRule{}
	if b.cfg.Variant == VariantIPTables {
		for _, rs := range s.RuleSets() {
			if rewrite[rs.ID] || removedRS[rs.ID] {
				continue
			}
			for _, e := range rs.Entries {
				if changedIDs[e.Peer] && e.NamedPort == "" && !e.Peer.IsCIDR() && addressPeer(e.Peer) {
					memberRules[e.Peer] = append(memberRules[e.Peer], memberRule{rs, e})
				}
			}
		}
	}
	// Shared hash:ip sets are never refilled by a partial sync: their content follows from
	// their identity list, so member edits keep them current.
	memberSets := map[policy.Identity][]string{}
	for name, ids := range b.setIDs {
		for _, id := range ids {
			if changedIDs[id] {
				memberSets[id] = append(memberSets[id], name)
			}
		}
	}
	for id := range rewrite {
		if removedRS[id] {
			delete(rewrite, id)
		}
	}
	declared := map[string]bool{}
	declare := func(c string) {
		if !declared[c] {
			declared[c] = true
			p.declare = append(p.declare, c)
		}
	}
	removeChain := func(c string) {
		if _, ok := b.chains[c]; ok {
			declare(c)
			p.remove = append(p.remove, c)
		}
	}
	if cidrChanged && b.cfg.Variant == VariantIPTables {
		n := len(p.declare)
		g.ci.exclusionChains(p)
		keep := map[string]bool{}
		for _, c := range p.declare[n:] {
			declared[c] = true
			keep[c] = true
		}
		var stale []string
		for c := range b.chains {
			if strings.HasPrefix(c, "NPB-X") && !keep[c] {
				stale = append(stale, c)
			}
		}
		sort.Strings(stale)
		for _, c := range stale {
			removeChain(c)
		}
	}
	ids := sortedIDs(rewrite)
	rsSets := map[policy.RuleSetID][]string{}
	newShared := map[string][]policy.Identity{}
	filled := map[string]bool{}
	var dropped []string // sets no longer used by a rewritten or removed rule set
	for _, id := range ids {
		rs, ok := s.RuleSet(id)
		if !ok {
			return nil, fmt.Errorf("rule set %d changed but is missing from the state", id)
		}
		declare(ruleSetChain(id))
		sets := g.ruleSet(p, rs)
		rsSets[id] = []string{}
		for _, ss := range sets {
			rsSets[id] = append(rsSets[id], ss.name)
			if filled[ss.name] {
				continue
			}
			filled[ss.name] = true
			if _, exists := b.sets[ss.name]; exists && ss.ids != nil {
				continue
			}
			b.fillSet(p, ss)
			if ss.ids != nil {
				newShared[ss.name] = ss.ids
			}
		}
		dropped = append(dropped, b.rsSets[id]...)
	}
	for _, m := range d.MembersRemoved {
		for _, mr := range memberRules[m.Identity] {
			p.ops = append(p.ops, op{kind: opDelete, chain: ruleSetChain(mr.rs.ID), args: g.memberRule(mr.rs, mr.e, m.IP)})
		}
	}
	for _, m := range d.MembersAdded {
		for _, mr := range memberRules[m.Identity] {
			p.ops = append(p.ops, op{kind: opInsert, chain: ruleSetChain(mr.rs.ID), args: g.memberRule(mr.rs, mr.e, m.IP)})
		}
	}
	// Member edits run after the rules commit, removals first: a relabelled pod leaves its old
	// identity's sets before it joins the new one's.
	for _, m := range d.MembersRemoved {
		for _, n := range memberSets[m.Identity] {
			p.postLines = append(p.postLines, "del "+n+" "+m.IP.String())
			p.setDelta = append(p.setDelta, setCount{n, -1})
		}
	}
	for _, m := range d.MembersAdded {
		for _, n := range memberSets[m.Identity] {
			p.postLines = append(p.postLines, "add "+n+" "+m.IP.String())
			p.setMembers++
			p.setDelta = append(p.setDelta, setCount{n, 1})
		}
	}
	addDispatch := [2]map[uint32]netip.Addr{{}, {}}
	delDispatch := [2][]uint32{}
	for _, ep := range d.EndpointsRemoved {
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			if ip, ok := b.dispatch[dir][ep.ID]; ok {
				p.ops = append(p.ops, op{kind: opDelete, chain: dispatchChain(dir), args: dispatchRule(dir, ep.ID, ip)})
				delDispatch[dir] = append(delDispatch[dir], ep.ID)
			}
			removeChain(endpointChain(dir, ep.ID))
		}
	}
	eps := append(append([]policy.Endpoint(nil), d.EndpointsAdded...), d.EndpointsChanged...)
	for i := range eps {
		ep := &eps[i]
		if cur, ok := s.Endpoint(ep.ID); ok {
			ep = cur
		}
		if ep.Pod == nil {
			continue
		}
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			rs := endpointRuleSet(ep, dir)
			ip, dispatched := b.dispatch[dir][ep.ID]
			if rs == policy.RuleSetAllowAll {
				if dispatched {
					p.ops = append(p.ops, op{kind: opDelete, chain: dispatchChain(dir), args: dispatchRule(dir, ep.ID, ip)})
					delDispatch[dir] = append(delDispatch[dir], ep.ID)
				}
				removeChain(endpointChain(dir, ep.ID))
				continue
			}
			if _, ok := s.RuleSet(rs); !ok {
				return nil, fmt.Errorf("endpoint %d: %s rule set %d missing from the state", ep.ID, dir, rs)
			}
			declare(endpointChain(dir, ep.ID))
			g.endpoint(p, ep, dir, rs)
			if dispatched && ip != ep.Pod.IP {
				p.ops = append(p.ops, op{kind: opDelete, chain: dispatchChain(dir), args: dispatchRule(dir, ep.ID, ip)})
				dispatched = false
			}
			if !dispatched {
				p.rule(dispatchChain(dir), dispatchRule(dir, ep.ID, ep.Pod.IP)...)
				addDispatch[dir][ep.ID] = ep.Pod.IP
			}
		}
	}
	for _, id := range d.RuleSetsRemoved {
		removeChain(ruleSetChain(id))
		dropped = append(dropped, b.rsSets[id]...)
	}
	// A dropped set goes only when no rule set uses it after this sync.
	used := map[string]bool{}
	for id, names := range b.rsSets {
		if _, changed := rsSets[id]; changed || removedRS[id] {
			continue
		}
		for _, n := range names {
			used[n] = true
		}
	}
	for _, names := range rsSets {
		for _, n := range names {
			used[n] = true
		}
	}
	var destroy []string
	for _, n := range dropped {
		if _, exists := b.sets[n]; exists && !used[n] {
			destroy = append(destroy, n)
		}
	}
	sort.Strings(destroy)
	p.destroySets = dedup(destroy)
	p.after = func() {
		for dir := range delDispatch {
			for _, id := range delDispatch[dir] {
				delete(b.dispatch[dir], id)
			}
			for id, ip := range addDispatch[dir] {
				b.dispatch[dir][id] = ip
			}
		}
		for id, names := range rsSets {
			b.rsSets[id] = names
		}
		for _, id := range d.RuleSetsRemoved {
			delete(b.rsSets, id)
		}
		for n, ids := range newShared {
			b.setIDs[n] = ids
		}
		for _, n := range p.destroySets {
			delete(b.setIDs, n)
		}
	}
	return p, nil
}

func sortedIDs(m map[policy.RuleSetID]bool) []policy.RuleSetID {
	out := make([]policy.RuleSetID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
