package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// ruleset is the backend's table as the tracer and the comparisons see it: chains whose rules
// are parsed into matches and verdicts, sets and verdict maps whose elements are spans of
// values. It is read from knftables' Fake (the rule text as written) or from the kernel
// (`nft -j list table`), so both are traced the same way and compare after normalization (the
// kernel prints `meta l4proto tcp th dport 80` as `tcp dport 80`, merges nothing we did not
// merge, and orders elements its own way).
//
// It knows the expressions this package writes and no others: a rule it cannot read is an
// error, as a rule the kernel cannot parse is.
type ruleset struct {
	chains map[string]*rsChain
	sets   map[string]*rsSet
	maps   map[string]*rsMap
}

func newRuleset() *ruleset {
	return &ruleset{chains: map[string]*rsChain{}, sets: map[string]*rsSet{}, maps: map[string]*rsMap{}}
}

// field is a packet field a rule matches or looks up.
type field uint8

const (
	fSaddr field = iota + 1
	fDaddr
	fL4Proto
	fDport
	fCTState
)

var fieldNames = map[field]string{fSaddr: "ip saddr", fDaddr: "ip daddr", fL4Proto: "meta l4proto", fDport: "th dport", fCTState: "ct state"}

// vtype is the type of a value: what a set's key part or a field holds.
type vtype uint8

const (
	tAddr vtype = iota + 1
	tProto
	tPort
	tState
)

func (f field) vtype() vtype {
	switch f {
	case fSaddr, fDaddr:
		return tAddr
	case fL4Proto:
		return tProto
	case fDport:
		return tPort
	}
	return tState
}

var typeNames = map[string]vtype{"ipv4_addr": tAddr, "inet_proto": tProto, "inet_service": tPort}

// Conntrack states as bits, in the kernel's order; the first packet of a flow is new.
var ctStates = map[string]uint32{"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}

// span is an inclusive range of one value (an IPv4 address as a number, a protocol, a port, a
// set of conntrack state bits as lo == hi).
type span struct{ lo, hi uint32 }

// key is one element or literal: a span per part of a concatenation.
type key []span

func (k key) point() bool {
	for _, s := range k {
		if s.lo != s.hi {
			return false
		}
	}
	return true
}

func (k key) contains(v []uint32) bool {
	for i, s := range k {
		if v[i] < s.lo || v[i] > s.hi {
			return false
		}
	}
	return true
}

// packPoint packs values into a map key.
func packPoint(v []uint32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.BigEndian.PutUint32(b[4*i:], x)
	}
	return string(b)
}

func (k key) pack() string {
	v := make([]uint32, len(k))
	for i, s := range k {
		v[i] = s.lo
	}
	return packPoint(v)
}

type rsSet struct {
	name     string
	types    []vtype
	interval bool
	elems    []key
	// exact indexes point elements; ranged holds the others (interval sets).
	exact  map[string]struct{}
	ranged []key
}

func (s *rsSet) add(k key) {
	s.elems = append(s.elems, k)
	if k.point() {
		s.exact[k.pack()] = struct{}{}
	} else {
		s.ranged = append(s.ranged, k)
	}
}

func (s *rsSet) contains(v []uint32) bool {
	if _, ok := s.exact[packPoint(v)]; ok {
		return true
	}
	for _, k := range s.ranged {
		if k.contains(v) {
			return true
		}
	}
	return false
}

type rsMap struct {
	name  string
	types []vtype
	elems map[string]verdict
	keys  []key
}

type verdictKind uint8

const (
	vNone verdictKind = iota
	vAccept
	vDrop
	vReturn
	vJump
	vGoto
)

type verdict struct {
	kind   verdictKind
	target string
}

func (v verdict) String() string {
	switch v.kind {
	case vAccept:
		return "accept"
	case vDrop:
		return "drop"
	case vReturn:
		return "return"
	case vJump:
		return "jump " + v.target
	case vGoto:
		return "goto " + v.target
	}
	return ""
}

