package nftables

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"sigs.k8s.io/knftables"

	"netpolbench/policy"
)

// Fake is knftables' Fake for the backend's table, made as strict as the kernel where the
// backend needs it, with a tracer. It implements knftables.Interface and policy.Decider.
//
// knftables' Fake applies a transaction to a copy of its tables and keeps the copy only when
// every operation succeeded (a failed transaction changes nothing), and checks that a rule or
// map element names chains, sets and maps that exist. On top of that, Fake parses every rule
// and element it holds (a rule the tracer cannot read is an error, as one nft cannot parse
// is), and refuses, as the kernel does: deleting a chain, set or map still in use (checked on
// the result), overlapping elements of an interval set, and adding a map element whose key
// is there with another verdict. Refused transactions are rolled back.
type Fake struct {
	mu  sync.Mutex
	nft *knftables.Fake
	rs  *ruleset
}

var (
	_ knftables.Interface = (*Fake)(nil)
	_ policy.Decider      = (*Fake)(nil)
)

// NewFake returns a fake with no table.
func NewFake() *Fake {
	return &Fake{nft: knftables.NewFake(Family, TableName), rs: newRuleset()}
}

// NewTransaction is part of knftables.Interface.
func (f *Fake) NewTransaction() *knftables.Transaction { return f.nft.NewTransaction() }

// Run is part of knftables.Interface.
func (f *Fake) Run(ctx context.Context, tx *knftables.Transaction) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.apply(ctx, tx, true)
	return err
}

// Check is part of knftables.Interface: Run without keeping the result.
func (f *Fake) Check(ctx context.Context, tx *knftables.Transaction) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.apply(ctx, tx, false)
	return err
}

func (f *Fake) apply(ctx context.Context, tx *knftables.Transaction, keep bool) (*ruleset, error) {
	if err := f.clashes(tx.String()); err != nil {
		return nil, err
	}
	f.nft.RLock()
	oldTables, oldTable := f.nft.Tables, f.nft.Table
	f.nft.RUnlock()
	if err := f.nft.Run(ctx, tx); err != nil {
		return nil, err
	}
	rs, err := fromFake(f.nft.Table)
	if err != nil || !keep {
		f.nft.Lock()
		f.nft.Tables, f.nft.Table = oldTables, oldTable
		f.nft.Unlock()
	}
	if err != nil {
		return nil, err
	}
	if keep {
		f.rs = rs
	}
	return rs, nil
}

// clashes refuses what knftables' Fake lets through and the kernel does not: adding a verdict
// map element whose key the map holds with another verdict (EEXIST). The transaction's lines
// are replayed against the maps' elements, so a delete before the add is fine.
func (f *Fake) clashes(text string) error {
	cur := map[string]map[string]string{}
	get := func(name string) map[string]string {
		if m, ok := cur[name]; ok {
			return m
		}
		m := map[string]string{}
		if rm := f.rs.maps[name]; rm != nil {
			for _, k := range rm.keys {
				m[formatKey(rm.types, k)] = rm.elems[k.pack()].String()
			}
		}
		cur[name] = m
		return m
	}
	isMap := func(name string) bool { _, ok := cur[name]; return ok || f.rs.maps[name] != nil }
	prefix := fmt.Sprintf(" %s %s ", Family, TableName)
	for n, line := range strings.Split(text, "\n") {
		verb, rest, ok := strings.Cut(line, prefix)
		if !ok {
			continue
		}
		name, body, _ := strings.Cut(rest, " ")
		switch verb {
		case "add map":
			if !isMap(name) {
				cur[name] = map[string]string{}
			}
		case "flush map", "delete map":
			cur[name] = map[string]string{}
		case "add element", "delete element":
			if !isMap(name) {
				continue
			}
			body = strings.TrimSuffix(strings.TrimPrefix(body, "{ "), " }")
			k, v, _ := strings.Cut(body, " : ")
			m := get(name)
			if verb == "delete element" {
				delete(m, k)
				continue
			}
			if old, ok := m[k]; ok && old != v {
				return fmt.Errorf("/dev/stdin:%d:1-%d: Error: Could not process rule: File exists (map %s holds %s : %s)", n+1, len(line), name, k, old)
			}
			m[k] = v
		}
	}
	return nil
}

// ListAll is part of knftables.Interface.
func (f *Fake) ListAll(ctx context.Context) (map[string][]string, error) { return f.nft.ListAll(ctx) }

// List is part of knftables.Interface.
func (f *Fake) List(ctx context.Context, objectType string) ([]string, error) {
	return f.nft.List(ctx, objectType)
}

// ListRules is part of knftables.Interface.
func (f *Fake) ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error) {
	return f.nft.ListRules(ctx, chain)
}

// ListElements is part of knftables.Interface.
func (f *Fake) ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error) {
	return f.nft.ListElements(ctx, objectType, name)
}

// ListCounters is part of knftables.Interface.
func (f *Fake) ListCounters(ctx context.Context) ([]*knftables.Counter, error) {
	return f.nft.ListCounters(ctx)
}

// Dump writes the table as nft commands that recreate it (knftables' dump: one add per
// object, rule and element).
func (f *Fake) Dump() string { return f.nft.Dump() }

// Trace decides a flow with the fake's table the way the kernel's forward hook would for the
// flow's first packet (conntrack state new). It returns the verdict and the rules that
// decided, as "chain#n" (1-based) in walk order, with the verdict map element that was found.
func (f *Fake) Trace(fl policy.Flow) (policy.Verdict, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rs.trace(fl)
}

// Verdict implements policy.Decider by tracing.
func (f *Fake) Verdict(fl policy.Flow) (policy.Verdict, error) {
	v, _, err := f.Trace(fl)
	return v, err
}

// canonical renders the table for comparison with the kernel's.
func (f *Fake) canonical() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rs.canonical()
}
