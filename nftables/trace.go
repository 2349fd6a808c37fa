package nftables

import (
	"fmt"
	"sort"

	"netpolbench/policy"
)

// maxTraceSteps bounds a trace, so a loop between chains is an error instead of a hang.
const maxTraceSteps = 1_000_000

// packet is what a trace matches on: the first packet of the flow, conntrack state new.
type packet struct {
	vals map[field]uint32
}

func packetOf(fl policy.Flow) (packet, error) {
	if !fl.Src.Is4() || !fl.Dst.Is4() {
		return packet{}, fmt.Errorf("trace %s: only IPv4 flows are traced", fl)
	}
	return packet{vals: map[field]uint32{
		fSaddr:   addrNum(fl.Src),
		fDaddr:   addrNum(fl.Dst),
		fL4Proto: uint32(fl.Proto),
		// ICMP has no port: th dport would read its checksum, and every rule that looks at the
		// port also asks for a protocol with ports, so 0 decides the same.
		fDport:   uint32(fl.Port),
		fCTState: ctStates["new"],
	}}, nil
}

func (p packet) get(fs []field) []uint32 {
	v := make([]uint32, len(fs))
	for i, f := range fs {
		v[i] = p.vals[f]
	}
	return v
}

func (r *ruleset) matches(e expr, p packet) (bool, error) {
	v := p.get(e.fields)
	var in bool
	switch {
	case e.fields[0] == fCTState:
		// ct state matches when the packet's state is one of the listed ones.
		in = v[0]&e.vals[0][0].lo != 0
	case e.set != "":
		s := r.sets[e.set]
		if s == nil {
			return false, fmt.Errorf("set @%s missing", e.set)
		}
		in = s.contains(v)
	default:
		for _, k := range e.vals {
			if k.contains(v) {
				in = true
				break
			}
		}
	}
	return in != e.neg, nil
}

// trace decides a flow the way the kernel's forward hook would for its first packet: base
// chains in priority order, rules in order, jump and goto, verdict maps (a miss goes on), an
// implicit return at the end of a regular chain and the base chain's policy at the end of a
// base chain. It returns the verdict and the rules that decided, as "chain#n" (1-based) in
// walk order, with the map element a verdict map found.
func (r *ruleset) trace(fl policy.Flow) (policy.Verdict, []string, error) {
	p, err := packetOf(fl)
	if err != nil {
		return policy.Deny, nil, err
	}
	var bases []*rsChain
	for _, c := range r.chains {
		if c.hook == "forward" {
			bases = append(bases, c)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i].prio < bases[j].prio })
	var path []string
	steps := 0
	for _, base := range bases {
		v, sub, err := r.walk(base, p, &steps)
		path = append(path, sub...)
		if err != nil {
			return policy.Deny, path, fmt.Errorf("trace %s: %w", fl, err)
		}
		if v == vDrop {
			return policy.Deny, path, nil
		}
	}
	return policy.Allow, path, nil
}

// walk runs one base chain and returns accept or drop.
func (r *ruleset) walk(base *rsChain, p packet, steps *int) (verdictKind, []string, error) {
	type frame struct {
		chain *rsChain
		pos   int
	}
	var stack []frame
	chain, pos := base, 0
	var path []string
	for ; *steps < maxTraceSteps; *steps++ {
		if pos >= len(chain.rules) {
			if len(stack) == 0 {
				return base.policy, append(path, chain.name+":policy "+verdict{kind: base.policy}.String()), nil
			}
			chain, pos = stack[len(stack)-1].chain, stack[len(stack)-1].pos
			stack = stack[:len(stack)-1]
			continue
		}
		rule := chain.rules[pos]
		pos++
		ok := true
		for _, e := range rule.exprs {
			m, err := r.matches(e, p)
			if err != nil {
				return vDrop, path, fmt.Errorf("%s#%d: %w", chain.name, pos, err)
			}
			if !m {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		v := rule.verdict
		where := fmt.Sprintf("%s#%d", chain.name, pos)
		if rule.vmap != "" {
			m := r.maps[rule.vmap]
			if m == nil {
				return vDrop, path, fmt.Errorf("%s: map @%s missing", where, rule.vmap)
			}
			k := p.get(rule.vmapFields)
			found, hit := m.elems[packPoint(k)]
			if !hit {
				continue
			}
			v = found
			where += fmt.Sprintf(" @%s[%s]", rule.vmap, formatKey(m.types, pointKey(k)))
		}
		if v.kind == vNone {
			continue
		}
		path = append(path, where+" "+v.String())
		switch v.kind {
		case vAccept, vDrop:
			return v.kind, path, nil
		case vReturn:
			if len(stack) == 0 {
				return base.policy, append(path, chain.name+":policy "+verdict{kind: base.policy}.String()), nil
			}
			chain, pos = stack[len(stack)-1].chain, stack[len(stack)-1].pos
			stack = stack[:len(stack)-1]
		case vJump, vGoto:
			next := r.chains[v.target]
			if next == nil {
				return vDrop, path, fmt.Errorf("%s: chain %s missing", where, v.target)
			}
			if v.kind == vJump {
				stack = append(stack, frame{chain, pos})
			}
			chain, pos = next, 0
		}
	}
	return vDrop, path, fmt.Errorf("more than %d steps (a loop?)", maxTraceSteps)
}

func pointKey(v []uint32) key {
	k := make(key, len(v))
	for i, x := range v {
		k[i] = span{x, x}
	}
	return k
}
