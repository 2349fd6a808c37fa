package iptables

import (
	"fmt"
	"net/netip"
	"slices"

	"netpolbench/policy"
)

// maxTraceSteps bounds a trace, so a loop between chains is an error instead of a hang.
const maxTraceSteps = 50_000_000

// Trace decides a flow with the fake's filter table the way the kernel would for the flow's
// first packet: it starts in FORWARD, conntrack sees the packet as NEW, comments are ignored.
// It returns the verdict and the rules that decided, as "CHAIN#n" (1-based) in walk order.
func (f *Fake) Trace(fl policy.Flow) (policy.Verdict, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	type frame struct {
		chain string
		pos   int
	}
	var stack []frame
	chain, pos := "FORWARD", 0
	var path []string
	for steps := 0; steps < maxTraceSteps; steps++ {
		c := f.filter.chains[chain]
		if c == nil {
			return policy.Deny, path, fmt.Errorf("trace %s: chain %s missing", fl, chain)
		}
		if pos >= len(c.rules) {
			if c.builtin {
				return verdictOf(c.policy), append(path, chain+":policy"), nil
			}
			if len(stack) == 0 {
				return policy.Deny, path, fmt.Errorf("trace %s: fell off user chain %s", fl, chain)
			}
			chain, pos = stack[len(stack)-1].chain, stack[len(stack)-1].pos
			stack = stack[:len(stack)-1]
			continue
		}
		r := c.rules[pos]
		pos++
		ok, err := f.matches(r, fl)
		if err != nil {
			return policy.Deny, path, fmt.Errorf("trace %s: %s#%d: %w", fl, chain, pos, err)
		}
		if !ok || r.Target == "" {
			continue
		}
		path = append(path, fmt.Sprintf("%s#%d", chain, pos))
		switch r.Target {
		case "ACCEPT":
			return policy.Allow, path, nil
		case "DROP", "REJECT":
			return policy.Deny, path, nil
		case "RETURN":
			if c.builtin {
				return verdictOf(c.policy), append(path, chain+":policy"), nil
			}
			if len(stack) == 0 {
				return policy.Deny, path, fmt.Errorf("trace %s: RETURN with an empty stack in %s", fl, chain)
			}
			chain, pos = stack[len(stack)-1].chain, stack[len(stack)-1].pos
			stack = stack[:len(stack)-1]
		default:
			if !r.Goto {
				stack = append(stack, frame{chain, pos})
			}
			chain, pos = r.Target, 0
		}
	}
	return policy.Deny, path, fmt.Errorf("trace %s: more than %d steps (a loop?)", fl, maxTraceSteps)
}

func verdictOf(p string) policy.Verdict {
	if p == "ACCEPT" {
		return policy.Allow
	}
	return policy.Deny
}

func (f *Fake) matches(r *Rule, fl policy.Flow) (bool, error) {
	if r.Src.IsValid() && r.Src.Contains(fl.Src) == r.SrcNeg {
		return false, nil
	}
	if r.Dst.IsValid() && r.Dst.Contains(fl.Dst) == r.DstNeg {
		return false, nil
	}
	if r.HasProto && r.Proto != fl.Proto {
		return false, nil
	}
	for _, m := range r.Matches {
		var ok bool
		switch m.Name {
		case "comment":
			continue
		case "tcp", "udp", "sctp", "multiport":
			if fl.Proto != policy.ProtoTCP && fl.Proto != policy.ProtoUDP && fl.Proto != policy.ProtoSCTP {
				ok = false
				break
			}
			for _, p := range m.Ports {
				if fl.Port >= p[0] && fl.Port <= p[1] {
					ok = true
				}
			}
		case "conntrack", "state":
			ok = slices.Contains(m.States, "NEW")
		case "set":
			s := f.sets[m.Set]
			if s == nil {
				return false, fmt.Errorf("set %s missing", m.Set)
			}
			addr := func(dir string) netip.Addr {
				if dir == "src" {
					return fl.Src
				}
				return fl.Dst
			}
			switch s.typ {
			case "hash:ip", "hash:net":
				ok = s.containsAddr(addr(m.SetDirs[0]))
			case "hash:ip,port":
				if m.SetDirs[1] != "dst" {
					return false, fmt.Errorf("set %s: source ports are not traced", m.Set)
				}
				ok = s.ipPorts[ipPort{addr(m.SetDirs[0]), fl.Proto, fl.Port}]
			}
		default:
			return false, fmt.Errorf("match %s not traced", m.Name)
		}
		if ok == m.Neg {
			return false, nil
		}
	}
	return true, nil
}
