package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"netpolbench/policy"
)

// Rule is one parsed iptables rule of the subset this package writes (and iptables-save prints
// back): address, protocol, port, set, conntrack and comment matches and a jump, goto or
// verdict.
type Rule struct {
	Src, Dst       netip.Prefix // zero when absent
	SrcNeg, DstNeg bool
	Proto          policy.Protocol
	HasProto       bool
	// Matches are the -m modules in order.
	Matches []Match
	// Target is ACCEPT, DROP, REJECT, RETURN or a chain; empty for a rule without one.
	Target string
	Goto   bool
}

// Match is one -m module with its options.
type Match struct {
	Name string
	// Neg negates the module's main option (! --dport, ! --match-set).
	Neg bool
	// Ports is the --dport range (tcp, udp, sctp) or --dports list (multiport).
	Ports [][2]uint16
	// States is the --ctstate / --state list.
	States []string
	// Comment is the --comment text.
	Comment string
	// Set and SetDirs are the --match-set name and its src/dst flags.
	Set     string
	SetDirs []string
}

// parseRule parses the rule part of an -A/-I/-D command.
func parseRule(tok []string) (*Rule, error) {
	r := &Rule{}
	neg := false
	var cur *Match
	need := func(i int) (string, error) {
		if i+1 >= len(tok) {
			return "", fmt.Errorf("option %s needs an argument", tok[i])
		}
		return tok[i+1], nil
	}
	for i := 0; i < len(tok); i++ {
		t := tok[i]
		if t == "!" {
			neg = true
			continue
		}
		switch t {
		case "-s", "--source", "-d", "--destination":
			v, err := need(i)
			if err != nil {
				return nil, err
			}
			i++
			p, err := parsePrefix(v)
			if err != nil {
				return nil, err
			}
			if t == "-s" || t == "--source" {
				r.Src, r.SrcNeg = p, neg
			} else {
				r.Dst, r.DstNeg = p, neg
			}
		case "-p", "--protocol":
			v, err := need(i)
			if err != nil {
				return nil, err
			}
			i++
			if neg {
				return nil, errors.New("negated protocol not supported")
			}
			if v == "all" || v == "0" {
				continue
			}
			pr, err := parseProto(v)
			if err != nil {
				return nil, err
			}
			r.Proto, r.HasProto = pr, true
		case "-m", "--match":
			v, err := need(i)
			if err != nil {
				return nil, err
			}
			i++
			switch v {
			case "tcp", "udp", "sctp", "multiport", "conntrack", "state", "comment", "set":
			default:
				return nil, fmt.Errorf("match %q not supported", v)
			}
			r.Matches = append(r.Matches, Match{Name: v})
			cur = &r.Matches[len(r.Matches)-1]
		case "--dport", "--destination-port", "--dports", "--destination-ports":
			v, err := need(i)
			if err != nil {
				return nil, err
			}
			i++
			if cur == nil || (cur.Name != "tcp" && cur.Name != "udp" && cur.Name != "sctp" && cur.Name != "multiport") {
				return nil, fmt.Errorf("%s without -m tcp, udp, sctp or multiport", t)
			}
			if cur.Name != "multiport" && (!r.HasProto || protoName(r.Proto) != cur.Name) {
				return nil, fmt.Errorf("-m %s needs -p %s", cur.Name, cur.Name)
			}
			for _, part := range strings.Split(v, ",") {
				lo, hi, err := parsePortRange(part)
				if err != nil {
					return nil, err
				}
				cur.Ports = append(cur.Ports, [2]uint16{lo, hi})
			}
			cur.Neg = neg
		case "--ctstate", "--state":
			v, err := need(i)
			if err != nil {
				return nil, err
			}
			i++
			if cur == nil || (cur.Name != "conntrack" && cur.Name != "state") {
				return nil, fmt.Errorf("%s without -m conntrack", t)
			}
			cur.States = strings.Split(v, ",")
			cur.Neg = neg
		case "--comment":
			v, err := need(i)
			if err != nil {
				return nil, err
			}
			i++
			if cur == nil || cur.Name != "comment" {
				return nil, errors.New("--comment without -m comment")
			}
			if len(v) > maxComment {
				return nil, fmt.Errorf("comment longer than %d characters", maxComment)
			}
			cur.Comment = v
		case "--match-set":
			if i+2 >= len(tok) {
				return nil, errors.New("--match-set needs a set name and flags")
			}
			if cur == nil || cur.Name != "set" {
				return nil, errors.New("--match-set without -m set")
			}
			cur.Set, cur.SetDirs, cur.Neg = tok[i+1], strings.Split(tok[i+2], ","), neg
			for _, d := range cur.SetDirs {
				if d != "src" && d != "dst" {
					return nil, fmt.Errorf("set flag %q (want src or dst)", d)
				}
			}
			i += 2
		case "-j", "--jump", "-g", "--goto":
			v, err := need(i)
			if err != nil {
				return nil, err
			}
			i++
			r.Target, r.Goto = v, t == "-g" || t == "--goto"
		default:
			return nil, fmt.Errorf("option %q not supported", t)
		}
		if t != "!" {
			neg = false
		}
	}
	return r, nil
}

