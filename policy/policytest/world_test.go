package policytest

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/policy"
)

// render writes down everything a world drew into a cluster and the events and flows that
// followed, to compare two draws.
func render(t *testing.T, w *World, pods, policies, events, flows int) string {
	t.Helper()
	c := w.Cluster(pods, policies)
	var b strings.Builder
	for _, k := range c.PodKeys() {
		fmt.Fprintf(&b, "pod %+v\n", *c.Pods[k])
	}
	for _, k := range c.PolicyKeys() {
		j, err := json.Marshal(c.Policies[k])
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "policy %s\n", j)
	}
	for i := range events {
		ev := w.Event(c, i)
		j, err := json.Marshal(ev.Policy)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "event %s %s %v %v %+v %s\n", ev.Kind, ev.PodKey, ev.Labels, ev.PolicyKey, ev.Pod, j)
	}
	keys := c.PodKeys()
	for range flows {
		fmt.Fprintf(&b, "flow %s\n", w.Flow(c, keys))
	}
	return b.String()
}

func TestWorldIsDeterministicBySeed(t *testing.T) {
	for _, opts := range []WorldOptions{{}, {WidePorts: true}} {
		a := render(t, NewWorld(42, opts), 40, 8, 30, 100)
		if b := render(t, NewWorld(42, opts), 40, 8, 30, 100); a != b {
			t.Fatalf("%+v: two worlds of seed 42 differ", opts)
		}
		if c := render(t, NewWorld(43, opts), 40, 8, 30, 100); a == c {
			t.Fatalf("%+v: the worlds of seeds 42 and 43 are the same", opts)
		}
	}
}

// The differential tests rely on the world drawing every feature below, and on what
// WidePorts adds appearing only with it. Over a few seeds, each must turn up.
func TestWorldDrawsEveryFeature(t *testing.T) {
	for _, wide := range []bool{false, true} {
		t.Run(fmt.Sprintf("wide=%t", wide), func(t *testing.T) {
			seen := map[string]int{}
			for seed := range 8 {
				w := NewWorld(uint64(seed), WorldOptions{WidePorts: wide})
				c := w.Cluster(60, 10)
				comp, err := policy.Compile(c, policy.Options{})
				if err != nil {
					t.Fatalf("seed %d: compile: %v", seed, err)
				}
				for _, k := range c.PodKeys() {
					p := c.Pods[k]
					if _, ok := p.Labels["pod-template-hash"]; ok {
						seen["pod with a pod-template-hash"]++
					}
					for i, cp := range p.Ports {
						if slices.ContainsFunc(p.Ports[:i], func(q policy.ContainerPort) bool { return q.Name == cp.Name && q.Protocol == cp.Protocol }) {
							seen["pod declaring a port name twice"]++
						}
					}
				}
				for _, k := range c.PolicyKeys() {
					notePolicy(seen, c.Policies[k])
				}
				for step := range 40 {
					ev := w.Event(c, step)
					seen["event "+ev.Kind.String()]++
					if ev.Policy != nil {
						notePolicy(seen, ev.Policy)
					}
					if _, err := comp.Apply(ev); err != nil {
						t.Fatalf("seed %d step %d: the world drew an event the compiler rejects: %s: %v", seed, step, ev.Kind, err)
					}
				}
				keys := c.PodKeys()
				for range 400 {
					f := w.Flow(c, keys)
					for _, a := range []netip.Addr{f.Src, f.Dst} {
						_, pod := c.PodByIP(a)
						switch {
						case pod:
							seen["flow end at a pod"]++
						case netip.MustParsePrefix("198.18.0.0/15").Contains(a):
							seen["flow end at a pod address no pod holds"]++
						default:
							seen["flow end outside the cluster"]++
						}
					}
					seen["flow over "+f.Proto.String()]++
					if f.Port > 1000 {
						seen["wide: flow to a high port"]++
					}
					if v, _ := c.Evaluate(f); v == policy.Allow {
						seen["flow allowed"]++
					} else {
						seen["flow denied"]++
					}
				}
			}
			want := []string{"pod with a pod-template-hash", "pod declaring a port name twice",
				"selector In", "selector NotIn", "selector Exists", "selector DoesNotExist",
				"namespace selector on the namespace name", "ipBlock with except", "ipBlock of a pod's address",
				"port by name", "port range", "port without protocol",
				"flow end at a pod", "flow end at a pod address no pod holds", "flow end outside the cluster",
				"flow over TCP", "flow over UDP", "flow over SCTP", "flow over ICMP", "flow allowed", "flow denied"}
			for _, k := range []policy.EventKind{policy.PodAdd, policy.PodDelete, policy.PodRelabel, policy.PolicyAdd, policy.PolicyUpdate, policy.PolicyRemove} {
				want = append(want, "event "+k.String())
			}
			for _, f := range want {
				if seen[f] == 0 {
					t.Errorf("no %s in 8 worlds", f)
				}
			}
			for _, f := range []string{"wide: port range", "wide: flow to a high port"} {
				if got := seen[f] > 0; got != wide {
					t.Errorf("%s seen %d times with WidePorts %t", f, seen[f], wide)
				}
			}
		})
	}
}

// notePolicy counts the features of a policy.
func notePolicy(seen map[string]int, np *networkingv1.NetworkPolicy) {
	var peers []networkingv1.NetworkPolicyPeer
	for _, r := range np.Spec.Ingress {
		peers = append(peers, r.From...)
		notePorts(seen, r.Ports)
	}
	for _, r := range np.Spec.Egress {
		peers = append(peers, r.To...)
		notePorts(seen, r.Ports)
	}
	noteSelector(seen, &np.Spec.PodSelector)
	for _, p := range peers {
		noteSelector(seen, p.PodSelector)
		noteSelector(seen, p.NamespaceSelector)
		if ns := p.NamespaceSelector; ns != nil && len(ns.MatchExpressions) > 0 && ns.MatchExpressions[0].Key == policy.NamespaceNameLabel {
			seen["namespace selector on the namespace name"]++
		}
		if b := p.IPBlock; b != nil {
			if len(b.Except) > 0 {
				seen["ipBlock with except"]++
			}
			if b.CIDR == "198.18.0.5/32" || b.CIDR == "198.18.0.70/32" {
				seen["ipBlock of a pod's address"]++
			}
		}
	}
}

func noteSelector(seen map[string]int, s *metav1.LabelSelector) {
	if s == nil {
		return
	}
	for _, r := range s.MatchExpressions {
		seen["selector "+string(r.Operator)]++
	}
}

func notePorts(seen map[string]int, ports []networkingv1.NetworkPolicyPort) {
	for _, p := range ports {
		if p.Protocol == nil {
			seen["port without protocol"]++
		}
		switch {
		case p.Port == nil:
		case p.Port.Type == intstr.String:
			seen["port by name"]++
		case p.EndPort != nil && p.Port.IntVal >= 1000:
			seen["wide: port range"]++
		case p.EndPort != nil:
			seen["port range"]++
		}
	}
}
