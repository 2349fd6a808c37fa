package policy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// checkNamespaceRelabel validates a NamespaceRelabel event. Every endpoint of the namespace
// moves to a new identity while its old one is still held, so the event needs as many free
// cluster identities as the namespace has now.
func (c *Compiler) checkNamespaceRelabel(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", name, strings.Join(errs, "; "))
	}
	need := len(c.alloc.byNS[name])
	used := len(c.alloc.ids) - len(c.alloc.cidrs)
	if free := c.alloc.cluster.size() - used; need > free {
		return fmt.Errorf("namespace %s: relabel needs %d free identities, %d are: %w", name, need, free, ErrIdentitiesExhausted)
	}
	return nil
}

// relabelNamespace gives a namespace a new label set. A pod's identity holds its namespace's
// labels, so every endpoint of the namespace moves to a new identity, and the peers whose
// namespace selector matched the old labels or matches the new ones see the namespace's old
// identities go and its new ones come. Endpoints keep their rule sets: which policies select
// a pod depends on its own labels only.
func (c *Compiler) relabelNamespace(name string, lbls map[string]string) {
	want := copyLabels(lbls)
	if want == nil {
		want = map[string]string{}
	}
	want[NamespaceNameLabel] = name
	if old := c.cluster.Namespaces[name]; old != nil && maps.Equal(old.Labels, want) {
		return
	}
	ids := slices.Collect(maps.Keys(c.alloc.byNS[name]))
	slices.SortFunc(ids, func(a, b *identity) int { return cmp.Compare(a.info.ID, b.info.ID) })
	var eps []*epState
	for _, id := range ids {
		for _, g := range id.groups {
			eps = append(eps, g.eps...)
		}
	}
	c.selectors.namespaceRelabelling(name, ids, c.bumpRule)
	c.cluster.Namespaces[name] = &Namespace{Name: name, Labels: want}
	// In endpoint order, so the new identities are numbered the same way every time.
	slices.SortFunc(eps, func(a, b *epState) int { return cmp.Compare(a.ID, b.ID) })
	for _, ep := range eps {
		// The pod's labels are unchanged; its identity labels are not. checkNamespaceRelabel
		// made sure the identities are there.
		if err := c.relabel(ep, ep.Pod.Labels); err != nil {
			panic(fmt.Sprintf("relabel namespace %s: %v", name, err))
		}
	}
}

// namespaceRelabelling takes the identities of a namespace out of every selection while the
// namespace still has its old labels, and forgets which peers select it: its labels are about
// to change. Once they have, eachPeerOfNamespace would no longer find the peers that stop
// matching, and identityRemoved would leave the old identities behind in them.
func (sc *selectorCache) namespaceRelabelling(ns string, ids []*identity, fn selectionChanged) {
	for _, id := range ids {
		sc.identityRemoved(id, fn)
	}
	delete(sc.nsPeersIn, ns)
}
