package policy

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Options configure compilation.
type Options struct {
	// IdentityLabel reports whether a pod label key is identity-relevant. Nil means
	// DefaultIdentityLabel. A policy whose pod selectors use a key it rejects fails to compile:
	// identities could not enforce it.
	IdentityLabel func(key string) bool
}

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

// Compiler holds a cluster and its compiled State and keeps both current under churn.
type Compiler struct {
	cluster *Cluster
	opts    Options
	state   *State

	ids          map[Identity]*identity
	idByKey      map[string]*identity
	nsIdentities map[string]map[*identity]struct{}
	nextID       Identity

	cidrs    map[netip.Prefix]*identity
	cidrLens uint64 // bit l set: some IPv4 prefix of length l exists
	nextCIDR Identity

	eps    map[string]*epState
	epByID map[uint32]*epState
	epByIP map[netip.Addr]*epState
	nextEP uint32

	sets         map[RuleSetID]*ruleSet
	setByOrigin  map[string]*ruleSet
	setsByPolicy map[string]*[2][]*ruleSet // by policy key, the sets it selects, per direction
	nextSet      RuleSetID

	// peerIDs holds, for every peer of every policy, the identities it selects: pod
	// identities for selector peers, CIDR identities for ipBlock peers.
	peerIDs map[*compiledPeer]*idList
	// ipBlocks locates every ipBlock peer of every policy, nsPeers every peer with a
	// namespace selector (the only selector peers that can select pods of other namespaces).
	ipBlocks map[*compiledPeer]peerRef
	nsPeers  map[*compiledPeer]peerRef
	// nsPeersIn caches, per namespace, the peers of nsPeers whose namespace selector matches
	// its labels, filled on first use and dropped when the namespace is relabelled.
	nsPeersIn map[string]map[*compiledPeer]peerRef

	// portNames interns the named ports of entry keys: portNames[n-1] is named port n.
	portNames []string
	portName  map[string]uint32

	d     *deltaBuilder // nil while compiling from scratch
	epoch uint32        // counts Apply calls; see count
	// changed holds the rule sets whose sorted entries finish must bring up to date.
	changed []*ruleSet
	scratch [2][]Entry // finish's per-set lists of added and removed entries
}

// count is how many (policy, rule, port) contributions an entry of a set has. epoch is the
// compiler's epoch of the event that last touched it, and touch its index in the set's
// touched list during that event.
type count struct {
	n     int32
	epoch uint32
	touch int32
}

// touch is an entry changed by the current event: whether it existed at the event's start
// and its count now (kept here too, so finish needs no map lookup per change).
type touch struct {
	k   entryKey
	was bool
	n   int32
}

type peerRef struct {
	cp   *compiledPolicy
	dir  Direction
	rule *compiledRule
}

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

type epGroup struct {
	sig  string
	sets [2]*ruleSet // every endpoint's sets
	eps  []*epState
}

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

type ruleSet struct {
	RuleSet
	origin   string
	ports    []ContainerPort
	policies []*compiledPolicy
	refs     int
	counts   countTable
	// full means the set is new: Entries must be built from counts. Otherwise touched lists
	// the entries whose count the current event changed, and Entries is as of its start.
	full    bool
	touched []touch
	changed uint32 // the compiler's epoch+1 when it was last listed for finish
}

