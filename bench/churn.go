package bench

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/policy"
	"netpolbench/results"
)

// podRange is where pod addresses come from (the suite's rule); new pods take free ones.
var podRange = netip.MustParsePrefix("198.18.0.0/15")

// churner builds churn events of one kind against the cluster as it is at that moment, so every
// event applies: a deleted pod is never deleted twice, a new pod gets a free address, a relabel
// moves a pod to an existing label set of its namespace. It works on any cluster, generated or
// a user's dump, and draws from its own seeded source so a run is repeatable.
type churner struct {
	r    *rand.Rand
	next int // suffix for generated names
	ip   netip.Addr
	// protected pods are never deleted or relabelled (the pods of a stream under churn).
	protected map[string]bool
}

func (c *churner) protect(key string) {
	if c.protected == nil {
		c.protected = map[string]bool{}
	}
	c.protected[key] = true
}

// unprotected returns keys without the protected pods.
func (c *churner) unprotected(keys []string) []string {
	if len(c.protected) == 0 {
		return keys
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !c.protected[k] {
			out = append(out, k)
		}
	}
	return out
}

func newChurner(seed uint64) *churner {
	return &churner{r: rand.New(rand.NewPCG(seed, 0x6e7062)), ip: podRange.Addr()}
}

// freeIP returns the next pod-range address no pod holds (skipping .0 and .255).
func (c *churner) freeIP(cl *policy.Cluster) (netip.Addr, error) {
	for ip := c.ip.Next(); podRange.Contains(ip); ip = ip.Next() {
		b := ip.As4()
		if b[3] == 0 || b[3] == 255 {
			continue
		}
		if _, taken := cl.PodByIP(ip); !taken {
			c.ip = ip
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("churn: no free address left in %s", podRange)
}

func (c *churner) pick(keys []string) string { return keys[c.r.IntN(len(keys))] }

// events returns the events of one churn kind (results.Event*): one event, or burst events
// for scale-up and scale-down.
func (c *churner) events(cl *policy.Cluster, kind string, burst int) ([]policy.Event, error) {
	pods := cl.PodKeys()
	switch kind {
	case results.EventPodAdd:
		ev, err := c.podAdd(cl, pods)
		return []policy.Event{ev}, err
	case results.EventScaleUp:
		// One deployment scaling up: copies of one pod, all with its label set.
		tmpl := cl.Pods[c.pick(pods)]
		var evs []policy.Event
		for range burst {
			ev, err := c.podLike(cl, tmpl)
			if err != nil {
				return nil, err
			}
			// freeIP moved its cursor past this address, so the next copy gets another.
			evs = append(evs, ev)
		}
		return evs, nil
	case results.EventPodDelete:
		pods = c.unprotected(pods)
		if len(pods) < 2 {
			return nil, fmt.Errorf("churn: too few pods to delete one")
		}
		return []policy.Event{{Kind: policy.PodDelete, PodKey: c.pick(pods)}}, nil
	case results.EventScaleDown:
		pods = c.unprotected(pods)
		n := max(0, min(burst, len(pods)-1))
		var evs []policy.Event
		for _, i := range c.r.Perm(len(pods))[:n] {
			evs = append(evs, policy.Event{Kind: policy.PodDelete, PodKey: pods[i]})
		}
		return evs, nil
	case results.EventRelabel:
		pods = c.unprotected(pods)
		if len(pods) == 0 {
			return nil, fmt.Errorf("churn: no pod to relabel")
		}
		return c.relabel(cl, pods)
	case results.EventPolicyAdd:
		return c.policyAdd(cl, pods)
	case results.EventPolicyUpdate:
		return c.policyUpdate(cl)
	case results.EventPolicyRemove:
		keys := cl.PolicyKeys()
		if len(keys) == 0 {
			return nil, fmt.Errorf("churn: no policy to remove")
		}
		return []policy.Event{{Kind: policy.PolicyRemove, PolicyKey: c.pick(keys)}}, nil
	}
	return nil, fmt.Errorf("churn: unknown event kind %q", kind)
}

func (c *churner) podAdd(cl *policy.Cluster, pods []string) (policy.Event, error) {
	if len(pods) == 0 {
		return policy.Event{}, fmt.Errorf("churn: no pod to copy a label set from")
	}
	return c.podLike(cl, cl.Pods[c.pick(pods)])
}

// podLike is a new pod with tmpl's namespace, labels and ports: a pod of an existing label
// set, which must change no policy entry in an identity-based backend.
func (c *churner) podLike(cl *policy.Cluster, tmpl *policy.Pod) (policy.Event, error) {
	ip, err := c.freeIP(cl)
	if err != nil {
		return policy.Event{}, err
	}
	c.next++
	p := &policy.Pod{
		Namespace: tmpl.Namespace,
		Name:      fmt.Sprintf("npb-churn-%d", c.next),
		Labels:    maps.Clone(tmpl.Labels),
		IP:        ip,
		Ports:     slices.Clone(tmpl.Ports),
	}
	return policy.Event{Kind: policy.PodAdd, Pod: p}, nil
}

// relabel moves a pod to another label set of its namespace (an existing identity when the
// namespace has one), as a rollout that changes a label does.
func (c *churner) relabel(cl *policy.Cluster, pods []string) ([]policy.Event, error) {
	for range 32 {
		p := cl.Pods[c.pick(pods)]
		o := cl.Pods[c.pick(pods)]
		if o.Namespace == p.Namespace && !maps.Equal(o.Labels, p.Labels) {
			return []policy.Event{{Kind: policy.PodRelabel, PodKey: p.Key(), Labels: maps.Clone(o.Labels)}}, nil
		}
	}
	// No second label set nearby: give the pod a new one.
	p := cl.Pods[c.pick(pods)]
	l := maps.Clone(p.Labels)
	if l == nil {
		l = map[string]string{}
	}
	c.next++
	l["npb-churn"] = fmt.Sprint(c.next)
	return []policy.Event{{Kind: policy.PodRelabel, PodKey: p.Key(), Labels: l}}, nil
}

// policyAdd allows one pod's label set to reach another's on a fresh TCP port.
func (c *churner) policyAdd(cl *policy.Cluster, pods []string) ([]policy.Event, error) {
	if len(pods) == 0 {
		return nil, fmt.Errorf("churn: no pods to select")
	}
	dst := cl.Pods[c.pick(pods)]
	src := cl.Pods[c.pick(pods)]
	c.next++
	port := intstr.FromInt32(int32(20000 + c.next%20000))
	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: dst.Namespace, Name: fmt.Sprintf("npb-churn-%d", c.next)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: maps.Clone(dst.Labels)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{
					PodSelector:       &metav1.LabelSelector{MatchLabels: maps.Clone(src.Labels)},
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": src.Namespace}},
				}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}
	return []policy.Event{{Kind: policy.PolicyAdd, Policy: np}}, nil
}

// policyUpdate changes the ports of an existing policy's first ingress rule (or adds one),
// the common edit of a live policy.
func (c *churner) policyUpdate(cl *policy.Cluster) ([]policy.Event, error) {
	keys := cl.PolicyKeys()
	if len(keys) == 0 {
		return nil, fmt.Errorf("churn: no policy to update")
	}
	np := cl.Policies[c.pick(keys)].DeepCopy()
	c.next++
	port := intstr.FromInt32(int32(20000 + c.next%20000))
	tcp := corev1.ProtocolTCP
	pp := networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &port}
	if len(np.Spec.Ingress) > 0 {
		np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, pp)
	} else {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{pp}})
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
	}
	return []policy.Event{{Kind: policy.PolicyUpdate, Policy: np}}, nil
}