// expr is one match: the packet's fields (a concatenation) compared with a named set, an
// anonymous set or a literal (vals with one key).
type expr struct {
	fields []field
	neg    bool
	set    string
	vals   []key
}

type rsRule struct {
	exprs []expr
	// vmapFields and vmap are a verdict map lookup (`ip saddr vmap @egress`); a miss goes on
	// to the next rule.
	vmapFields []field
	vmap       string
	verdict    verdict
	comment    string
}

type rsChain struct {
	name string
	// hook and policy are set for a base chain; prio is its priority.
	hook   string
	prio   int
	policy verdictKind
	rules  []*rsRule
}

// parseValue reads one value of type t as nft writes it: an address, prefix or address range;
// a protocol name or number; a port or port range; a conntrack state.
func parseValue(t vtype, s string) (span, error) {
	switch t {
	case tAddr:
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
			p = p.Masked()
			lo := addrNum(p.Addr())
			return span{lo, lo | uint32(uint64(1)<<(32-p.Bits())-1)}, nil
		}
		if a, b, ok := strings.Cut(s, "-"); ok {
			lo, err1 := netip.ParseAddr(a)
			hi, err2 := netip.ParseAddr(b)
			if err1 != nil || err2 != nil || !lo.Is4() || !hi.Is4() {
				return span{}, fmt.Errorf("bad address range %q", s)
			}
			return span{addrNum(lo), addrNum(hi)}, nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return span{}, fmt.Errorf("bad IPv4 address %q", s)
		}
		return span{addrNum(a), addrNum(a)}, nil
	case tProto:
		for p, name := range protoNames {
			if name == s {
				return span{uint32(p), uint32(p)}, nil
			}
		}
		n, err := strconv.ParseUint(s, 10, 8)
		if err != nil {
			return span{}, fmt.Errorf("bad protocol %q", s)
		}
		return span{uint32(n), uint32(n)}, nil
	case tPort:
		a, b, isRange := strings.Cut(s, "-")
		lo, err := strconv.ParseUint(a, 10, 16)
		if err != nil {
			return span{}, fmt.Errorf("bad port %q", s)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.ParseUint(b, 10, 16); err != nil || hi < lo {
				return span{}, fmt.Errorf("bad port range %q", s)
			}
		}
		return span{uint32(lo), uint32(hi)}, nil
	case tState:
		bits := uint32(0)
		for _, st := range strings.Split(s, ",") {
			b, ok := ctStates[st]
			if !ok {
				return span{}, fmt.Errorf("unknown conntrack state %q", st)
			}
			bits |= b
		}
		return span{bits, bits}, nil
	}
	return span{}, fmt.Errorf("no value type %d", t)
}

