package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"sigs.k8s.io/knftables"

	"netpolbench/policy"
)

// Config configures a Backend.
type Config struct {
	// NFT reaches the table: a Fake, or NewKernel for a network namespace. Its family and
	// table must be Family and TableName. Required.
	NFT knftables.Interface
	// NoPartial makes every Update a full sync.
	NoPartial bool
	// PerElement sends every element as an nft command of its own, as knftables writes a
	// transaction. By default consecutive element commands of one set are merged into
	// commands of up to elementBatch elements: nft parses and holds each command, and at
	// 500,000 elements one command each took it 8.4 s and 840 MB, batches 1.8 s and 190 MB.
	PerElement bool
}

// Counts is what one sync wrote and cost (SyncStats.Detail of every Sync and Update, and
// Backend.Last). Counts are exact.
type Counts struct {
	// Full is set for a full sync; Fallback when it is one because the previous sync failed.
	Full, Fallback bool
	// Commands is the number of nft commands of the transaction (lines of `nft -f` input);
	// Bytes its size.
	Commands, Bytes int
	// ChainsWritten counts chains created or flushed and refilled; RulesWritten the rules
	// written into them.
	ChainsWritten, ChainsDeleted, RulesWritten int
	// SetsCreated and SetsDeleted count named sets and maps.
	SetsCreated, SetsDeleted int
	// ElementsAdded and ElementsDeleted count set and map elements; a flushed set's elements
	// count as deleted.
	ElementsAdded, ElementsDeleted int
	// Plan is the time to build the transaction, Render to write it out as nft input, Apply
	// the time nft (or the fake) took to apply it. On the kernel's path the input is written
	// as the transaction is built: Plan holds that, and Render is next to nothing.
	Plan, Render, Apply time.Duration
	// Table is what the table holds after the sync (before it, when the sync failed).
	Table Size
}

// Size is what the table holds, or would hold.
type Size struct {
	// Chains counts every chain, the base chain too; Rules every rule.
	Chains, Rules int
	// Sets counts named sets and verdict maps; Elements the elements of all of them.
	Sets, Elements int
	// DispatchElements are the verdict map elements (one per isolated endpoint and direction);
	// PodElements, NetElements and NamedElements the elements of peer sets of each kind;
	// SelfElements one per pod.
	DispatchElements, PodElements, NetElements, NamedElements, SelfElements int
	// MaxRuleSetRules is the longest rule-set chain: with the five rules of the base chain it
	// bounds the rules the first packet of a flow passes.
	MaxRuleSetRules int
}

// Backend enforces a policy.State in one nftables table and implements policy.Backend.
type Backend struct {
	cfg      Config
	m        *mirror
	stale    map[string]bool // chains and sets a previous run left, found by discover
	staleSet map[string]bool
	// discovered is set once the table was read; synced after a successful full sync;
	// unhooked while Unhook has the base chain out of the packet path.
	discovered, synced, needFull, unhooked bool
	last                                   Counts
	// mutate, when set by a test, changes each transaction before it is run.
	mutate func(*knftables.Transaction)
}

var _ policy.Backend = (*Backend)(nil)

// ErrNoInterface is returned by New without Config.NFT.
var ErrNoInterface = errors.New("new nftables backend: no knftables interface (want NewFake() or NewKernel(ns))")

// New returns a Backend. Nothing is applied until Sync.
func New(cfg Config) (*Backend, error) {
	if cfg.NFT == nil {
		return nil, ErrNoInterface
	}
	return &Backend{cfg: cfg, m: newMirror()}, nil
}

// Name is "nftables".
func (b *Backend) Name() string { return "nftables" }

// Last returns the counts of the last Sync or Update.
func (b *Backend) Last() Counts { return b.last }

// Size returns what the table holds, as far as the backend knows (exact after a successful
// sync).
func (b *Backend) Size() Size { return b.m.size() }