// State is the compiled, backend-neutral enforcement state. It changes only through
// Compiler.Apply; read it through its methods. It is not safe for concurrent use with Apply.
type State struct {
	c *Compiler
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
		ids:          map[Identity]*identity{},
		idByKey:      map[string]*identity{},
		nsIdentities: map[string]map[*identity]struct{}{},
		nextID:       IdentityClusterMin,
		cidrs:        map[netip.Prefix]*identity{},
		nextCIDR:     IdentityLocalScope + 1,
		eps:          map[string]*epState{},
		epByID:       map[uint32]*epState{},
		epByIP:       map[netip.Addr]*epState{},
		nextEP:       1,
		sets:         map[RuleSetID]*ruleSet{},
		setByOrigin:  map[string]*ruleSet{},
		setsByPolicy: map[string]*[2][]*ruleSet{},
		nextSet:      1,
		peerIDs:      map[*compiledPeer]*idList{},
		ipBlocks:     map[*compiledPeer]peerRef{},
		nsPeers:      map[*compiledPeer]peerRef{},
		nsPeersIn:    map[string]map[*compiledPeer]peerRef{},
		portName:     map[string]uint32{},
	}
	c.state = &State{c: c}
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
		c.newCIDR(p)
	}
	for _, cp := range cl.compiled {
		for _, p := range cp.prefixes {
			c.cidrs[p].info.Refs++
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
		if _, ok := c.idByKey[ik]; !ok {
			c.idByKey[ik] = &identity{key: ik, info: IdentityInfo{Labels: lbls}}
			firstPod[ik] = p
			idKeys = append(idKeys, ik)
		}
	}
	sort.Strings(idKeys)
	for _, ik := range idKeys {
		id := c.idByKey[ik]
		delete(c.idByKey, ik)
		if _, err := c.allocIdentity(firstPod[ik], id.info.Labels, ik, false); err != nil {
			return nil, err
		}
	}
	for _, k := range cl.PolicyKeys() {
		c.computePeers(cl.compiled[k])
	}
	for _, id := range c.ids {
		if !id.info.ID.IsCIDR() {
			id.sel = c.computeSel(id)
		}
	}
	for _, k := range podKeys {
		c.addEndpoint(cl.Pods[k], c.idByKey[keyOf[k]])
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
		return c.checkKeys(cp)
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

// computeSel returns the policies that select an identity, per direction, sorted by key.
func (c *Compiler) computeSel(id *identity) [2][]*compiledPolicy {
	var sel [2][]*compiledPolicy
	set := labels.Set(id.info.PodLabels)
	for _, cp := range c.cluster.byNS[id.info.Namespace] {
		if !cp.subject.Matches(set) {
			continue
		}
		for dir := range 2 {
			if cp.applies[dir] {
				sel[dir] = append(sel[dir], cp)
			}
		}
	}
	for dir := range 2 {
		slices.SortFunc(sel[dir], func(a, b *compiledPolicy) int { return strings.Compare(a.key, b.key) })
	}
	return sel
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
		for p, id := range c.cidrs {
			if pe.selectsPrefix(p) {
				m = append(m, id.info.ID)
			}
		}
		slices.Sort(m)
		return &m
	}
	// Namespaces first: a namespace selector is checked once per namespace, not per identity.
	for ns, ids := range c.nsIdentities {
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

// origin names the rule set an endpoint gets in a direction: the selecting policies and, when
// an ingress rule of one of them uses a named port, the pod's named ports (they resolve there).
func origin(dir Direction, sel []*compiledPolicy, sig string) string {
	if len(sel) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(dir.String())
	for _, cp := range sel {
		b.WriteByte('|')
		b.WriteString(cp.key)
	}
	if namedIngress(dir, sel) {
		b.WriteString("|ports")
		if sig != "" {
			b.WriteByte(',')
			b.WriteString(sig)
		}
	}
	return b.String()
}

// portSignature lists what a pod's named ports resolve to, sorted and comma-joined. A later
// port with a name and protocol already declared (allowed across containers) never resolves,
// since Pod.NamedPort takes the first, so it is left out: two pods declaring the same names in
// different orders resolve them differently and must not share a rule set.
func portSignature(p *Pod) string {
	var out []string
	for i, cp := range p.Ports {
		if cp.Name == "" || slices.ContainsFunc(p.Ports[:i], func(q ContainerPort) bool {
			return q.Name == cp.Name && q.Protocol == cp.Protocol
		}) {
			continue
		}
		out = append(out, cp.Name+"/"+strconv.Itoa(int(cp.Protocol))+"/"+strconv.Itoa(int(cp.Port)))
	}
	if len(out) > 1 {
		sort.Strings(out)
	}
	return strings.Join(out, ",")
}

// acquireOrigin is acquireSet with the origin already built.
func (c *Compiler) acquireOrigin(dir Direction, sel []*compiledPolicy, pod *Pod, o string) *ruleSet {
	if o == "" {
		return nil
	}
	if s, ok := c.setByOrigin[o]; ok {
		s.refs++
		return s
	}
	s := &ruleSet{
		RuleSet:  RuleSet{ID: c.nextSet, Direction: dir},
		counts:   countTable{seed: uint32(c.nextSet)},
		origin:   o,
		ports:    slices.Clone(pod.Ports),
		policies: slices.Clone(sel),
		refs:     1,
		full:     true,
	}
	c.markChanged(s)
	c.nextSet++
	for _, cp := range sel {
		s.Policies = append(s.Policies, cp.key)
		c.addPolicySet(cp.key, s)
	}
	c.sets[s.ID] = s
	c.setByOrigin[o] = s
	if c.d != nil {
		c.d.sets[s.ID]++
	}
	for _, cp := range sel { // a new set is full: its entries are not tracked one by one
		c.contribute(s, cp, 1)
	}
	return s
}

// markChanged lists a set for finish, once per event.
func (c *Compiler) markChanged(s *ruleSet) {
	if s.changed != c.epoch+1 {
		s.changed = c.epoch + 1
		c.changed = append(c.changed, s)
	}
}

// releaseSet drops n references on a set.
func (c *Compiler) releaseSet(s *ruleSet, n int) {
	if s == nil {
		return
	}
	s.refs -= n
	if s.refs > 0 {
		return
	}
	c.markChanged(s) // its entries leave with it
	for _, cp := range s.policies {
		c.dropPolicySet(cp.key, s)
	}
	delete(c.sets, s.ID)
	delete(c.setByOrigin, s.origin)
	c.d.sets[s.ID]--
}

// forPorts expands one rule and one peer identity into the set's entries.
func (c *Compiler) forPorts(s *ruleSet, r *compiledRule, peer Identity, fn func(Entry)) {
	if len(r.ports) == 0 {
		fn(Entry{Peer: peer})
		return
	}
	for _, p := range r.ports {
		switch {
		case p.name == "":
			fn(Entry{Peer: peer, Proto: p.proto, Port: p.port, EndPort: p.endPort})
		case s.Direction == Egress:
			fn(Entry{Peer: peer, Proto: p.proto, NamedPort: p.name})
		default:
			for _, cp := range s.ports {
				if cp.Name == p.name && cp.Protocol == p.proto {
					fn(Entry{Peer: peer, Proto: p.proto, Port: cp.Port, EndPort: cp.Port})
					break
				}
			}
		}
	}
}

// bump changes an entry's count by n. The first touch in an event notes whether the entry
// existed before it; finish turns the touched entries into the delta.
func (c *Compiler) bump(s *ruleSet, e Entry, n int32) {
	k := c.key(e)
	v := s.counts.upsert(k)
	now := v.n + n
	if now < 0 {
		panic(fmt.Sprintf("policy: rule set %d entry %s count below zero", s.ID, e))
	}
	if !s.full {
		if v.epoch != c.epoch {
			if len(s.touched) == 0 {
				c.markChanged(s)
			}
			v.epoch, v.touch = c.epoch, int32(len(s.touched))
			s.touched = append(s.touched, touch{k: k, was: v.n > 0})
		}
		s.touched[v.touch].n = now
	}
	v.n = now
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

func setID(s *ruleSet) RuleSetID {
	if s == nil {
		return RuleSetAllowAll
	}
	return s.ID
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

// putPolicy adds or replaces a policy and brings every affected rule set and endpoint up to
// date.
func (c *Compiler) putPolicy(cp *compiledPolicy) {
	old := c.cluster.compiled[cp.key]
	var removed []*identity
	c.cluster.putPolicy(cp)
	added := c.addPrefixes(cp)
	c.computePeers(cp)
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
		c.dropPeers(old)
		removed = c.removePrefixes(old)
	}
	c.refreshIPBlocks(added, removed)
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
	c.dropPeers(cp)
	c.refreshIPBlocks(nil, c.removePrefixes(cp))
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

// reselect takes policy gone out of, and puts policy came into, the selecting policies of the
// identities of a namespace it selects (either may be nil), and brings the rule sets of their
// endpoints up to date. A rule set whose endpoints all move to one new origin that
// no set has yet is renamed in place: only the entries of the policies that joined or left
// it change, and its endpoints keep their rule set id. A policy event typically moves whole
// rule sets (the endpoints of a set share their selecting policies), so its delta holds the
// policy's own entries instead of a copy of every entry of every set it touches.
func (c *Compiler) reselect(ns string, gone, came *compiledPolicy) {
	var moves []*groupMove
	for id := range c.nsIdentities[ns] {
		sel, changed := reselectOne(id, gone, came)
		if !changed[Ingress] && !changed[Egress] {
			continue
		}
		id.sel = sel
		// A direction whose policies did not change keeps its set. Without a named ingress
		// port every group of the identity has the same origin: build it once.
		var shared [2]string
		var perSig [2]bool
		for dir := range 2 {
			if changed[dir] {
				perSig[dir] = namedIngress(Direction(dir), sel[dir])
				if !perSig[dir] {
					shared[dir] = origin(Direction(dir), sel[dir], "")
				}
			}
		}
		for _, g := range id.groups {
			m := &groupMove{id: id, g: g, to: shared}
			for dir := range 2 {
				if !changed[dir] {
					continue
				}
				if perSig[dir] {
					m.to[dir] = origin(Direction(dir), sel[dir], g.sig)
				}
				m.move[dir] = originOf(g.sets[dir]) != m.to[dir]
			}
			if m.move[Ingress] || m.move[Egress] {
				moves = append(moves, m)
			}
		}
	}
	if len(moves) == 0 {
		return
	}
	// Which sets see all their endpoints leave for one origin?
	type plan struct {
		to    string
		n     int
		whole bool
		first *groupMove
	}
	plans := map[*ruleSet]*plan{}
	var order []*ruleSet
	for _, m := range moves {
		for dir := range 2 {
			s, to := m.g.sets[dir], m.to[dir]
			if s == nil || !m.move[dir] {
				continue
			}
			p := plans[s]
			if p == nil {
				p = &plan{to: to, whole: to != "", first: m}
				plans[s] = p
				order = append(order, s)
			} else if p.to != to {
				p.whole = false
			}
			p.n += len(m.g.eps)
		}
	}
	slices.SortFunc(order, func(a, b *ruleSet) int { return cmp.Compare(a.ID, b.ID) })
	for _, s := range order {
		p := plans[s]
		if _, taken := c.setByOrigin[p.to]; !p.whole || p.n != s.refs || taken {
			continue
		}
		c.renameSet(s, p.to, p.first.id.sel[s.Direction], p.first.g.eps[0].Pod)
	}
	// The rest move group by group, in the order of their first endpoint so new rule set ids
	// are deterministic.
	moves = slices.DeleteFunc(moves, func(m *groupMove) bool {
		for dir := range 2 {
			m.move[dir] = m.move[dir] && originOf(m.g.sets[dir]) != m.to[dir]
		}
		if !m.move[Ingress] && !m.move[Egress] {
			return true // renamed
		}
		m.first = m.g.eps[0].ID
		for _, ep := range m.g.eps[1:] {
			m.first = min(m.first, ep.ID)
		}
		return false
	})
	slices.SortFunc(moves, func(a, b *groupMove) int { return cmp.Compare(a.first, b.first) })
	// Origins hold every selecting policy's key: building and hashing one per group adds up,
	// so the sets acquired here are kept by origin.
	acquired := map[string]*ruleSet{}
	for _, m := range moves {
		g, n := m.g, len(m.g.eps)
		old, sets := g.sets, g.sets
		for dir := range 2 {
			if !m.move[dir] {
				continue
			}
			s, ok := acquired[m.to[dir]]
			switch {
			case !ok:
				s = c.acquireOrigin(Direction(dir), m.id.sel[dir], g.eps[0].Pod, m.to[dir])
				acquired[m.to[dir]] = s
				if s != nil {
					s.refs += n - 1
				}
			case s != nil:
				s.refs += n
			}
			sets[dir] = s
		}
		for _, ep := range g.eps {
			c.d.touch(ep, false)
			ep.sets = sets
			ep.Ingress, ep.Egress = setID(sets[Ingress]), setID(sets[Egress])
		}
		for dir := range 2 {
			if m.move[dir] {
				c.releaseSet(old[dir], n)
			}
		}
		g.sets = sets
	}
}

// groupMove is where reselect sends a group of an identity's endpoints: to the origin to in
// the directions move marks.
type groupMove struct {
	id    *identity
	g     *epGroup
	to    [2]string
	move  [2]bool
	first uint32 // the group's lowest endpoint id
}

// reselectOne returns an identity's selecting policies without gone and with came when came
// selects it, and in which directions they changed.
func reselectOne(id *identity, gone, came *compiledPolicy) ([2][]*compiledPolicy, [2]bool) {
	sel, changed := id.sel, [2]bool{}
	in := came != nil && came.subject.Matches(labels.Set(id.info.PodLabels))
	for dir := range 2 {
		i := slices.Index(sel[dir], gone)
		add := in && came.applies[dir]
		if gone == nil || i < 0 {
			if !add {
				continue
			}
		}
		s := slices.Clone(sel[dir])
		if gone != nil && i >= 0 {
			s = slices.Delete(s, i, i+1)
		}
		if add {
			j, _ := slices.BinarySearchFunc(s, came.key, func(cp *compiledPolicy, key string) int { return strings.Compare(cp.key, key) })
			s = slices.Insert(s, j, came)
		}
		sel[dir], changed[dir] = s, true
	}
	return sel, changed
}

func originOf(s *ruleSet) string {
	if s == nil {
		return ""
	}
	return s.origin
}

// namedIngress says whether the origin of a set of selecting policies depends on the pod's
// named ports.
func namedIngress(dir Direction, sel []*compiledPolicy) bool {
	if dir != Ingress {
		return false
	}
	for _, cp := range sel {
		if cp.hasNamedIngress {
			return true
		}
	}
	return false
}

// renameSet gives a rule set a new origin and selecting policies, and changes its entries by
// what the policies that left and joined contribute. pod is one of its endpoints' pods, whose
// named ports the new origin resolves (every endpoint of the set has the same). When the named
// ports that ingress rules resolve against change, the kept policies that use them are taken
// back with the old ports and contributed again with the new.
func (c *Compiler) renameSet(s *ruleSet, to string, sel []*compiledPolicy, pod *Pod) {
	keep := make(map[*compiledPolicy]bool, len(sel))
	for _, cp := range sel {
		keep[cp] = true
	}
	had := make(map[*compiledPolicy]bool, len(s.policies))
	repo := namedIngress(s.Direction, sel) &&
		portSignature(pod) != portSignature(&Pod{Ports: s.ports})
	var redo []*compiledPolicy
	for _, cp := range s.policies {
		had[cp] = true
		switch {
		case !keep[cp]:
			c.contribute(s, cp, -1)
			c.dropPolicySet(cp.key, s)
		case repo && cp.hasNamedIngress:
			c.contribute(s, cp, -1)
			redo = append(redo, cp)
		}
	}
	if repo {
		s.ports = slices.Clone(pod.Ports)
	}
	for _, cp := range redo {
		c.contribute(s, cp, 1)
	}
	for _, cp := range sel {
		if had[cp] {
			continue
		}
		c.contribute(s, cp, 1)
		c.addPolicySet(cp.key, s)
	}
	c.d.renamed[s.ID] = true
	delete(c.setByOrigin, s.origin)
	s.origin = to
	c.setByOrigin[to] = s
	s.policies = slices.Clone(sel)
	s.Policies = s.Policies[:0]
	for _, cp := range sel {
		s.Policies = append(s.Policies, cp.key)
	}
}

// contribute adds (n = 1) or takes back (n = -1) every entry one policy gives a rule set.
func (c *Compiler) contribute(s *ruleSet, cp *compiledPolicy, n int32) {
	for _, r := range cp.rules[s.Direction] {
		if len(r.peers) == 0 {
			c.forPorts(s, r, IdentityAny, func(e Entry) { c.bump(s, e, n) })
			continue
		}
		for _, pe := range r.peers {
			for _, id := range *c.peerIDs[pe] {
				c.forPorts(s, r, id, func(e Entry) { c.bump(s, e, n) })
			}
		}
	}
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

// bumpRule adds (n = 1) or takes back (n = -1) what one rule contributes for one peer identity
// to every rule set of the policy in that direction.
func (c *Compiler) bumpRule(cp *compiledPolicy, dir Direction, r *compiledRule, id Identity, n int32) {
	if ps := c.setsByPolicy[cp.key]; ps != nil {
		for _, s := range ps[dir] {
			c.forPorts(s, r, id, func(e Entry) { c.bump(s, e, n) })
		}
	}
}

// addPolicySet notes that policy key selects the endpoints of set s.
func (c *Compiler) addPolicySet(key string, s *ruleSet) {
	ps := c.setsByPolicy[key]
	if ps == nil {
		ps = new([2][]*ruleSet)
		c.setsByPolicy[key] = ps
	}
	ps[s.Direction] = append(ps[s.Direction], s)
}

// dropPolicySet undoes addPolicySet.
func (c *Compiler) dropPolicySet(key string, s *ruleSet) {
	ps := c.setsByPolicy[key]
	l := ps[s.Direction]
	i := slices.Index(l, s)
	l[i] = l[len(l)-1]
	l[len(l)-1] = nil
	ps[s.Direction] = l[:len(l)-1]
	if len(ps[Ingress])+len(ps[Egress]) == 0 {
		delete(c.setsByPolicy, key)
	}
}

// finish brings the sorted views of changed rule sets up to date and returns the entries that
// appeared and vanished, sorted by set and entry (nothing when compiling from scratch). A new
// set sorts its counts; a removed one loses the entries it had at the start of the event; the
// others compare their touched entries' counts with how they started and merge the difference.
func (c *Compiler) finish() (added, removed []RuleSetEntry) {
	// Sorted by id without following the pointers: hundreds of sets may have changed, each
	// a cache miss away.
	type byID struct {
		id RuleSetID
		s  *ruleSet
	}
	order := make([]byID, 0, len(c.changed))
	for _, s := range c.changed {
		order = append(order, byID{s.ID, s})
	}
	clear(c.changed)
	c.changed = c.changed[:0]
	slices.SortFunc(order, func(a, b byID) int { return cmp.Compare(a.id, b.id) })
	sets := make([]*ruleSet, len(order))
	for i, o := range order {
		sets[i] = o.s
	}
	incremental := c.d != nil
	if incremental { // at most this many changes: size the delta once
		var na, nr int
		for _, s := range sets {
			switch {
			case s.full:
				na += s.counts.len()
			case s.refs == 0:
				nr += len(s.Entries)
			default:
				for _, t := range s.touched {
					switch {
					case !t.was && t.n > 0:
						na++
					case t.was && t.n == 0:
						nr++
					}
				}
			}
		}
		added, removed = make([]RuleSetEntry, 0, na), make([]RuleSetEntry, 0, nr)
	}
	for _, s := range sets {
		dead := s.refs == 0
		switch {
		case s.full:
			s.full = false
			if dead {
				continue // born and gone in one event
			}
			s.Entries = s.Entries[:0]
			var zero []entryKey
			s.counts.each(func(k entryKey, v count) {
				if v.n == 0 {
					zero = append(zero, k)
					return
				}
				s.Entries = append(s.Entries, c.entry(k))
			})
			for _, k := range zero {
				s.counts.remove(k)
			}
			SortEntries(s.Entries)
			if incremental {
				added = appendSet(added, s, s.Entries)
			}
		case dead:
			removed = appendSet(removed, s, s.Entries)
		default:
			add, del := c.scratch[0][:0], c.scratch[1][:0]
			for _, t := range s.touched {
				switch {
				case !t.was && t.n > 0:
					add = append(add, c.entry(t.k))
				case t.n == 0:
					if t.was {
						del = append(del, c.entry(t.k))
					}
					s.counts.remove(t.k)
				}
			}
			s.touched = s.touched[:0]
			SortEntries(add)
			SortEntries(del)
			if n := len(s.Entries); n+len(add) > cap(s.Entries) && n >= 64 {
				// Sets that gain an entry with every new identity fill up in step: a per-set
				// share of extra room (a quarter to three quarters) spreads their copies.
				extra := n/4 + int(jitter(uint32(s.ID), uint32(n))%uint32(n/2+1))
				s.Entries = slices.Grow(s.Entries, len(add)+extra)
			}
			s.Entries = mergeEntries(s.Entries, add, del)
			added = appendSet(added, s, add)
			removed = appendSet(removed, s, del)
			c.scratch = [2][]Entry{add, del} // nothing keeps them: reuse for the next set
		}
	}
	return added, removed
}

func appendSet(out []RuleSetEntry, s *ruleSet, es []Entry) []RuleSetEntry {
	for _, e := range es {
		out = append(out, RuleSetEntry{s.ID, s.Direction, e})
	}
	return out
}

// mergeEntries adds and removes sorted entries from sorted entries, in place: deletions
// compact the list from the first one on, and additions merge in from the back, so adding a
// new identity's entries, which go near the end, moves only what lies after them.
func mergeEntries(sorted, add, del []Entry) []Entry {
	if len(add) == 0 && len(del) == 0 {
		return sorted
	}
	if len(add)+len(del) <= 8 { // a few: search for each
		for _, e := range del {
			if i, found := searchFromEnd(sorted, e); found {
				sorted = slices.Delete(sorted, i, i+1)
			}
		}
		for _, e := range add {
			if i, found := searchFromEnd(sorted, e); !found {
				sorted = slices.Insert(sorted, i, e)
			}
		}
		return sorted
	}
	if len(del) > 0 {
		w, _ := slices.BinarySearchFunc(sorted, del[0], CompareEntries)
		for _, e := range sorted[w:] {
			if len(del) > 0 && CompareEntries(del[0], e) == 0 {
				del = del[1:]
				continue
			}
			sorted[w] = e
			w++
		}
		clear(sorted[w:]) // let go of the named ports' strings
		sorted = sorted[:w]
	}
	n, m := len(sorted), len(add)
	sorted = slices.Grow(sorted, m)[:n+m]
	for i, j, k := n-1, m-1, n+m-1; j >= 0; k-- {
		if i >= 0 && CompareEntries(sorted[i], add[j]) > 0 {
			sorted[k] = sorted[i]
			i--
		} else {
			sorted[k] = add[j]
			j--
		}
	}
	return sorted
}

// searchFromEnd is slices.BinarySearchFunc(es, e, CompareEntries), galloping from the end: a
// new identity has the highest number so far, and its entries go in just before the few CIDR
// entries at the end of a set, where a binary search over the whole set would take a cache
// miss per probe.
func searchFromEnd(es []Entry, e Entry) (int, bool) {
	// The insertion point lies in [lo, hi]: es[:lo] < e <= es[hi:].
	lo, hi := 0, len(es)
	for step := 1; hi > 0; step *= 2 {
		i := max(len(es)-step, 0)
		if CompareEntries(es[i], e) < 0 {
			lo = i + 1
			break
		}
		hi = i
	}
	i, _ := slices.BinarySearchFunc(es[lo:hi], e, CompareEntries)
	at := lo + i
	return at, at < len(es) && CompareEntries(es[at], e) == 0
}

// SortEntries sorts entries by peer, protocol, port, end port and port name.
//
// Big lists (a policy event may add thousands of entries to a set) are sorted by peer with a
// byte-wise radix sort, and only runs of one peer are compared entry by entry: most entries
// of a set differ by peer, and comparison sorting moved and compared 40-byte entries
// log2(n) times each.
func SortEntries(es []Entry) {
	if len(es) < 256 {
		slices.SortFunc(es, CompareEntries)
		return
	}
	tmp := make([]Entry, len(es))
	src, dst := es, tmp
	for shift := 0; shift < 32; shift += 8 {
		var counts [256]int
		for i := range src {
			counts[byte(src[i].Peer>>shift)]++
		}
		if counts[byte(src[0].Peer>>shift)] == len(src) {
			continue // every peer has this byte: the pass would change nothing
		}
		pos := 0
		for b, n := range counts {
			counts[b] = pos
			pos += n
		}
		for i := range src {
			b := byte(src[i].Peer >> shift)
			dst[counts[b]] = src[i]
			counts[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &es[0] {
		copy(es, src)
	}
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && es[j].Peer == es[i].Peer {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(es[i:j], CompareEntries)
		}
		i = j
	}
}

// CompareEntries orders entries by peer, protocol, port, end port and port name. Early returns,
// not cmp.Or, which would evaluate every comparison: deltas of big policy events sort
// thousands of entries.
func CompareEntries(a, b Entry) int {
	if a.Peer != b.Peer {
		return cmp.Compare(a.Peer, b.Peer)
	}
	if a.Proto != b.Proto {
		return cmp.Compare(a.Proto, b.Proto)
	}
	if a.Port != b.Port {
		return cmp.Compare(a.Port, b.Port)
	}
	if a.EndPort != b.EndPort {
		return cmp.Compare(a.EndPort, b.EndPort)
	}
	return strings.Compare(a.NamedPort, b.NamedPort)
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
