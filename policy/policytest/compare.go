package policytest

import (
	"fmt"
	"sort"
	"strings"

	"netpolbench/policy"
)

// Mismatch is a probe on which a backend disagrees with the reference.
type Mismatch struct {
	Probe     Probe
	Want, Got policy.Verdict
}

// Table is a backend's verdicts on a grid of probes next to the reference's.
type Table struct {
	Backend    string
	Probes     []Probe
	Want, Got  []policy.Verdict
	Mismatches []Mismatch
}

// NewTable evaluates probes with the reference evaluator and with got.
func NewTable(backend string, c *policy.Cluster, probes []Probe, got func(policy.Flow) (policy.Verdict, error)) (*Table, error) {
	t := &Table{Backend: backend, Probes: probes}
	for _, p := range probes {
		want, _ := c.Evaluate(p.Flow())
		g, err := got(p.Flow())
		if err != nil {
			return nil, fmt.Errorf("%s: probe %s: %w", backend, p, err)
		}
		t.Want = append(t.Want, want)
		t.Got = append(t.Got, g)
		if g != want {
			t.Mismatches = append(t.Mismatches, Mismatch{p, want, g})
		}
	}
	return t, nil
}

func (p Probe) String() string {
	if p.Proto == policy.ProtoICMP {
		return fmt.Sprintf("%s -> %s icmp", p.From, p.To)
	}
	return fmt.Sprintf("%s -> %s %s/%d", p.From, p.To, strings.ToLower(p.Proto.String()), p.Port)
}

// Report renders the disagreement: agree/disagree counts per protocol and, per protocol and
// port, a from × to matrix where '.' is allow, 'X' is deny, and a disagreeing cell shows the
// backend's verdict in brackets (e.g. "[.]": the backend allowed what the reference denies).
func (t *Table) Report() string {
	var b strings.Builder
	type key struct {
		proto policy.Protocol
		port  uint16
	}
	agree := map[policy.Protocol][2]int{}
	cells := map[key]map[[2]Endpoint]int{}
	var keys []key
	var froms, tos []Endpoint
	seenFrom, seenTo := map[Endpoint]bool{}, map[Endpoint]bool{}
	for i, p := range t.Probes {
		a := agree[p.Proto]
		if t.Want[i] == t.Got[i] {
			a[0]++
		} else {
			a[1]++
		}
		agree[p.Proto] = a
		k := key{p.Proto, p.Port}
		if cells[k] == nil {
			cells[k] = map[[2]Endpoint]int{}
			keys = append(keys, k)
		}
		cells[k][[2]Endpoint{p.From, p.To}] = i
		if !seenFrom[p.From] {
			seenFrom[p.From] = true
			froms = append(froms, p.From)
		}
		if !seenTo[p.To] {
			seenTo[p.To] = true
			tos = append(tos, p.To)
		}
	}
	fmt.Fprintf(&b, "backend %s: %d of %d probes disagree with the reference\n", t.Backend, len(t.Mismatches), len(t.Probes))
	protos := make([]policy.Protocol, 0, len(agree))
	for p := range agree {
		protos = append(protos, p)
	}
	sort.Slice(protos, func(i, j int) bool { return protos[i] < protos[j] })
	for _, p := range protos {
		fmt.Fprintf(&b, "  %-5s agree %d, disagree %d\n", p, agree[p][0], agree[p][1])
	}
	mark := func(v policy.Verdict) string {
		if v == policy.Allow {
			return "."
		}
		return "X"
	}
	for _, k := range keys {
		bad := false
		for _, i := range cells[k] {
			if t.Want[i] != t.Got[i] {
				bad = true
			}
		}
		if !bad {
			continue
		}
		fmt.Fprintf(&b, "\n%s port %d (rows from, columns to; . allow, X deny, [v] = backend's differing verdict)\n", k.proto, k.port)
		fmt.Fprintf(&b, "%-15s", "")
		for _, to := range tos {
			fmt.Fprintf(&b, " %-5s", short(to))
		}
		b.WriteByte('\n')
		for _, from := range froms {
			fmt.Fprintf(&b, "%-15s", from)
			for _, to := range tos {
				i, ok := cells[k][[2]Endpoint{from, to}]
				switch {
				case !ok:
					fmt.Fprintf(&b, " %-5s", "")
				case t.Want[i] != t.Got[i]:
					fmt.Fprintf(&b, " %-5s", "["+mark(t.Got[i])+"]")
				default:
					fmt.Fprintf(&b, " %-5s", mark(t.Want[i]))
				}
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func short(e Endpoint) string {
	s := string(e)
	if i := strings.LastIndex(s, "."); i >= 0 && !strings.Contains(s, "/") {
		return "." + s[i+1:]
	}
	return s
}