func addrNum(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func numAddr(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}

// formatValue writes a span of type t the way this package writes it.
func formatValue(t vtype, s span) string {
	switch t {
	case tAddr:
		return addrRange(s)
	case tProto:
		if n, ok := protoNames[uint8(s.lo)]; ok {
			return n
		}
		return strconv.Itoa(int(s.lo))
	case tState:
		var names []string
		for _, n := range []string{"invalid", "established", "related", "new", "untracked"} {
			if s.lo&ctStates[n] != 0 {
				names = append(names, n)
			}
		}
		return strings.Join(names, ",")
	}
	if s.lo == s.hi {
		return strconv.Itoa(int(s.lo))
	}
	return fmt.Sprintf("%d-%d", s.lo, s.hi)
}

// addrRange writes an address span as an address, a prefix when it is one, or a range.
func addrRange(s span) string {
	if s.lo == s.hi {
		return numAddr(s.lo).String()
	}
	size := uint64(s.hi) - uint64(s.lo) + 1
	if size&(size-1) == 0 && uint64(s.lo)%size == 0 {
		bits := 32
		for size > 1 {
			size >>= 1
			bits--
		}
		return netip.PrefixFrom(numAddr(s.lo), bits).String()
	}
	return numAddr(s.lo).String() + "-" + numAddr(s.hi).String()
}

func parseKey(types []vtype, parts []string) (key, error) {
	if len(parts) != len(types) {
		return nil, fmt.Errorf("key %q has %d parts, the type %d", strings.Join(parts, " . "), len(parts), len(types))
	}
	k := make(key, len(parts))
	for i, p := range parts {
		s, err := parseValue(types[i], strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		k[i] = s
	}
	return k, nil
}

func parseTypes(typ string) ([]vtype, error) {
	var out []vtype
	for _, p := range strings.Split(typ, " . ") {
		t, ok := typeNames[strings.TrimSpace(p)]
		if !ok {
			return nil, fmt.Errorf("unsupported set type %q", typ)
		}
		out = append(out, t)
	}
	return out, nil
}

func parseVerdict(s string) (verdict, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 1 && f[0] == "accept":
		return verdict{kind: vAccept}, nil
	case len(f) == 1 && f[0] == "drop":
		return verdict{kind: vDrop}, nil
	case len(f) == 1 && f[0] == "return":
		return verdict{kind: vReturn}, nil
	case len(f) == 2 && f[0] == "jump":
		return verdict{kind: vJump, target: f[1]}, nil
	case len(f) == 2 && f[0] == "goto":
		return verdict{kind: vGoto, target: f[1]}, nil
	}
	return verdict{}, fmt.Errorf("unsupported verdict %q", s)
}

// fromFake reads the table knftables' Fake holds (nil: no table).
func fromFake(t *knftables.FakeTable) (*ruleset, error) {
	r := newRuleset()
	if t == nil {
		return r, nil
	}
	for name, s := range t.Sets {
		types, err := parseTypes(s.Type)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
		rs := &rsSet{name: name, types: types, interval: slices.Contains(s.Flags, knftables.IntervalFlag), exact: map[string]struct{}{}}
		for _, e := range s.Elements {
			k, err := parseKey(types, e.Key)
			if err != nil {
				return nil, fmt.Errorf("set %s: %w", name, err)
			}
			if !rs.interval && !k.point() {
				return nil, fmt.Errorf("set %s: range %s in a set without the interval flag", name, strings.Join(e.Key, " . "))
			}
			rs.add(k)
		}
		r.sets[name] = rs
	}
	for name, m := range t.Maps {
		kt, vt, ok := strings.Cut(m.Type, " : ")
		if !ok || strings.TrimSpace(vt) != "verdict" {
			return nil, fmt.Errorf("map %s: unsupported type %q (want a verdict map)", name, m.Type)
		}
		types, err := parseTypes(kt)
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", name, err)
		}
		rm := &rsMap{name: name, types: types, elems: map[string]verdict{}}
		for _, e := range m.Elements {
			k, err := parseKey(types, e.Key)
			if err != nil {
				return nil, fmt.Errorf("map %s: %w", name, err)
			}
			v, err := parseVerdict(strings.Join(e.Value, " . "))
			if err != nil {
				return nil, fmt.Errorf("map %s: %w", name, err)
			}
			if !k.point() {
				return nil, fmt.Errorf("map %s: range keys are not supported", name)
			}
			rm.elems[k.pack()] = v
			rm.keys = append(rm.keys, k)
		}
		r.maps[name] = rm
	}
	for name, c := range t.Chains {
		rc := &rsChain{name: name}
		if c.Hook != nil {
			rc.hook = string(*c.Hook)
			rc.policy = vAccept
			if c.Policy != nil && *c.Policy == knftables.DropPolicy {
				rc.policy = vDrop
			}
			if c.Priority != nil {
				p, err := knftables.ParsePriority(knftables.InetFamily, string(*c.Priority))
				if err != nil {
					return nil, fmt.Errorf("chain %s: %w", name, err)
				}
				rc.prio = p
			}
		}
		for i, rule := range c.Rules {
			pr, err := parseRuleText(rule.Rule)
			if err != nil {
				return nil, fmt.Errorf("chain %s rule %d %q: %w", name, i+1, rule.Rule, err)
			}
			if rule.Comment != nil {
				pr.comment = *rule.Comment
			}
			rc.rules = append(rc.rules, pr)
		}
		r.chains[name] = rc
	}
	return r, r.check()
}

