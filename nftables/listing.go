package nftables

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"netpolbench/policy"
)

// Table is a snapshot of the backend's table, from the Fake or read back from the kernel: it
// lists itself as `nft list table` prints it and traces flows.
type Table struct{ rs *ruleset }

// Table returns a snapshot of the fake's table.
func (f *Fake) Table() *Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &Table{f.rs}
}

// ReadKernel reads the table nft holds in ns (`nft -j list table`).
func ReadKernel(ns Namespace) (*Table, error) {
	rs, err := kernelRuleset(ns)
	if err != nil {
		return nil, err
	}
	return &Table{rs}, nil
}

// Trace decides a flow as Fake.Trace does.
func (t *Table) Trace(fl policy.Flow) (policy.Verdict, []string, error) { return t.rs.trace(fl) }

// List writes the whole table as `nft list table` prints it (sets, maps, then chains, each
// by name; elements sorted).
func (t *Table) List() string {
	return t.rs.list(sortedKeys(t.rs.sets), sortedKeys(t.rs.maps), t.rs.chainOrder(), 0)
}

// maxListedElements is how many elements of a peer set ListFor shows.
const maxListedElements = 16

// ListFor writes the part of the table the traffic of the pod at ip walks, as `nft list
// table` prints it: the base chain, the verdict map elements of ip, the rule-set chains they
// lead to and the sets those match against (long sets cut short, saying how many elements
// they hold). A pod no policy isolates has no map element: its traffic passes the base chain
// and is accepted.
func (t *Table) ListFor(ip netip.Addr) string {
	r := t.rs
	sub := &ruleset{chains: map[string]*rsChain{}, sets: map[string]*rsSet{}, maps: map[string]*rsMap{}}
	var chains []string
	for _, name := range r.chainOrder() {
		if r.chains[name].hook != "" {
			chains = append(chains, name)
		}
	}
	for _, m := range []string{mapEgress, mapIngress} {
		rm := r.maps[m]
		if rm == nil {
			continue
		}
		own := &rsMap{name: m, types: rm.types, elems: map[string]verdict{}}
		if ip.Is4() {
			k := pointKey([]uint32{addrNum(ip)})
			if v, ok := rm.elems[k.pack()]; ok {
				own.elems[k.pack()] = v
				own.keys = []key{k}
				if (v.kind == vJump || v.kind == vGoto) && !slices.Contains(chains, v.target) {
					chains = append(chains, v.target)
				}
			}
		}
		sub.maps[m] = own
	}
	var sets []string
	for _, c := range chains {
		rc := r.chains[c]
		if rc == nil {
			continue
		}
		sub.chains[c] = rc
		for _, rule := range rc.rules {
			for _, e := range rule.exprs {
				if e.set != "" && !slices.Contains(sets, e.set) {
					sets = append(sets, e.set)
				}
			}
		}
	}
	for _, s := range sets {
		rs := r.sets[s]
		switch {
		case rs == nil:
		case s == setSelf && ip.Is4():
			// Of the self set, only the pod's own element.
			own := &rsSet{name: s, types: rs.types, exact: map[string]struct{}{}}
			if k := pointKey([]uint32{addrNum(ip), addrNum(ip)}); rs.contains([]uint32{addrNum(ip), addrNum(ip)}) {
				own.add(k)
			}
			sub.sets[s] = own
		default:
			sub.sets[s] = rs
		}
	}
	sets = sortedKeys(sub.sets)
	return sub.list(sets, []string{mapEgress, mapIngress}, chains, maxListedElements)
}

// chainOrder lists base chains first, then the others by name.
func (r *ruleset) chainOrder() []string {
	names := sortedKeys(r.chains)
	slices.SortStableFunc(names, func(a, b string) int {
		ha, hb := r.chains[a].hook != "", r.chains[b].hook != ""
		switch {
		case ha && !hb:
			return -1
		case hb && !ha:
			return 1
		}
		return 0
	})
	return names
}

// list writes the named sets, maps and chains in nft's listing format; limit > 0 cuts sets
// longer than that.
func (r *ruleset) list(sets, maps, chains []string, limit int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", Family, TableName)
	first := true
	sep := func() {
		if !first {
			b.WriteByte('\n')
		}
		first = false
	}
	// elements writes a set's elements as nft does: comma-separated, lines wrapped before
	// they grow past about 80 columns.
	elements := func(elems []string) {
		if len(elems) == 0 {
			return
		}
		shown := elems
		if limit > 0 && len(elems) > limit {
			shown = append(elems[:limit:limit], "...")
		}
		const indent = "\t\t\t     "
		b.WriteString("\t\telements = { ")
		col := 28
		for i, e := range shown {
			if i > 0 {
				if col+len(e)+2 > 80 {
					b.WriteString(",\n" + indent)
					col = 29
				} else {
					b.WriteString(", ")
					col += 2
				}
			}
			b.WriteString(e)
			col += len(e)
		}
		b.WriteString(" }")
		if len(shown) < len(elems) {
			fmt.Fprintf(&b, "  # %d elements in all", len(elems))
		}
		b.WriteByte('\n')
	}
	for _, name := range sets {
		s := r.sets[name]
		if s == nil {
			continue
		}
		sep()
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", name, typeList(s.types))
		if s.interval {
			b.WriteString("\t\tflags interval\n")
		}
		elements(canonicalElems(s.types, s.elems, s.interval))
		b.WriteString("\t}\n")
	}
	for _, name := range maps {
		m := r.maps[name]
		if m == nil {
			continue
		}
		sep()
		fmt.Fprintf(&b, "\tmap %s {\n\t\ttype %s : verdict\n", name, typeList(m.types))
		ks := slices.Clone(m.keys)
		slices.SortFunc(ks, func(x, y key) int { return cmp.Compare(x[0].lo, y[0].lo) })
		lines := make([]string, len(ks))
		for i, k := range ks {
			lines[i] = formatKey(m.types, k) + " : " + m.elems[k.pack()].String()
		}
		elements(lines)
		b.WriteString("\t}\n")
	}
	for _, name := range chains {
		c := r.chains[name]
		if c == nil {
			continue
		}
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n", name)
		if c.hook != "" {
			prio := fmt.Sprint(c.prio)
			if c.prio == 0 {
				prio = "filter"
			}
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy %s;\n", c.hook, prio, verdict{kind: c.policy})
		}
		for _, rule := range c.rules {
			b.WriteString("\t\t" + rule.String() + "\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
