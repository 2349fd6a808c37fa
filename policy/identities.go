package policy

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
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
	if id, ok := c.idByKey[key]; ok {
		return id, nil
	}
	return c.allocIdentity(p, lbls, key, true)
}

// allocIdentity gives a label set the next free cluster identity. With incremental set, the
// new identity is matched against every selector peer and the rule sets are updated.
func (c *Compiler) allocIdentity(p *Pod, lbls []string, key string, incremental bool) (*identity, error) {
	num := c.nextID
	for tries := 0; ; tries++ {
		if tries > int(IdentityClusterMax-IdentityClusterMin) {
			return nil, ErrIdentitiesExhausted
		}
		if num > IdentityClusterMax {
			num = IdentityClusterMin
		}
		if _, used := c.ids[num]; !used {
			break
		}
		num++
	}
	c.nextID = num + 1
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
	id := &identity{
		key: key,
		info: IdentityInfo{ID: num, Labels: lbls, Namespace: p.Namespace,
			NamespaceLabels: nsLabels, PodLabels: podLabels},
		groups:  map[string]*epGroup{},
		members: map[netip.Addr]struct{}{},
	}
	c.ids[num] = id
	c.idByKey[key] = id
	if c.nsIdentities[p.Namespace] == nil {
		c.nsIdentities[p.Namespace] = map[*identity]struct{}{}
	}
	c.nsIdentities[p.Namespace][id] = struct{}{}
	if !incremental {
		return id, nil
	}
	c.d.ids[num]++
	id.sel = c.computeSel(id)
	pods := labels.Set(id.info.PodLabels)
	c.eachPeerOfNamespace(p.Namespace, func(pe *compiledPeer, ref peerRef) {
		if pe.podSel == nil || pe.podSel.Matches(pods) {
			c.peerIDs[pe].add(num)
			c.bumpRule(ref.cp, ref.dir, ref.rule, num, 1)
		}
	})
	return id, nil
}

func (c *Compiler) releaseIdentity(id *identity) {
	if id.info.Refs > 0 {
		return
	}
	num := id.info.ID
	c.eachPeerOfNamespace(id.info.Namespace, func(pe *compiledPeer, ref peerRef) {
		if c.peerIDs[pe].remove(num) {
			c.bumpRule(ref.cp, ref.dir, ref.rule, num, -1)
		}
	})
	delete(c.ids, num)
	delete(c.idByKey, id.key)
	delete(c.nsIdentities[id.info.Namespace], id)
	c.d.ids[num]--
}

// addPrefixes takes references on a policy's ipBlock prefixes and returns the CIDR identities
// that appeared.
func (c *Compiler) addPrefixes(cp *compiledPolicy) []*identity {
	var added []*identity
	for _, p := range cp.prefixes {
		id, ok := c.cidrs[p]
		if !ok {
			id = c.newCIDR(p)
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
		id := c.cidrs[p]
		id.info.Refs--
		if id.info.Refs == 0 {
			delete(c.cidrs, p)
			delete(c.ids, id.info.ID)
			c.d.cidrs[CIDR{p, id.info.ID}]--
			c.d.ids[id.info.ID]--
			removed = append(removed, id)
		}
	}
	if len(removed) > 0 {
		c.cidrLens = 0
		for p := range c.cidrs {
			c.cidrLens |= 1 << p.Bits()
		}
	}
	return removed
}

func (c *Compiler) newCIDR(p netip.Prefix) *identity {
	num := c.nextCIDR
	for {
		if _, used := c.ids[num]; !used {
			break
		}
		num++
	}
	c.nextCIDR = num + 1
	id := &identity{info: IdentityInfo{ID: num, Labels: []string{"cidr:" + p.String()}, Prefix: p}}
	c.ids[num] = id
	c.cidrs[p] = id
	c.cidrLens |= 1 << p.Bits()
	return id
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