// check finds what the kernel refuses and knftables' Fake lets through: references to chains,
// sets and maps that do not exist (a delete of an object in use), values of the wrong type,
// and overlapping elements in an interval set.
func (r *ruleset) check() error {
	chainRef := func(v verdict, where string) error {
		if (v.kind == vJump || v.kind == vGoto) && r.chains[v.target] == nil {
			return fmt.Errorf("%s: %s to a missing chain %q (deleted while in use?)", where, v, v.target)
		}
		return nil
	}
	for _, name := range sortedKeys(r.chains) {
		c := r.chains[name]
		for i, rule := range c.rules {
			where := fmt.Sprintf("chain %s rule %d", name, i+1)
			for _, e := range rule.exprs {
				if e.set == "" {
					continue
				}
				s := r.sets[e.set]
				if s == nil {
					return fmt.Errorf("%s: set %q missing (deleted while in use?)", where, e.set)
				}
				if !sameTypes(s.types, e.fields) {
					return fmt.Errorf("%s: set @%s holds other types than %s", where, e.set, fieldList(e.fields))
				}
			}
			if rule.vmap != "" {
				m := r.maps[rule.vmap]
				if m == nil {
					return fmt.Errorf("%s: map %q missing (deleted while in use?)", where, rule.vmap)
				}
				if !sameTypes(m.types, rule.vmapFields) {
					return fmt.Errorf("%s: map @%s holds other types than %s", where, rule.vmap, fieldList(rule.vmapFields))
				}
			}
			if err := chainRef(rule.verdict, where); err != nil {
				return err
			}
		}
	}
	for _, name := range sortedKeys(r.maps) {
		m := r.maps[name]
		for _, k := range m.keys {
			if err := chainRef(m.elems[k.pack()], "map "+name); err != nil {
				return err
			}
		}
	}
	for _, name := range sortedKeys(r.sets) {
		s := r.sets[name]
		if !s.interval || len(s.types) != 1 {
			continue
		}
		spans := make([]span, 0, len(s.elems))
		for _, k := range s.elems {
			spans = append(spans, k[0])
		}
		sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
		for i := 1; i < len(spans); i++ {
			if spans[i].lo <= spans[i-1].hi {
				return fmt.Errorf("set %s: conflicting intervals %s and %s", name, formatValue(s.types[0], spans[i-1]), formatValue(s.types[0], spans[i]))
			}
		}
	}
	return nil
}

func sameTypes(types []vtype, fields []field) bool {
	if len(types) != len(fields) {
		return false
	}
	for i, f := range fields {
		if f.vtype() != types[i] {
			return false
		}
	}
	return true
}

