package policy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// highCardinalityLabels are pod labels that Cilium leaves out of identities: each would give
// (nearly) every pod an identity of its own.
var highCardinalityLabels = []string{
	"pod-template-hash",
	"pod-template-generation",
	"controller-revision-hash",
	"controller-uid",
	"statefulset.kubernetes.io/pod-name",
	"apps.kubernetes.io/pod-index",
	"batch.kubernetes.io/job-completion-index",
	"batch.kubernetes.io/controller-uid",
}

// DefaultIdentityLabel keeps every label but the high-cardinality ones Cilium excludes.
func DefaultIdentityLabel(key string) bool { return !slices.Contains(highCardinalityLabels, key) }

// ErrIdentitiesExhausted is returned when all cluster identities (256..65535) are in use.
var ErrIdentitiesExhausted = errors.New("all cluster identities 256-65535 are in use")

// ErrCIDRIdentitiesExhausted is returned when all node-local CIDR identities (the local scope
// bit with a 24-bit number from 1) are in use.
var ErrCIDRIdentitiesExhausted = errors.New("all CIDR identities (local scope 1-16777215) are in use")

// identityLocalMax is the last node-local identity: past it the number would carry into the
// bits above the scope bit.
const identityLocalMax = IdentityLocalScope | (IdentityLocalScope - 1)

// identityAllocator hands out numeric identities: cluster identities to pod label sets and
// node-local identities to ipBlock prefixes, each from a bounded range, and indexes them. It
// knows nothing of selectors or rule sets; the Compiler tells them what appeared and vanished.
type identityAllocator struct {
	ids   map[Identity]*identity
	byKey map[string]*identity // pod identities by label key (identityLabels joined)
	byNS  map[string]map[*identity]struct{}
	cidrs map[netip.Prefix]*identity
	// cidrLens has bit l set when some IPv4 prefix of length l has an identity.
	cidrLens uint64
	cluster  idRange
	local    idRange
}

func newIdentityAllocator() identityAllocator {
	return identityAllocator{
		ids:     map[Identity]*identity{},
		byKey:   map[string]*identity{},
		byNS:    map[string]map[*identity]struct{}{},
		cidrs:   map[netip.Prefix]*identity{},
		cluster: idRange{first: IdentityClusterMin, last: IdentityClusterMax, next: IdentityClusterMin},
		local:   idRange{first: IdentityLocalScope + 1, last: identityLocalMax, next: IdentityLocalScope + 1},
	}
}

// idRange is a range of identity numbers, first to last inclusive, handed out from a cursor
// that wraps: a released number comes back only after the rest of the range, as in Cilium's
// allocators, so a stale reference to it is unlikely to meet its successor soon.
type idRange struct {
	first, last, next Identity
}

// take returns the first number from the cursor on that used lacks and moves the cursor past
// it; false when every number of the range is used.
func (r *idRange) take(used map[Identity]*identity) (Identity, bool) {
	num := r.next
	for tries := Identity(0); tries <= r.last-r.first; tries++ {
		if num > r.last || num < r.first {
			num = r.first
		}
		if _, taken := used[num]; !taken {
			r.next = num + 1
			return num, true
		}
		num++
	}
	return 0, false
}

// size returns how many numbers the range holds.
func (r *idRange) size() int { return int(r.last-r.first) + 1 }

// allocate gives a pod label set the next free cluster identity. key is the set's labels
// joined; info describes it (its ID is filled in).
func (a *identityAllocator) allocate(key string, info IdentityInfo) (*identity, error) {
	num, ok := a.cluster.take(a.ids)
	if !ok {
		return nil, ErrIdentitiesExhausted
	}
	info.ID = num
	id := &identity{
		key:     key,
		info:    info,
		groups:  map[string]*epGroup{},
		members: map[netip.Addr]struct{}{},
	}
	a.ids[num] = id
	a.byKey[key] = id
	if a.byNS[info.Namespace] == nil {
		a.byNS[info.Namespace] = map[*identity]struct{}{}
	}
	a.byNS[info.Namespace][id] = struct{}{}
	return id, nil
}

// release forgets a pod identity.
func (a *identityAllocator) release(id *identity) {
	delete(a.ids, id.info.ID)
	delete(a.byKey, id.key)
	delete(a.byNS[id.info.Namespace], id)
}

// newCIDR gives a prefix the next free node-local identity.
func (a *identityAllocator) newCIDR(p netip.Prefix) (*identity, error) {
	num, ok := a.local.take(a.ids)
	if !ok {
		return nil, ErrCIDRIdentitiesExhausted
	}
	id := &identity{info: IdentityInfo{ID: num, Labels: []string{"cidr:" + p.String()}, Prefix: p}}
	a.ids[num] = id
	a.cidrs[p] = id
	a.cidrLens |= 1 << p.Bits()
	return id, nil
}

// missingCIDRs counts the distinct prefixes that have no identity yet.
func (a *identityAllocator) missingCIDRs(prefixes []netip.Prefix) int {
	missing := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		if _, ok := a.cidrs[p]; !ok {
			missing[p] = true
		}
	}
	return len(missing)
}

// freeCIDRs returns how many node-local identities are free.
func (a *identityAllocator) freeCIDRs() int { return a.local.size() - len(a.cidrs) }

