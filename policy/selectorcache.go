package policy

import (
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

type peerRef struct {
	cp   *compiledPolicy
	dir  Direction
	rule *compiledRule
}

// computePeers fills peerIDs for a policy's peers.
func (c *Compiler) computePeers(cp *compiledPolicy) {
	for dir := range 2 {
		for _, r := range cp.rules[dir] {
			for _, pe := range r.peers {
				c.peerIDs[pe] = c.matchPeer(cp, pe)
				switch {
				case pe.ipBlock:
					c.ipBlocks[pe] = peerRef{cp, Direction(dir), r}
				case pe.nsSel != nil:
					ref := peerRef{cp, Direction(dir), r}
					c.nsPeers[pe] = ref
					for ns, in := range c.nsPeersIn {
						if pe.nsSel.Matches(labels.Set(c.namespaceLabels(ns))) {
							in[pe] = ref
						}
					}
				}
			}
		}
	}
}

func (c *Compiler) matchPeer(cp *compiledPolicy, pe *compiledPeer) *idList {
	var m idList
	if pe.ipBlock {
		for p, id := range c.alloc.cidrs {
			if pe.selectsPrefix(p) {
				m = append(m, id.info.ID)
			}
		}
		slices.Sort(m)
		return &m
	}
	// Namespaces first: a namespace selector is checked once per namespace, not per identity.
	for ns, ids := range c.alloc.byNS {
		for id := range ids {
			if pe.nsSel == nil && ns != cp.ns || pe.nsSel != nil && !pe.nsSel.Matches(labels.Set(id.info.NamespaceLabels)) {
				break // every identity of a namespace has its labels
			}
			if pe.podSel == nil || pe.podSel.Matches(labels.Set(id.info.PodLabels)) {
				m = append(m, id.info.ID)
			}
		}
	}
	slices.Sort(m)
	return &m
}

func (c *Compiler) dropPeers(cp *compiledPolicy) {
	for dir := range 2 {
		for _, r := range cp.rules[dir] {
			for _, pe := range r.peers {
				delete(c.peerIDs, pe)
				delete(c.ipBlocks, pe)
				delete(c.nsPeers, pe)
				for _, in := range c.nsPeersIn {
					delete(in, pe)
				}
			}
		}
	}
}

// eachPeerOfNamespace calls fn for every selector peer whose namespace part selects the pods of
// ns, leaving fn to check the pod selector: the peers without a namespace selector of the
// namespace's own policies, and the peers whose namespace selector matches ns. No other peer
// can select an identity of ns.
func (c *Compiler) eachPeerOfNamespace(ns string, fn func(*compiledPeer, peerRef)) {
	for _, cp := range c.cluster.byNS[ns] {
		for dir := range 2 {
			for _, r := range cp.rules[dir] {
				for _, pe := range r.peers {
					if !pe.ipBlock && pe.nsSel == nil {
						fn(pe, peerRef{cp, Direction(dir), r})
					}
				}
			}
		}
	}
	for pe, ref := range c.peersSelectingNamespace(ns) {
		fn(pe, ref)
	}
}

// peersSelectingNamespace returns the peers with a namespace selector that matches ns.
func (c *Compiler) peersSelectingNamespace(ns string) map[*compiledPeer]peerRef {
	in, ok := c.nsPeersIn[ns]
	if !ok {
		in = map[*compiledPeer]peerRef{}
		set := labels.Set(c.namespaceLabels(ns))
		for pe, ref := range c.nsPeers {
			if pe.nsSel.Matches(set) {
				in[pe] = ref
			}
		}
		c.nsPeersIn[ns] = in
	}
	return in
}

// namespaceLabels returns a namespace's labels (nil when the cluster has no such object).
func (c *Compiler) namespaceLabels(ns string) map[string]string {
	if n := c.cluster.Namespaces[ns]; n != nil {
		return n.Labels
	}
	return nil
}

// refreshIPBlocks brings every ipBlock peer up to date after CIDR identities appeared or
// vanished, and the entries of the rule sets that follow from them. Whether a peer selects a
// prefix depends on that prefix alone, so only the changed ones are checked.
func (c *Compiler) refreshIPBlocks(added, removed []*identity) {
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	for pe, ref := range c.ipBlocks {
		ids := c.peerIDs[pe]
		for _, id := range removed {
			if ids.remove(id.info.ID) {
				c.bumpRule(ref.cp, ref.dir, ref.rule, id.info.ID, -1)
			}
		}
		for _, id := range added {
			if ids.has(id.info.ID) || !pe.selectsPrefix(id.info.Prefix) {
				continue // a peer of the policy that brought the prefix already has it
			}
			ids.add(id.info.ID)
			c.bumpRule(ref.cp, ref.dir, ref.rule, id.info.ID, 1)
		}
	}
}

// idList is a sorted set of identities: a peer's selected identities, iterated in order and
// compact. A new identity usually has the highest number yet, so changes are searched for
// from the end.
type idList []Identity

// find returns where id is or would go in the list.
func (l idList) find(id Identity) (int, bool) {
	if n := len(l); n == 0 || l[n-1] < id {
		return n, false
	}
	return slices.BinarySearch(l, id)
}

func (l *idList) add(id Identity) bool {
	i, found := l.find(id)
	if !found {
		*l = slices.Insert(*l, i, id)
	}
	return !found
}

func (l *idList) remove(id Identity) bool {
	i, found := l.find(id)
	if found {
		*l = slices.Delete(*l, i, i+1)
	}
	return found
}

func (l idList) has(id Identity) bool {
	_, found := l.find(id)
	return found
}
