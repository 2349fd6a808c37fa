package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Canonical renders what enforcement depends on, independent of how identities, endpoints and
// rule sets happen to be numbered: per pod, in key order, its address and its identity's
// labels, then each direction's entries (or allow-all) with every peer named by its labels
// (a CIDR identity by its prefix). Two states enforce the same thing exactly when their
// renderings are equal, so a state kept current by Apply renders as a fresh compile of the
// same cluster does.
func (s *State) Canonical() string {
	name := func(id Identity) string {
		if info, ok := s.Identity(id); ok {
			return "{" + strings.Join(info.Labels, ",") + "}"
		}
		return id.String()
	}
	var b strings.Builder
	eps := s.Endpoints()
	slices.SortFunc(eps, func(a, b *Endpoint) int { return cmp.Compare(a.Pod.Key(), b.Pod.Key()) })
	var lines []string
	for _, ep := range eps {
		fmt.Fprintf(&b, "%s %s %s\n", ep.Pod.Key(), ep.Pod.IP, name(ep.Identity))
		for _, set := range []RuleSetID{ep.Ingress, ep.Egress} {
			if set == RuleSetAllowAll {
				b.WriteString("  allow-all\n")
				continue
			}
			rs, ok := s.RuleSet(set)
			if !ok {
				fmt.Fprintf(&b, "  missing rule set %d\n", set)
				continue
			}
			lines = lines[:0]
			for _, e := range rs.Entries {
				peer := e.Peer
				e.Peer = IdentityAny
				lines = append(lines, name(peer)+" "+e.String())
			}
			slices.Sort(lines)
			fmt.Fprintf(&b, "  %s %s\n", rs.Direction, strings.Join(lines, "; "))
		}
	}
	return b.String()
}