func fieldList(fs []field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = fieldNames[f]
	}
	return strings.Join(names, " . ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// tokens splits rule text into words, with braces and commas as words of their own.
func tokens(s string) []string {
	var out []string
	for _, w := range strings.Fields(s) {
		start := 0
		for i := 0; i < len(w); i++ {
			if w[i] == '{' || w[i] == '}' || w[i] == ',' {
				if i > start {
					out = append(out, w[start:i])
				}
				out = append(out, w[i:i+1])
				start = i + 1
			}
		}
		if start < len(w) {
			out = append(out, w[start:])
		}
	}
	return out
}

// parseRuleText reads a rule as this package writes it (and as nft prints the same rule).
func parseRuleText(text string) (*rsRule, error) {
	t := tokens(text)
	r := &rsRule{}
	i := 0
	next := func() (string, bool) {
		if i >= len(t) {
			return "", false
		}
		i++
		return t[i-1], true
	}
	for i < len(t) {
		w, _ := next()
		switch w {
		case "accept", "drop", "return":
			v, _ := parseVerdict(w)
			r.verdict = v
		case "jump", "goto":
			target, ok := next()
			if !ok {
				return nil, fmt.Errorf("%s without a chain", w)
			}
			r.verdict, _ = parseVerdict(w + " " + target)
		case "ct":
			if s, _ := next(); s != "state" {
				return nil, fmt.Errorf("unsupported ct match %q", s)
			}
			var states []string
			for {
				s, ok := next()
				if !ok {
					break
				}
				states = append(states, s)
				if i < len(t) && t[i] == "," {
					i++
					continue
				}
				break
			}
			v, err := parseValue(tState, strings.Join(states, ","))
			if err != nil {
				return nil, err
			}
			r.exprs = append(r.exprs, expr{fields: []field{fCTState}, vals: []key{{v}}})
		default:
			i--
			fields, implied, err := parseFields(t, &i)
			if err != nil {
				return nil, err
			}
			if i < len(t) && t[i] == "vmap" {
				i++
				m, ok := next()
				if !ok || !strings.HasPrefix(m, "@") || len(implied) > 0 {
					return nil, fmt.Errorf("unsupported vmap %q", m)
				}
				r.vmapFields, r.vmap = fields, m[1:]
				continue
			}
			e := expr{fields: fields}
			if i < len(t) && t[i] == "!=" {
				e.neg = true
				i++
			}
			if err := parseRight(t, &i, &e); err != nil {
				return nil, err
			}
			r.exprs = append(r.exprs, implied...)
			r.exprs = append(r.exprs, e)
		}
	}
	return r, nil
}

// parseFields reads a concatenation of fields. `tcp dport` (nft's short form) reads as
// `th dport` after an implied `meta l4proto tcp`, returned in implied.
func parseFields(t []string, i *int) ([]field, []expr, error) {
	var fields []field
	var implied []expr
	for {
		if *i+1 >= len(t) {
			return nil, nil, fmt.Errorf("unexpected end of rule")
		}
		a, b := t[*i], t[*i+1]
		*i += 2
		switch {
		case a == "ip" && b == "saddr":
			fields = append(fields, fSaddr)
		case a == "ip" && b == "daddr":
			fields = append(fields, fDaddr)
		case a == "meta" && b == "l4proto":
			fields = append(fields, fL4Proto)
		case a == "th" && b == "dport":
			fields = append(fields, fDport)
		case (a == "tcp" || a == "udp" || a == "sctp") && b == "dport":
			p, _ := parseValue(tProto, a)
			implied = append(implied, expr{fields: []field{fL4Proto}, vals: []key{{p}}})
			fields = append(fields, fDport)
		default:
			return nil, nil, fmt.Errorf("unsupported expression %q", a+" "+b)
		}
		if *i < len(t) && t[*i] == "." {
			*i++
			continue
		}
		return fields, implied, nil
	}
}

// parseRight reads what fields are compared with: @set, { elements }, or one literal.
func parseRight(t []string, i *int, e *expr) error {
	if *i >= len(t) {
		return fmt.Errorf("%s compared with nothing", fieldList(e.fields))
	}
	types := make([]vtype, len(e.fields))
	for j, f := range e.fields {
		types[j] = f.vtype()
	}
	readKey := func() (key, error) {
		var parts []string
		for {
			if *i >= len(t) {
				return nil, fmt.Errorf("unexpected end of rule")
			}
			parts = append(parts, t[*i])
			*i++
			if *i < len(t) && t[*i] == "." {
				*i++
				continue
			}
			return parseKey(types, parts)
		}
	}
	w := t[*i]
	switch {
	case strings.HasPrefix(w, "@"):
		e.set = w[1:]
		*i++
	case w == "{":
		*i++
		for {
			k, err := readKey()
			if err != nil {
				return err
			}
			e.vals = append(e.vals, k)
			if *i >= len(t) {
				return fmt.Errorf("unclosed anonymous set")
			}
			sep := t[*i]
			*i++
			if sep == "}" {
				break
			}
			if sep != "," {
				return fmt.Errorf("unexpected %q in anonymous set", sep)
			}
		}
	default:
		k, err := readKey()
		if err != nil {
			return err
		}
		e.vals = []key{k}
	}
	return nil
}

// canonical renders the ruleset so that two equal tables render equally however they were
// written: chains, sets and maps by name, elements sorted, adjacent spans of one-value
// interval sets merged, handles left out.
func (r *ruleset) canonical() string {
	var b strings.Builder
	for _, name := range sortedKeys(r.chains) {
		c := r.chains[name]
		fmt.Fprintf(&b, "chain %s", name)
		if c.hook != "" {
			fmt.Fprintf(&b, " { hook %s priority %d policy %s }", c.hook, c.prio, verdict{kind: c.policy})
		}
		b.WriteByte('\n')
		for _, rule := range c.rules {
			b.WriteString("\t" + rule.String() + "\n")
		}
	}
	for _, name := range sortedKeys(r.sets) {
		s := r.sets[name]
		fmt.Fprintf(&b, "set %s { type %s", name, typeList(s.types))
		if s.interval {
			b.WriteString(" interval")
		}
		b.WriteString(" }\n")
		for _, e := range canonicalElems(s.types, s.elems, s.interval) {
			b.WriteString("\t" + e + "\n")
		}
	}
	for _, name := range sortedKeys(r.maps) {
		m := r.maps[name]
		fmt.Fprintf(&b, "map %s { type %s : verdict }\n", name, typeList(m.types))
		lines := make([]string, 0, len(m.keys))
		for _, k := range m.keys {
			lines = append(lines, formatKey(m.types, k)+" : "+m.elems[k.pack()].String())
		}
		sort.Strings(lines)
		for _, l := range lines {
			b.WriteString("\t" + l + "\n")
		}
	}
	return b.String()
}

func typeList(ts []vtype) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		for n, tt := range typeNames {
			if tt == t {
				names[i] = n
			}
		}
	}
	return strings.Join(names, " . ")
}