// discover reads which chains, sets and maps a previous run left in the table, so that a full
// sync removes them instead of failing on them or leaving them.
func (b *Backend) discover() error {
	b.stale, b.staleSet = map[string]bool{}, map[string]bool{}
	ctx := context.Background()
	for _, kind := range []string{"chains", "sets", "maps"} {
		names, err := b.cfg.NFT.List(ctx, kind)
		if knftables.IsNotFound(err) {
			break // no table: nothing left over
		}
		if err != nil {
			return fmt.Errorf("list %s of table %s %s: %w", kind, Family, TableName, err)
		}
		if kind == "chains" && len(names) == 0 {
			// No table, or an empty one (every table this backend writes has its base
			// chain). knftables' netlink lister cannot tell: it answers a missing table
			// with an empty chain list and then an unwrapped ENOENT for its sets.
			break
		}
		for _, n := range names {
			switch {
			case n == chainForward || n == mapEgress || n == mapIngress || n == setSelf:
			case strings.HasPrefix(n, "__set"):
				// The anonymous sets of rules (netlink lists them, nft does not): they go
				// with their rules.
			case kind == "chains":
				b.stale[n] = true
			default:
				b.staleSet[n] = true
			}
		}
	}
	b.discovered = true
	return nil
}

// Sync replaces whatever the table holds with s, in one transaction: if nft rejects it, the
// table keeps its previous content.
func (b *Backend) Sync(s *policy.State) (policy.SyncStats, error) {
	start := time.Now()
	if !b.discovered {
		if err := b.discover(); err != nil {
			b.needFull = true
			return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("full sync: %w (%w)", err, policy.ErrNextSyncFull)
		}
	}
	t, nm, err := b.fullPlan(s)
	if err != nil {
		b.needFull = true
		return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("full sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	t.st.Fallback = b.needFull && b.synced
	err = b.run(t, start)
	if err != nil {
		st := b.finish(t, start)
		b.forget()
		return st, fmt.Errorf("full sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	b.m = nm
	b.stale, b.staleSet = map[string]bool{}, map[string]bool{}
	b.synced, b.needFull, b.unhooked = true, false, false
	return b.finish(t, start), nil
}

// Update applies one event's delta as a partial sync: elements of the verdict maps and peer
// sets are added and deleted, and only the chains of rule sets whose entries changed are
// rewritten, all in one transaction. After any failure the next call is a full sync.
func (b *Backend) Update(s *policy.State, d *policy.Delta) (policy.SyncStats, error) {
	if !b.synced || b.needFull || b.cfg.NoPartial || d == nil {
		return b.Sync(s)
	}
	start := time.Now()
	if d.Empty() {
		b.last = Counts{Table: b.m.size()}
		c := b.last
		return policy.SyncStats{Duration: time.Since(start), Detail: &c}, nil
	}
	t, commit, err := b.partialPlan(s, d)
	if err != nil {
		b.needFull = true
		return policy.SyncStats{Duration: time.Since(start)}, fmt.Errorf("partial sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	if err := b.run(t, start); err != nil {
		st := b.finish(t, start)
		b.forget()
		return st, fmt.Errorf("partial sync: %w (%w)", err, policy.ErrNextSyncFull)
	}
	commit()
	return b.finish(t, start), nil
}

// forget drops the mirror after a failed transaction: nft may have committed it before the
// failure was reported (an nft killed after the commit), so the table may hold what the mirror
// does not know, or lack what it does. The next call is a full sync that lists the table
// first, as on a table a previous run left.
func (b *Backend) forget() {
	b.m = newMirror()
	b.discovered, b.needFull = false, true
}

func (b *Backend) finish(t *txb, start time.Time) policy.SyncStats {
	t.st.Table = b.m.size()
	b.last = *t.st
	c := *t.st
	return policy.SyncStats{Duration: time.Since(start), Ops: c.Commands, Bytes: c.Bytes, Detail: &c}
}

// CountsOf reads the Counts a Sync or Update put in its SyncStats (zero when there are none).
func CountsOf(st policy.SyncStats) Counts {
	if c, ok := st.Detail.(*Counts); ok && c != nil {
		return *c
	}
	return Counts{}
}

// Close removes the table and everything in it. A backend that never synced still removes
// a table a previous run left.
func (b *Backend) Close() error {
	tx := b.cfg.NFT.NewTransaction()
	// add then delete: deleting a table that is not there would fail the transaction.
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
	if err := b.cfg.NFT.Run(context.Background(), tx); err != nil {
		return fmt.Errorf("remove table %s %s: %w", Family, TableName, err)
	}
	b.m = newMirror()
	b.synced, b.discovered, b.needFull = false, false, false
	return nil
}

// mirror is the backend's view of the table, kept in step with every successful transaction
// (kube-proxy keeps the same of its maps): partial syncs diff against it.
type mirror struct {
	chains map[string]*chainSpec
	sets   map[string]*setState
	// idSets lists the pods sets holding each identity's members.
	idSets   map[policy.Identity]map[string]bool
	dispatch [2]map[uint32]dispatchEntry
	self     map[uint32]netip.Addr
	base     bool
}

type dispatchEntry struct {
	ip netip.Addr
	rs policy.RuleSetID
}

type setState struct {
	spec  setSpec
	n     int
	users int
	// nets holds a nets set's ranges, named a named-port set's targets by address.
	nets  []string
	named map[netip.Addr][]target
}

func newMirror() *mirror {
	return &mirror{
		chains:   map[string]*chainSpec{},
		sets:     map[string]*setState{},
		idSets:   map[policy.Identity]map[string]bool{},
		dispatch: [2]map[uint32]dispatchEntry{{}, {}},
		self:     map[uint32]netip.Addr{},
	}
}

func (m *mirror) addSet(st *setState) {
	m.sets[st.spec.name] = st
	if st.spec.kind == kindPods {
		for _, id := range st.spec.ids {
			if m.idSets[id] == nil {
				m.idSets[id] = map[string]bool{}
			}
			m.idSets[id][st.spec.name] = true
		}
	}
}

func (m *mirror) deleteSet(name string) {
	st := m.sets[name]
	if st == nil {
		return
	}
	delete(m.sets, name)
	for _, id := range st.spec.ids {
		delete(m.idSets[id], name)
		if len(m.idSets[id]) == 0 {
			delete(m.idSets, id)
		}
	}
}

// baseRules are the rules of the base chain.
var baseRules = []string{
	"ct state established,related accept",
	"ct state invalid drop",
	// A pod reaching its own address is always allowed, whatever its policies say.
	"ip saddr . ip daddr @" + setSelf + " accept",
	"ip saddr vmap @" + mapEgress,
	"ip daddr vmap @" + mapIngress,
}

func (m *mirror) size() Size {
	var z Size
	if !m.base {
		return z
	}
	z.Chains = 1 + len(m.chains)
	z.Rules = len(baseRules)
	for _, c := range m.chains {
		z.Rules += len(c.rules)
		z.MaxRuleSetRules = max(z.MaxRuleSetRules, len(c.rules))
	}
	z.Sets = 3 + len(m.sets)
	z.DispatchElements = len(m.dispatch[0]) + len(m.dispatch[1])
	z.SelfElements = len(m.self)
	for _, st := range m.sets {
		switch st.spec.kind {
		case kindPods:
			z.PodElements += st.n
		case kindNets:
			z.NetElements += st.n
		case kindNamed:
			z.NamedElements += st.n
		}
	}
	z.Elements = z.DispatchElements + z.SelfElements + z.PodElements + z.NetElements + z.NamedElements
	return z
}

// Plan returns the size of the table a full sync of s writes, without writing or applying
// anything: what a caller checks against its budget before it syncs. It counts set elements
// without making them, so it is cheap where the sync itself is not.
func Plan(s *policy.State) (Size, error) {
	g := newGen(s)
	z := Size{Chains: 1, Rules: len(baseRules), Sets: 3}
	for _, rs := range s.RuleSets() {
		cs := g.chain(rs)
		z.Chains++
		z.Rules += len(cs.rules)
		z.MaxRuleSetRules = max(z.MaxRuleSetRules, len(cs.rules))
	}
	for _, ss := range g.sets {
		z.Sets++
		switch ss.kind {
		case kindPods:
			for _, id := range ss.ids {
				z.PodElements += len(g.members(id))
			}
		case kindNets:
			z.NetElements += len(g.netSpans(ss.ids))
		case kindNamed:
			z.NamedElements += len(g.namedTargets(ss.rs, nil))
		}
	}
	for _, ep := range s.Endpoints() {
		if ep.Pod == nil {
			continue
		}
		z.SelfElements++
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			rs := ep.RuleSet(dir)
			if rs == policy.RuleSetAllowAll {
				continue
			}
			if _, ok := s.RuleSet(rs); !ok {
				return Size{}, fmt.Errorf("endpoint %d (%s): %s rule set %d missing from the state", ep.ID, ep.Pod.Key(), dir, rs)
			}
			z.DispatchElements++
		}
	}
	z.Elements = z.DispatchElements + z.SelfElements + z.PodElements + z.NetElements + z.NamedElements
	return z, nil
}
