package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// Decision is the outcome of one direction of a flow at one endpoint.
type Decision struct {
	// Enforced is false when the direction was not checked: the peer on that side is not a pod.
	Enforced bool
	// Isolated is true when at least one policy selects the endpoint in this direction.
	Isolated bool
	// Endpoint is the pod the direction was checked at ("namespace/name").
	Endpoint string
	// Policy and Rule name what allowed the flow (Rule is the index in the policy's ingress or
	// egress list); empty when not isolated or denied.
	Policy string
	Rule   int
	// Policies are the policies that select the endpoint in this direction, sorted.
	Policies []string
	Allowed  bool
}

// Explanation says why the reference evaluator decided as it did.
type Explanation struct {
	Self    bool
	Egress  Decision
	Ingress Decision
}

func (d Decision) describe(dir Direction) string {
	switch {
	case !d.Enforced:
		return ""
	case !d.Isolated:
		return fmt.Sprintf("%s of %s: not isolated", dir, d.Endpoint)
	case d.Allowed:
		return fmt.Sprintf("%s of %s: allowed by %s %s[%d]", dir, d.Endpoint, d.Policy, dir, d.Rule)
	}
	return fmt.Sprintf("%s of %s: isolated by %s and no rule matched", dir, d.Endpoint, strings.Join(d.Policies, ", "))
}

func (e Explanation) String() string {
	if e.Self {
		return "a pod reaching its own IP is always allowed"
	}
	var parts []string
	for _, s := range []string{e.Egress.describe(Egress), e.Ingress.describe(Ingress)} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return "neither end is a pod: nothing enforces this flow"
	}
	return strings.Join(parts, "; ")
}

// Evaluate is the reference evaluator: it decides a flow straight from the NetworkPolicy
// objects, with the full pod labels, following the spec and the readings in the package
// documentation. It is the truth every backend is tested against.
func (c *Cluster) Evaluate(f Flow) (Verdict, Explanation) {
	src, srcPod := c.podsByIP[f.Src]
	dst, dstPod := c.podsByIP[f.Dst]
	var ex Explanation
	if srcPod && dstPod && src == dst {
		ex.Self = true
		return Allow, ex
	}
	if srcPod {
		ex.Egress = c.decide(src, Egress, f, dst, f.Dst)
	}
	if dstPod {
		ex.Ingress = c.decide(dst, Ingress, f, src, f.Src)
	}
	ok := (!ex.Egress.Enforced || ex.Egress.Allowed) && (!ex.Ingress.Enforced || ex.Ingress.Allowed)
	if ok {
		return Allow, ex
	}
	return Deny, ex
}

// EvaluateAfter is Evaluate as it would be after a policy event (add, update or remove),
// without applying it: the cluster is changed for the evaluation and put back as it was. It is
// not safe for concurrent use with anything else that reads the cluster.
func (c *Cluster) EvaluateAfter(ev Event, f Flow) (Verdict, error) {
	var key string
	var cp *compiledPolicy
	switch ev.Kind {
	case PolicyAdd, PolicyUpdate:
		if ev.Policy == nil {
			return Deny, errors.New("evaluate after: event has no policy")
		}
		var err error
		if cp, err = compilePolicy(DefaultPolicy(ev.Policy)); err != nil {
			return Deny, fmt.Errorf("evaluate after: %w", err)
		}
		key = cp.key
	case PolicyRemove:
		key = ev.PolicyKey
	default:
		return Deny, fmt.Errorf("evaluate after: %s is not a policy event", ev.Kind)
	}
	old, had := c.compiled[key]
	var nsAdded string
	if cp != nil {
		if _, ok := c.Namespaces[cp.ns]; !ok {
			nsAdded = cp.ns
		}
		c.putPolicy(cp)
	} else if had {
		c.removePolicy(key)
	}
	v, _ := c.Evaluate(f)
	if cp != nil {
		c.removePolicy(key)
	}
	if had {
		c.putPolicy(old)
	}
	if nsAdded != "" {
		delete(c.Namespaces, nsAdded)
	}
	return v, nil
}

