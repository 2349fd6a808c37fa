package policy

// epState is an endpoint with the identity and rule sets it holds.
type epState struct {
	Endpoint
	id   *identity
	sets [2]*ruleSet // nil: allow-all
	// sig is the pod's port signature (portSignature), which a rule set's
	// origin holds when an ingress rule uses a named port.
	sig   string
	group *epGroup
	gi    int // index in group.eps
	// touched is the epoch of the last event that recorded the endpoint in its delta.
	touched uint32
	removed bool
}

// epGroup is the endpoints of one identity with one port signature: they share their rule
// sets (see identity.groups).
type epGroup struct {
	sig  string
	sets [2]*ruleSet // every endpoint's sets
	eps  []*epState
}

func (c *Compiler) addEndpoint(pod *Pod, id *identity) {
	ep := &epState{Endpoint: Endpoint{ID: c.nextEP, Pod: pod}, sig: portSignature(pod)}
	c.nextEP++
	if c.d != nil {
		c.d.touch(ep, true)
	}
	c.joinIdentity(ep, id)
	c.setEndpointSets(ep)
	c.eps[pod.Key()] = ep
	c.epByID[ep.ID] = ep
	c.epByIP[pod.IP] = ep
}

// setEndpointSets gives an endpoint the rule sets of its identity's selecting policies and
// puts it in its identity's group for them.
func (c *Compiler) setEndpointSets(ep *epState) {
	for dir := range 2 {
		sel := ep.id.sel[dir]
		ep.sets[dir] = c.acquireOrigin(Direction(dir), sel, ep.Pod, origin(Direction(dir), sel, ep.sig))
	}
	ep.Ingress, ep.Egress = setID(ep.sets[Ingress]), setID(ep.sets[Egress])
	ep.id.addToGroup(ep)
}

// addToGroup puts an endpoint whose rule sets are set in the group of its port signature.
func (id *identity) addToGroup(ep *epState) {
	g := id.groups[ep.sig]
	if g == nil {
		g = &epGroup{sig: ep.sig, sets: ep.sets}
		id.groups[ep.sig] = g
	}
	ep.group, ep.gi = g, len(g.eps)
	g.eps = append(g.eps, ep)
}

// leaveGroup takes an endpoint out of its group.
func (id *identity) leaveGroup(ep *epState) {
	g := ep.group
	last := g.eps[len(g.eps)-1]
	g.eps[ep.gi], last.gi = last, ep.gi
	g.eps[len(g.eps)-1] = nil
	g.eps = g.eps[:len(g.eps)-1]
	if len(g.eps) == 0 {
		delete(id.groups, g.sig)
	}
	ep.group = nil
}

func (c *Compiler) removeEndpoint(ep *epState) {
	c.d.touch(ep, false)
	ep.id.leaveGroup(ep)
	ep.removed = true
	for dir := range 2 {
		c.releaseSet(ep.sets[dir], 1)
	}
	delete(c.eps, ep.Pod.Key())
	delete(c.epByID, ep.ID)
	delete(c.epByIP, ep.Pod.IP)
	c.leaveIdentity(ep.id, ep)
}

func (c *Compiler) joinIdentity(ep *epState, id *identity) {
	ep.id = id
	ep.Identity = id.info.ID
	id.members[ep.Pod.IP] = struct{}{}
	id.info.Refs++
	if c.d != nil {
		c.d.members[Member{id.info.ID, ep.Pod.IP}]++
	}
}

func (c *Compiler) leaveIdentity(id *identity, ep *epState) {
	delete(id.members, ep.Pod.IP)
	id.info.Refs--
	c.d.members[Member{id.info.ID, ep.Pod.IP}]--
	c.releaseIdentity(id)
}

func (c *Compiler) relabel(ep *epState, lbls map[string]string) error {
	pod := *ep.Pod
	pod.Labels = copyLabels(lbls)
	newID, err := c.acquireIdentity(&pod)
	if err != nil {
		return err
	}
	ep.Pod.Labels = pod.Labels
	if newID == ep.id {
		// Only labels outside the identity changed: selectors cannot tell.
		return nil
	}
	c.d.touch(ep, false)
	oldID, oldSets := ep.id, ep.sets
	oldID.leaveGroup(ep)
	c.joinIdentity(ep, newID)
	c.setEndpointSets(ep)
	for dir := range 2 {
		c.releaseSet(oldSets[dir], 1)
	}
	c.leaveIdentity(oldID, ep)
	return nil
}
