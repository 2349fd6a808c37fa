package policy

import (
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// selectorCache keeps, for every peer of every policy, the identities it selects: pod
// identities for selector peers, CIDR identities for ipBlock peers (Cilium's SelectorCache,
// with a peer for a selector). Told that identities or policies came or went, it brings the
// selections up to date and reports each identity a peer gained or lost, so the rule sets of
// the peer's policy can follow.
type selectorCache struct {
	cluster *Cluster
	ids     *identityAllocator
	// selections holds every peer's selected identities.
	selections map[*compiledPeer]*idList
	// ipBlocks locates every ipBlock peer of every policy, nsPeers every peer with a
	// namespace selector (the only selector peers that can select pods of other namespaces).
	ipBlocks map[*compiledPeer]peerRef
	nsPeers  map[*compiledPeer]peerRef
	// nsPeersIn caches, per namespace, the peers of nsPeers whose namespace selector matches
	// its labels, filled on first use and dropped when the namespace is relabelled.
	nsPeersIn map[string]map[*compiledPeer]peerRef
}

// peerRef locates a peer: the policy, direction and rule it belongs to.
type peerRef struct {
	cp   *compiledPolicy
	dir  Direction
	rule *compiledRule
}

// selectionChanged is told that the peer at ref gained (n = 1) or lost (n = -1) identity id.
type selectionChanged func(ref peerRef, id Identity, n int32)

func newSelectorCache(cl *Cluster, ids *identityAllocator) selectorCache {
	return selectorCache{
		cluster:    cl,
		ids:        ids,
		selections: map[*compiledPeer]*idList{},
		ipBlocks:   map[*compiledPeer]peerRef{},
		nsPeers:    map[*compiledPeer]peerRef{},
		nsPeersIn:  map[string]map[*compiledPeer]peerRef{},
	}
}

// addPolicy computes the selections of a policy's peers.
func (sc *selectorCache) addPolicy(cp *compiledPolicy) {
	for dir := range 2 {
		for _, r := range cp.rules[dir] {
			for _, pe := range r.peers {
				sc.selections[pe] = sc.match(cp, pe)
				switch {
				case pe.ipBlock:
					sc.ipBlocks[pe] = peerRef{cp, Direction(dir), r}
				case pe.nsSel != nil:
					ref := peerRef{cp, Direction(dir), r}
					sc.nsPeers[pe] = ref
					for ns, in := range sc.nsPeersIn {
						if pe.nsSel.Matches(labels.Set(sc.namespaceLabels(ns))) {
							in[pe] = ref
						}
					}
				}
			}
		}
	}
}

// match returns the identities a peer of cp selects.
func (sc *selectorCache) match(cp *compiledPolicy, pe *compiledPeer) *idList {
	var m idList
	if pe.ipBlock {
		for p, id := range sc.ids.cidrs {
			if pe.selectsPrefix(p) {
				m = append(m, id.info.ID)
			}
		}
		slices.Sort(m)
		return &m
	}
	// Namespaces first: a namespace selector is checked once per namespace, not per identity.
	for ns, ids := range sc.ids.byNS {
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

// removePolicy forgets a policy's peers.
func (sc *selectorCache) removePolicy(cp *compiledPolicy) {
	for dir := range 2 {
		for _, r := range cp.rules[dir] {
			for _, pe := range r.peers {
				delete(sc.selections, pe)
				delete(sc.ipBlocks, pe)
				delete(sc.nsPeers, pe)
				for _, in := range sc.nsPeersIn {
					delete(in, pe)
				}
			}
		}
	}
}

// selected returns the identities a peer selects, sorted. Callers must not modify them.
func (sc *selectorCache) selected(pe *compiledPeer) idList { return *sc.selections[pe] }

// identityAdded adds a new pod identity to the selections of the peers that select it.
func (sc *selectorCache) identityAdded(id *identity, fn selectionChanged) {
	num, pods := id.info.ID, labels.Set(id.info.PodLabels)
	sc.eachPeerOfNamespace(id.info.Namespace, func(pe *compiledPeer, ref peerRef) {
		if pe.podSel == nil || pe.podSel.Matches(pods) {
			sc.selections[pe].add(num)
			fn(ref, num, 1)
		}
	})
}

// identityRemoved takes a pod identity out of every selection.
func (sc *selectorCache) identityRemoved(id *identity, fn selectionChanged) {
	num := id.info.ID
	sc.eachPeerOfNamespace(id.info.Namespace, func(pe *compiledPeer, ref peerRef) {
		if sc.selections[pe].remove(num) {
			fn(ref, num, -1)
		}
	})
}

// eachPeerOfNamespace calls fn for every selector peer whose namespace part selects the pods of
// ns, leaving fn to check the pod selector: the peers without a namespace selector of the
// namespace's own policies, and the peers whose namespace selector matches ns. No other peer
// can select an identity of ns.
func (sc *selectorCache) eachPeerOfNamespace(ns string, fn func(*compiledPeer, peerRef)) {
	for _, cp := range sc.cluster.byNS[ns] {
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
	for pe, ref := range sc.peersSelectingNamespace(ns) {
		fn(pe, ref)
	}
}

// peersSelectingNamespace returns the peers with a namespace selector that matches ns.
func (sc *selectorCache) peersSelectingNamespace(ns string) map[*compiledPeer]peerRef {
	in, ok := sc.nsPeersIn[ns]
	if !ok {
		in = map[*compiledPeer]peerRef{}
		set := labels.Set(sc.namespaceLabels(ns))
		for pe, ref := range sc.nsPeers {
			if pe.nsSel.Matches(set) {
				in[pe] = ref
			}
		}
		sc.nsPeersIn[ns] = in
	}
	return in
}

// namespaceLabels returns a namespace's labels (nil when the cluster has no such object).
func (sc *selectorCache) namespaceLabels(ns string) map[string]string {
	if n := sc.cluster.Namespaces[ns]; n != nil {
		return n.Labels
	}
	return nil
}

// prefixesChanged brings every ipBlock peer up to date after CIDR identities appeared or
// vanished. Whether a peer selects a prefix depends on that prefix alone, so only the changed
// ones are checked.
func (sc *selectorCache) prefixesChanged(added, removed []*identity, fn selectionChanged) {
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	for pe, ref := range sc.ipBlocks {
		ids := sc.selections[pe]
		for _, id := range removed {
			if ids.remove(id.info.ID) {
				fn(ref, id.info.ID, -1)
			}
		}
		for _, id := range added {
			if ids.has(id.info.ID) || !pe.selectsPrefix(id.info.Prefix) {
				continue // a peer of the policy that brought the prefix already has it
			}
			ids.add(id.info.ID)
			fn(ref, id.info.ID, 1)
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