func formatKey(types []vtype, k key) string {
	parts := make([]string, len(k))
	for i, s := range k {
		parts[i] = formatValue(types[i], s)
	}
	return strings.Join(parts, " . ")
}

// canonicalElems sorts elements by value and merges touching spans of one-value sets.
func canonicalElems(types []vtype, elems []key, merge bool) []string {
	ks := slices.Clone(elems)
	slices.SortFunc(ks, func(a, b key) int {
		for i := range a {
			if a[i].lo != b[i].lo {
				if a[i].lo < b[i].lo {
					return -1
				}
				return 1
			}
			if a[i].hi != b[i].hi {
				if a[i].hi < b[i].hi {
					return -1
				}
				return 1
			}
		}
		return 0
	})
	if merge && len(types) == 1 {
		var out []key
		for _, k := range ks {
			if n := len(out); n > 0 && uint64(out[n-1][0].hi)+1 >= uint64(k[0].lo) {
				out[n-1] = key{{out[n-1][0].lo, max(out[n-1][0].hi, k[0].hi)}}
				continue
			}
			out = append(out, key{k[0]})
		}
		ks = out
	}
	lines := make([]string, len(ks))
	for i, k := range ks {
		lines[i] = formatKey(types, k)
	}
	return lines
}

func (r *rsRule) String() string {
	var parts []string
	for _, e := range r.exprs {
		s := fieldList(e.fields)
		if e.neg {
			s += " !="
		}
		types := make([]vtype, len(e.fields))
		for j, f := range e.fields {
			types[j] = f.vtype()
		}
		switch {
		case e.set != "":
			s += " @" + e.set
		case len(e.vals) == 1:
			s += " " + formatKey(types, e.vals[0])
		default:
			s += " { " + strings.Join(canonicalElems(types, e.vals, true), ", ") + " }"
		}
		parts = append(parts, s)
	}
	if r.vmap != "" {
		parts = append(parts, fieldList(r.vmapFields)+" vmap @"+r.vmap)
	}
	if v := r.verdict.String(); v != "" {
		parts = append(parts, v)
	}
	if r.comment != "" {
		parts = append(parts, "comment "+strconv.Quote(r.comment))
	}
	return strings.Join(parts, " ")
}
