package policy

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Options configure compilation.
type Options struct {
	// IdentityLabel reports whether a pod label key is identity-relevant. Nil means
	// DefaultIdentityLabel. A policy whose pod selectors use a key it rejects fails to compile:
	// identities could not enforce it.
	IdentityLabel func(key string) bool
}

// Compiler holds a cluster and its compiled State and keeps both current under churn.
type Compiler struct {
	cluster *Cluster
	opts    Options
	state   *State

	alloc identityAllocator

	eps    map[string]*epState
	epByID map[uint32]*epState
	epByIP map[netip.Addr]*epState
	nextEP uint32

	sets         map[RuleSetID]*ruleSet
	setByOrigin  map[string]*ruleSet
	setsByPolicy map[string]*[2][]*ruleSet // by policy key, the sets it selects, per direction
	nextSet      RuleSetID

	selectors selectorCache

	// portNames interns the named ports of entry keys: portNames[n-1] is named port n.
	portNames []string
	portName  map[string]uint32

	d     *deltaBuilder // nil while compiling from scratch
	epoch uint32        // counts Apply calls; see count
	// changed holds the rule sets whose sorted entries finish must bring up to date.
	changed []*ruleSet
	scratch [2][]Entry // finish's per-set lists of added and removed entries
}

// Compile compiles the cluster. The Compiler takes ownership of c: apply churn through
// Compiler.Apply, which keeps the cluster and the State in step. Identities, endpoint ids and
// rule set ids depend only on the cluster's contents, not on the order objects were added.
func Compile(cl *Cluster, opts Options) (*Compiler, error) {
	if opts.IdentityLabel == nil {
		opts.IdentityLabel = DefaultIdentityLabel
	}
	c := &Compiler{
		cluster:      cl,
		opts:         opts,
		alloc:        newIdentityAllocator(),
		eps:          map[string]*epState{},
		epByID:       map[uint32]*epState{},
		epByIP:       map[netip.Addr]*epState{},
		nextEP:       1,
		sets:         map[RuleSetID]*ruleSet{},
		setByOrigin:  map[string]*ruleSet{},
		setsByPolicy: map[string]*[2][]*ruleSet{},
		nextSet:      1,
		portName:     map[string]uint32{},
	}
	c.state = &State{c: c}
	c.selectors = newSelectorCache(cl, &c.alloc)
	for _, k := range cl.PolicyKeys() {
		if err := c.checkKeys(cl.compiled[k]); err != nil {
			return nil, err
		}
	}
	// CIDR identities in prefix order.
	var prefixes []netip.Prefix
	seen := map[netip.Prefix]bool{}
	for _, cp := range cl.compiled {
		for _, p := range cp.prefixes {
			if !seen[p] {
				seen[p] = true
				prefixes = append(prefixes, p)
			}
		}
	}
	slices.SortFunc(prefixes, comparePrefix)
	for _, p := range prefixes {
		if _, err := c.alloc.newCIDR(p); err != nil {
			return nil, err
		}
	}
	for _, cp := range cl.compiled {
		for _, p := range cp.prefixes {
			c.alloc.cidrs[p].info.Refs++
		}
	}
	// Pod identities in the order of their label keys.
	podKeys := cl.PodKeys()
	keyOf := make(map[string]string, len(podKeys))
	firstPod := map[string]*Pod{}
	var idKeys []string
	for _, k := range podKeys {
		p := cl.Pods[k]
		lbls := c.identityLabels(p)
		ik := strings.Join(lbls, "\x00")
		keyOf[k] = ik
		if _, ok := c.alloc.byKey[ik]; !ok {
			c.alloc.byKey[ik] = &identity{key: ik, info: IdentityInfo{Labels: lbls}}
			firstPod[ik] = p
			idKeys = append(idKeys, ik)
		}
	}
	sort.Strings(idKeys)
	for _, ik := range idKeys {
		id := c.alloc.byKey[ik]
		delete(c.alloc.byKey, ik)
		if _, err := c.allocIdentity(firstPod[ik], id.info.Labels, ik, false); err != nil {
			return nil, err
		}
	}
	for _, k := range cl.PolicyKeys() {
		c.selectors.addPolicy(cl.compiled[k])
	}
	for _, id := range c.alloc.ids {
		if !id.info.ID.IsCIDR() {
			id.sel = c.computeSel(id)
		}
	}
	for _, k := range podKeys {
		c.addEndpoint(cl.Pods[k], c.alloc.byKey[keyOf[k]])
	}
	c.finish()
	return c, nil
}

// Cluster returns the cluster as of the last applied event.
func (c *Compiler) Cluster() *Cluster { return c.cluster }

// State returns the compiled state (the same object after every Apply).
func (c *Compiler) State() *State { return c.state }