// releaseCIDR forgets a CIDR identity. The caller recounts cidrLens once it has released
// all it will.
func (a *identityAllocator) releaseCIDR(id *identity) {
	delete(a.cidrs, id.info.Prefix)
	delete(a.ids, id.info.ID)
}

// recountLens rebuilds cidrLens from the prefixes left.
func (a *identityAllocator) recountLens() {
	a.cidrLens = 0
	for p := range a.cidrs {
		a.cidrLens |= 1 << p.Bits()
	}
}

// identity is an allocated identity. For a pod identity, sel lists the policies that select
// it per direction, sorted by key, members its endpoints' addresses, and groups its endpoints.
type identity struct {
	info IdentityInfo
	key  string
	sel  [2][]*compiledPolicy
	// groups holds the identity's endpoints by port signature. A rule set's origin is made of
	// the identity's selecting policies and maybe the signature, so the endpoints of a group
	// share their rule sets: a policy event decides where a whole group goes at once, and a
	// rule set renamed in place takes its groups along without touching an endpoint.
	groups  map[string]*epGroup
	members map[netip.Addr]struct{}
}

// identityLabels returns the identity-relevant labels of a pod in Cilium's form, sorted.
func (c *Compiler) identityLabels(p *Pod) []string {
	out := make([]string, 0, len(p.Labels)+4)
	for k, v := range p.Labels {
		if c.opts.IdentityLabel(k) {
			out = append(out, "k8s:"+k+"="+v)
		}
	}
	out = append(out, "k8s:io.kubernetes.pod.namespace="+p.Namespace)
	if ns := c.cluster.Namespaces[p.Namespace]; ns != nil {
		for k, v := range ns.Labels {
			out = append(out, "k8s:io.cilium.k8s.namespace.labels."+k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

func (c *Compiler) acquireIdentity(p *Pod) (*identity, error) {
	lbls := c.identityLabels(p)
	key := strings.Join(lbls, "\x00")
	if id, ok := c.alloc.byKey[key]; ok {
		return id, nil
	}
	return c.allocIdentity(p, lbls, key, true)
}

// allocIdentity gives a label set the next free cluster identity. With incremental set, the
// new identity is matched against every selector peer and the rule sets are updated.
func (c *Compiler) allocIdentity(p *Pod, lbls []string, key string, incremental bool) (*identity, error) {
	podLabels := map[string]string{}
	for k, v := range p.Labels {
		if c.opts.IdentityLabel(k) {
			podLabels[k] = v
		}
	}
	var nsLabels map[string]string
	if ns := c.cluster.Namespaces[p.Namespace]; ns != nil {
		nsLabels = ns.Labels
	}
	id, err := c.alloc.allocate(key, IdentityInfo{Labels: lbls, Namespace: p.Namespace,
		NamespaceLabels: nsLabels, PodLabels: podLabels})
	if err != nil {
		return nil, err
	}
	num := id.info.ID
	if !incremental {
		return id, nil
	}
	c.d.ids[num]++
	id.sel = c.computeSel(id)
	c.selectors.identityAdded(id, c.bumpRule)
	return id, nil
}

func (c *Compiler) releaseIdentity(id *identity) {
	if id.info.Refs > 0 {
		return
	}
	c.selectors.identityRemoved(id, c.bumpRule)
	c.alloc.release(id)
	c.d.ids[id.info.ID]--
}

// addPrefixes takes references on a policy's ipBlock prefixes and returns the CIDR identities
// that appeared. check made sure the new ones fit.
func (c *Compiler) addPrefixes(cp *compiledPolicy) []*identity {
	var added []*identity
	for _, p := range cp.prefixes {
		id, ok := c.alloc.cidrs[p]
		if !ok {
			var err error
			if id, err = c.alloc.newCIDR(p); err != nil {
				panic(fmt.Sprintf("policy: networkpolicy %s passed the check but: %v", cp.key, err))
			}
			if c.d != nil {
				c.d.cidrs[CIDR{p, id.info.ID}]++
				c.d.ids[id.info.ID]++
			}
			added = append(added, id)
		}
		id.info.Refs++
	}
	return added
}

// removePrefixes drops references on a policy's ipBlock prefixes and returns the CIDR
// identities that vanished.
func (c *Compiler) removePrefixes(cp *compiledPolicy) []*identity {
	var removed []*identity
	for _, p := range cp.prefixes {
		id := c.alloc.cidrs[p]
		id.info.Refs--
		if id.info.Refs == 0 {
			c.alloc.releaseCIDR(id)
			c.d.cidrs[CIDR{p, id.info.ID}]--
			c.d.ids[id.info.ID]--
			removed = append(removed, id)
		}
	}
	if len(removed) > 0 {
		c.alloc.recountLens()
	}
	return removed
}

// checkPrefixes reports whether the prefixes of a policy that have no identity yet fit in the
// free node-local identities.
func (c *Compiler) checkPrefixes(cp *compiledPolicy) error {
	free := c.alloc.freeCIDRs()
	if len(cp.prefixes) <= free {
		return nil // however many are new
	}
	if need := c.alloc.missingCIDRs(cp.prefixes); need > free {
		return fmt.Errorf("networkpolicy %s: its ipBlocks need %d new CIDR identities, %d are free: %w", cp.key, need, free, ErrCIDRIdentitiesExhausted)
	}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