func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q: %w", v, err)
		}
		if !p.Addr().Is4() {
			return netip.Prefix{}, fmt.Errorf("address %q is not IPv4", v)
		}
		if p.Bits() == 0 {
			return netip.Prefix{}, nil // iptables drops 0.0.0.0/0: it matches everything
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad IPv4 address %q", v)
	}
	return netip.PrefixFrom(a, 32), nil
}

func parseProto(v string) (policy.Protocol, error) {
	switch strings.ToLower(v) {
	case "tcp":
		return policy.ProtoTCP, nil
	case "udp":
		return policy.ProtoUDP, nil
	case "sctp":
		return policy.ProtoSCTP, nil
	case "icmp":
		return policy.ProtoICMP, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("unknown protocol %q", v)
	}
	return policy.Protocol(n), nil
}

func parsePortRange(v string) (uint16, uint16, error) {
	lo, hi, rng := strings.Cut(v, ":")
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("bad port %q", v)
	}
	b := a
	if rng {
		if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
			return 0, 0, fmt.Errorf("bad port range %q", v)
		}
	}
	return uint16(a), uint16(b), nil
}

// String renders the rule the way iptables-save does: addresses, then -p, then the modules in
// order, then the target.
func (r *Rule) String() string {
	var b []string
	addr := func(flag string, p netip.Prefix, neg bool) {
		if !p.IsValid() {
			return
		}
		if neg {
			b = append(b, "!")
		}
		b = append(b, flag, p.String())
	}
	addr("-s", r.Src, r.SrcNeg)
	addr("-d", r.Dst, r.DstNeg)
	if r.HasProto {
		b = append(b, "-p", protoName(r.Proto))
	}
	for _, m := range r.Matches {
		b = append(b, "-m", m.Name)
		if m.Neg {
			b = append(b, "!")
		}
		switch m.Name {
		case "tcp", "udp", "sctp":
			b = append(b, "--dport", portRange(m.Ports[0][0], m.Ports[0][1]))
		case "multiport":
			ps := make([]string, len(m.Ports))
			for i, p := range m.Ports {
				ps[i] = portRange(p[0], p[1])
			}
			b = append(b, "--dports", strings.Join(ps, ","))
		case "conntrack":
			b = append(b, "--ctstate", canonicalStates(m.States))
		case "state":
			b = append(b, "--state", canonicalStates(m.States))
		case "comment":
			b = append(b, "--comment", `"`+m.Comment+`"`)
		case "set":
			b = append(b, "--match-set", m.Set, strings.Join(m.SetDirs, ","))
		}
	}
	if r.Target != "" {
		if r.Goto {
			b = append(b, "-g", r.Target)
		} else {
			b = append(b, "-j", r.Target)
		}
	}
	return strings.Join(b, " ")
}

// canonicalStates orders conntrack states as the kernel module prints them.
func canonicalStates(s []string) string {
	order := []string{"INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT"}
	have := map[string]bool{}
	for _, v := range s {
		have[strings.ToUpper(v)] = true
	}
	var out []string
	for _, o := range order {
		if have[o] {
			out = append(out, o)
		}
	}
	return strings.Join(out, ",")
}

// tokenize splits a restore line on blanks, honouring double quotes as iptables-restore does.
func tokenize(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(line) && line[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"':
			inQuote = !inQuote
			have = true
		case (c == ' ' || c == '\t') && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, errors.New("unterminated quote")
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}
