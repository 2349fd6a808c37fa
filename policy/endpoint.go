package policy

// RuleSet returns the endpoint's rule set of a direction (RuleSetAllowAll when no policy
// isolates it there).
func (ep *Endpoint) RuleSet(dir Direction) RuleSetID {
	if dir == Egress {
		return ep.Egress
	}
	return ep.Ingress
}

// Touched returns the endpoints d added or changed, as s holds them now: backends write
// their current rule sets and addresses, not those of the delta's moment.
func (d *Delta) Touched(s *State) []*Endpoint {
	out := make([]*Endpoint, 0, len(d.EndpointsAdded)+len(d.EndpointsChanged))
	for _, list := range [][]Endpoint{d.EndpointsAdded, d.EndpointsChanged} {
		for i := range list {
			ep := &list[i]
			if cur, ok := s.Endpoint(ep.ID); ok {
				ep = cur
			}
			out = append(out, ep)
		}
	}
	return out
}