// decide checks one direction at endpoint ep; peer is the pod at the other end (nil when it is
// outside the cluster) and peerIP its address.
func (c *Cluster) decide(ep *Pod, dir Direction, f Flow, peer *Pod, peerIP netip.Addr) Decision {
	d := Decision{Enforced: true, Endpoint: ep.Key()}
	keys := c.selecting(ep, dir)
	if len(keys) == 0 {
		d.Allowed = true
		return d
	}
	d.Isolated = true
	d.Policies = keys
	// The port's owner: the destination pod (ep itself on ingress, the peer on egress).
	portOwner := ep
	if dir == Egress {
		portOwner = peer
	}
	for _, k := range keys {
		cp := c.compiled[k]
		for _, r := range cp.rules[dir] {
			if !r.matchesPeer(c, cp.ns, peer, peerIP) || !r.matchesPort(f, portOwner) {
				continue
			}
			d.Allowed, d.Policy, d.Rule = true, k, r.index
			return d
		}
	}
	return d
}

// selecting returns the keys of the policies that select pod in a direction, sorted.
func (c *Cluster) selecting(pod *Pod, dir Direction) []string {
	var keys []string
	set := labels.Set(pod.Labels)
	for k, cp := range c.byNS[pod.Namespace] {
		if cp.applies[dir] && cp.subject.Matches(set) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func (r *compiledRule) matchesPeer(c *Cluster, policyNs string, peer *Pod, ip netip.Addr) bool {
	if len(r.peers) == 0 {
		return true
	}
	for _, pe := range r.peers {
		if pe.ipBlock {
			if pe.containsIP(ip) {
				return true
			}
			continue
		}
		if peer == nil {
			continue
		}
		ns := c.Namespaces[peer.Namespace]
		var nsLabels map[string]string
		if ns != nil {
			nsLabels = ns.Labels
		}
		if pe.matchesPod(policyNs, peer.Namespace, nsLabels, peer.Labels) {
			return true
		}
	}
	return false
}

func (pe *compiledPeer) containsIP(ip netip.Addr) bool {
	if !pe.cidr.Contains(ip) {
		return false
	}
	for _, e := range pe.except {
		if e.Contains(ip) {
			return false
		}
	}
	return true
}

// matchesPod is the selector part of a peer: the namespace selector (or the policy's own
// namespace when absent) AND the pod selector (every pod when absent).
func (pe *compiledPeer) matchesPod(policyNs, podNs string, nsLabels, podLabels map[string]string) bool {
	if pe.nsSel == nil {
		if podNs != policyNs {
			return false
		}
	} else if !pe.nsSel.Matches(labels.Set(nsLabels)) {
		return false
	}
	return pe.podSel == nil || pe.podSel.Matches(labels.Set(podLabels))
}

// matchesPort checks the rule's ports; owner is the destination pod (nil outside the cluster),
// against whose container ports named ports resolve.
func (r *compiledRule) matchesPort(f Flow, owner *Pod) bool {
	if len(r.ports) == 0 {
		return true
	}
	for _, p := range r.ports {
		if p.proto != f.Proto {
			continue
		}
		switch {
		case p.name != "":
			if owner == nil {
				continue
			}
			if n, ok := owner.NamedPort(p.name, p.proto); ok && n == f.Port {
				return true
			}
		case p.port == 0:
			return true
		case f.Port >= p.port && f.Port <= p.endPort:
			return true
		}
	}
	return false
}

// selectsPrefix says whether an ipBlock peer selects the CIDR identity of prefix p: p lies
// inside the peer's cidr and inside none of its excepts.
func (pe *compiledPeer) selectsPrefix(p netip.Prefix) bool {
	if !pe.cidr.Contains(p.Addr()) || p.Bits() < pe.cidr.Bits() {
		return false
	}
	for _, e := range pe.except {
		if e.Contains(p.Addr()) && p.Bits() >= e.Bits() {
			return false
		}
	}
	return true
}