// Apply applies one churn event to the cluster and returns what it changed in the State.
// A rejected event changes nothing.
func (c *Compiler) Apply(ev Event) (*Delta, error) {
	if err := c.check(ev); err != nil {
		return nil, fmt.Errorf("apply %s: %w", ev.Kind, err)
	}
	if c.epoch >= math.MaxUint32-1 { // epoch+1 marks sets: keep it from wrapping
		c.restartEpochs()
	}
	c.epoch++
	c.d = newDeltaBuilder(c.epoch)
	defer func() { c.d = nil }()
	switch ev.Kind {
	case PodAdd:
		pod := *ev.Pod
		pod.Labels = copyLabels(ev.Pod.Labels)
		pod.Ports = slices.Clone(ev.Pod.Ports)
		if err := c.cluster.addPod(&pod); err != nil {
			return nil, fmt.Errorf("apply %s: %w", ev.Kind, err)
		}
		id, err := c.acquireIdentity(&pod)
		if err != nil {
			c.cluster.removePod(pod.Key())
			return nil, fmt.Errorf("apply %s: %w", ev.Kind, err)
		}
		c.addEndpoint(&pod, id)
	case PodDelete:
		ep := c.eps[ev.PodKey]
		c.removeEndpoint(ep)
		c.cluster.removePod(ev.PodKey)
	case PodRelabel:
		if err := c.relabel(c.eps[ev.PodKey], ev.Labels); err != nil {
			return nil, fmt.Errorf("apply %s: %w", ev.Kind, err)
		}
	case PolicyAdd, PolicyUpdate:
		cp, _ := compilePolicy(DefaultPolicy(ev.Policy)) // checked above
		c.putPolicy(cp)
	case PolicyRemove:
		c.removePolicy(ev.PolicyKey)
	case NamespaceRelabel:
		c.relabelNamespace(ev.Namespace, ev.Labels)
	}
	added, removed := c.finish()
	d := c.d.build(c)
	d.EntriesAdded, d.EntriesRemoved = added, removed
	return d, nil
}

// restartEpochs clears every epoch stamp (counts, endpoints, sets' marks) and starts the
// epochs again: after 2^32 events a stale stamp would pass for the current event's.
func (c *Compiler) restartEpochs() {
	for _, s := range c.sets {
		s.changed = 0
		s.counts.clearEpochs()
	}
	for _, ep := range c.epByID {
		ep.touched = 0
	}
	c.epoch = 0
}

// check validates an event against the current cluster without changing anything.
func (c *Compiler) check(ev Event) error {
	switch ev.Kind {
	case PodAdd:
		if ev.Pod == nil {
			return errors.New("event has no pod")
		}
		if _, dup := c.cluster.Pods[ev.Pod.Key()]; dup {
			return fmt.Errorf("pod %s: already exists", ev.Pod.Key())
		}
		if !ev.Pod.IP.Is4() {
			return fmt.Errorf("pod %s: IP %s is not IPv4", ev.Pod.Key(), ev.Pod.IP)
		}
		if other, dup := c.cluster.podsByIP[ev.Pod.IP]; dup {
			return fmt.Errorf("pod %s: IP %s is already used by pod %s", ev.Pod.Key(), ev.Pod.IP, other.Key())
		}
	case PodDelete, PodRelabel:
		if _, ok := c.eps[ev.PodKey]; !ok {
			return fmt.Errorf("pod %s: not found", ev.PodKey)
		}
	case PolicyAdd, PolicyUpdate:
		if ev.Policy == nil {
			return errors.New("event has no policy")
		}
		cp, err := compilePolicy(DefaultPolicy(ev.Policy))
		if err != nil {
			return err
		}
		_, exists := c.cluster.compiled[cp.key]
		if ev.Kind == PolicyAdd && exists {
			return fmt.Errorf("networkpolicy %s: already exists", cp.key)
		}
		if ev.Kind == PolicyUpdate && !exists {
			return fmt.Errorf("networkpolicy %s: not found", cp.key)
		}
		if err := c.checkKeys(cp); err != nil {
			return err
		}
		return c.checkPrefixes(cp)
	case PolicyRemove:
		if _, ok := c.cluster.compiled[ev.PolicyKey]; !ok {
			return fmt.Errorf("networkpolicy %s: not found", ev.PolicyKey)
		}
	case NamespaceRelabel:
		return c.checkNamespaceRelabel(ev.Namespace)
	default:
		return fmt.Errorf("unknown event kind %d", ev.Kind)
	}
	return nil
}

func (c *Compiler) checkKeys(cp *compiledPolicy) error {
	for _, k := range cp.podKeys {
		if !c.opts.IdentityLabel(k) {
			return fmt.Errorf("networkpolicy %s: selects on pod label %q, which the identity label filter excludes: identities cannot enforce it (make the label identity-relevant)", cp.key, k)
		}
	}
	return nil
}

// putPolicy adds or replaces a policy and brings every affected rule set and endpoint up to
// date.
func (c *Compiler) putPolicy(cp *compiledPolicy) {
	old := c.cluster.compiled[cp.key]
	var removed []*identity
	c.cluster.putPolicy(cp)
	added := c.addPrefixes(cp)
	c.selectors.addPolicy(cp)
	if old != nil {
		// The sets of the old version trade its entries for the new version's.
		if ps := c.setsByPolicy[cp.key]; ps != nil {
			for _, s := range slices.Concat(ps[Ingress], ps[Egress]) {
				c.contribute(s, old, -1)
				for i, p := range s.policies {
					if p == old {
						s.policies[i] = cp
					}
				}
				c.contribute(s, cp, 1)
			}
		}
		c.selectors.removePolicy(old)
		removed = c.removePrefixes(old)
	}
	c.selectors.prefixesChanged(added, removed, c.bumpRule)
	switch {
	case old == nil:
		c.reselect(cp.ns, nil, cp)
	case old.ns == cp.ns:
		c.reselect(cp.ns, old, cp)
	default:
		c.reselect(cp.ns, nil, cp)
		c.reselect(old.ns, old, nil)
	}
}

func (c *Compiler) removePolicy(key string) {
	cp, _ := c.cluster.removePolicy(key)
	c.reselect(cp.ns, cp, nil)
	c.selectors.removePolicy(cp)
	c.selectors.prefixesChanged(nil, c.removePrefixes(cp), c.bumpRule)
}
