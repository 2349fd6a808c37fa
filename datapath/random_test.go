package datapath

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/policy"
)

// world builds random clusters, policies, flows and churn from a seed, with a small
// vocabulary so selectors, ports and prefixes collide often.
type world struct {
	r      *rand.Rand
	nextIP uint32
	nextID int
}

func newWorld(seed uint64) *world {
	return &world{r: rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1)), nextIP: 1}
}

var (
	wNamespaces = []string{"x", "y", "z"}
	wApps       = []string{"a", "b", "c", "d", "e"}
	wPortNames  = []string{"http", "dns", "metrics"}
	wPrefixes   = []string{"198.18.0.0/23", "198.18.0.0/24", "198.18.1.0/26", "198.18.0.64/28", "198.18.2.0/24", "198.18.0.5/32", "198.18.0.70/32",
		"203.0.113.0/24", "203.0.113.0/25", "203.0.113.128/27", "203.0.113.10/32", "0.0.0.0/0"}
)

func (w *world) pick(s []string) string { return s[w.r.IntN(len(s))] }

func (w *world) labels() map[string]string {
	m := map[string]string{"app": w.pick(wApps)}
	if w.r.IntN(2) == 0 {
		m["tier"] = w.pick([]string{"web", "db"})
	}
	return m
}

func (w *world) pod() *policy.Pod {
	w.nextID++
	n := w.nextIP
	w.nextIP++
	p := &policy.Pod{Namespace: w.pick(wNamespaces), Name: fmt.Sprintf("p%d", w.nextID), Labels: w.labels(),
		IP: netip.AddrFrom4([4]byte{198, 18, byte(n >> 8 & 3), byte(n)})}
	for _, name := range wPortNames {
		if w.r.IntN(2) == 0 {
			proto := policy.ProtoTCP
			if name == "dns" || w.r.IntN(5) == 0 {
				proto = policy.ProtoUDP
			}
			p.Ports = append(p.Ports, policy.ContainerPort{Name: name, Protocol: proto, Port: uint16(80 + w.r.IntN(4))})
		}
	}
	return p
}

func (w *world) selector(pod bool) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch w.r.IntN(5) {
	case 0:
	case 1, 2:
		if pod {
			s.MatchLabels = map[string]string{"app": w.pick(wApps)}
		} else {
			s.MatchLabels = map[string]string{"team": w.pick([]string{"red", "blue"})}
		}
	case 3:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn,
			Values: []string{w.pick(wApps), w.pick(wApps)}}}
	case 4:
		op := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}[w.r.IntN(2)]
		key := "tier"
		if !pod {
			key = "team"
		}
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: key, Operator: op}}
	}
	return s
}

func (w *world) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range w.r.IntN(3) {
		var p networkingv1.NetworkPolicyPeer
		switch w.r.IntN(4) {
		case 0:
			p.PodSelector = w.selector(true)
		case 1:
			p.NamespaceSelector = w.selector(false)
		case 2:
			p.PodSelector, p.NamespaceSelector = w.selector(true), w.selector(false)
		case 3:
			cidr := netip.MustParsePrefix(w.pick(wPrefixes))
			b := &networkingv1.IPBlock{CIDR: cidr.String()}
			for _, e := range wPrefixes {
				ep := netip.MustParsePrefix(e)
				if ep.Bits() > cidr.Bits() && cidr.Contains(ep.Addr()) && w.r.IntN(2) == 0 {
					b.Except = append(b.Except, e)
				}
			}
			p.IPBlock = b
		}
		out = append(out, p)
	}
	return out
}

func (w *world) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for range w.r.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[w.r.IntN(3)]
		if w.r.IntN(4) != 0 {
			p.Protocol = &proto
		}
		switch w.r.IntN(5) {
		case 0:
		case 1:
			v := intstr.FromInt32(int32(80 + w.r.IntN(4)))
			p.Port = &v
		case 2:
			v := intstr.FromInt32(int32(80 + w.r.IntN(2)))
			end := int32(81 + w.r.IntN(3))
			p.Port, p.EndPort = &v, &end
		case 3:
			// Wide ranges: inline in the summary, or expanded when a group has too many spans.
			v := intstr.FromInt32(int32(1000 + w.r.IntN(1000)))
			end := int32(3000 + w.r.IntN(5000))
			p.Port, p.EndPort = &v, &end
		case 4:
			v := intstr.FromString(w.pick(wPortNames))
			p.Port = &v
		}
		out = append(out, p)
	}
	return out
}

func (w *world) policy(ns, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	np.Spec.PodSelector = *w.selector(true)
	for range w.r.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: w.peers(), Ports: w.ports()})
	}
	for range w.r.IntN(3) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: w.peers(), Ports: w.ports()})
	}
	switch w.r.IntN(4) {
	case 0:
		np.Spec.PolicyTypes = ingressOnly
	case 1:
		np.Spec.PolicyTypes = egressOnly
	case 2:
		np.Spec.PolicyTypes = both
	}
	return np
}

func (w *world) cluster(tb testing.TB, pods, policies int) *policy.Cluster {
	tb.Helper()
	c := policy.NewCluster()
	for i, ns := range wNamespaces {
		lbl := map[string]string{"team": []string{"red", "blue", "red"}[i]}
		if err := c.AddNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: lbl}}); err != nil {
			tb.Fatal(err)
		}
	}
	for range pods {
		p := w.pod()
		var ports []corev1.ContainerPort
		for _, cp := range p.Ports {
			ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: int32(cp.Port), Protocol: corev1.Protocol(cp.Protocol.String())})
		}
		if err := c.AddPod(k8sPod(podSpec{ns: p.Namespace, name: p.Name, ip: p.IP.String(), labels: p.Labels, ports: ports})); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range policies {
		if err := c.AddPolicy(w.policy(w.pick(wNamespaces), fmt.Sprintf("np%d", i))); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

func (w *world) addr(c *policy.Cluster, keys []string) netip.Addr {
	if w.r.IntN(5) == 0 || len(keys) == 0 {
		if w.r.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{198, 18, byte(w.r.IntN(4)), byte(w.r.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(w.r.IntN(256))})
	}
	return c.Pods[keys[w.r.IntN(len(keys))]].IP
}

func (w *world) flow(c *policy.Cluster, keys []string) policy.Flow {
	f := policy.Flow{Src: w.addr(c, keys), Dst: w.addr(c, keys)}
	f.Proto = []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP, policy.ProtoICMP}[w.r.IntN(4)]
	switch {
	case f.Proto == policy.ProtoICMP:
	case w.r.IntN(8) == 0:
		f.Port = uint16(500 + w.r.IntN(8000))
	default:
		f.Port = uint16(79 + w.r.IntN(6))
	}
	return f
}

func (w *world) event(c *policy.Cluster, seq int) policy.Event {
	keys := c.PodKeys()
	for {
		switch w.r.IntN(6) {
		case 0:
			return policy.Event{Kind: policy.PodAdd, Pod: w.pod()}
		case 1:
			if len(keys) > 0 {
				return policy.Event{Kind: policy.PodDelete, PodKey: keys[w.r.IntN(len(keys))]}
			}
		case 2:
			if len(keys) > 0 {
				return policy.Event{Kind: policy.PodRelabel, PodKey: keys[w.r.IntN(len(keys))], Labels: w.labels()}
			}
		case 3:
			return policy.Event{Kind: policy.PolicyAdd, Policy: w.policy(w.pick(wNamespaces), fmt.Sprintf("churn%d", seq))}
		case 4, 5:
			pk := c.PolicyKeys()
			if len(pk) == 0 {
				continue
			}
			k := pk[w.r.IntN(len(pk))]
			if w.r.IntN(2) == 0 {
				return policy.Event{Kind: policy.PolicyRemove, PolicyKey: k}
			}
			ns, name, _ := strings.Cut(k, "/")
			return policy.Event{Kind: policy.PolicyUpdate, Policy: w.policy(ns, name)}
		}
	}
}

// dump is Datapath.Dump, failing the test when the maps cannot be read.
func dump(tb testing.TB, d *Datapath) string {
	tb.Helper()
	out, err := d.Dump()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestRandomClustersUnderChurnAgreeWithReference is the differential test: a random cluster
// of about 1,000 pods, at least 100,000 random flows decided through BPF_PROG_TEST_RUN and
// checked against the reference evaluator and the compiled state, with churn applied through
// Update between rounds; at the end the incrementally updated maps equal a full sync's.
func TestRandomClustersUnderChurnAgreeWithReference(t *testing.T) {
	needBPF(t)
	rounds, flowsPerRound, eventsPerRound := 20, 5000, 10
	if testing.Short() {
		rounds, flowsPerRound = 4, 2500
	}
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		t.Run(string(layout), func(t *testing.T) {
			w := newWorld(uint64(len(layout)))
			c := w.cluster(t, 1000, 40)
			comp := mustCompile(t, c)
			s := comp.State()
			// Churn grows rule sets well past SizesFor's doubling; this test is about verdicts.
			sz := SizesFor(s, layout)
			sz.Summaries *= 4
			sz.Policy *= 4
			d := mustSynced(t, s, Options{Layout: layout, Sizes: sz})
			checked := 0
			for round := range rounds {
				keys := c.PodKeys()
				bad := 0
				for range flowsPerRound {
					f := w.flow(c, keys)
					want, ex := c.Evaluate(f)
					if cv := s.Verdict(f); cv != want {
						t.Fatalf("round %d: %s: compiled state says %s, reference %s (%s)", round, f, cv, want, ex)
					}
					got, err := d.Verdict(f)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						bad++
						if bad <= 5 {
							t.Errorf("round %d: %s: ebpf %s, reference %s (%s)", round, f, got, want, ex)
						}
					}
					checked++
				}
				if bad > 0 {
					t.Fatalf("round %d: %d of %d flows disagree", round, bad, flowsPerRound)
				}
				for i := range eventsPerRound {
					ev := w.event(c, round*eventsPerRound+i)
					delta, err := comp.Apply(ev)
					if err != nil {
						continue // a rejected event changes nothing
					}
					if _, err := d.Update(s, delta); err != nil {
						t.Fatalf("round %d: update after %s: %v", round, ev.Kind, err)
					}
				}
			}
			if !testing.Short() && checked < 100000 {
				t.Fatalf("checked %d flows, want at least 100,000", checked)
			}
			fresh := mustSynced(t, s, Options{Layout: layout, Sizes: sz})
			if got, want := dump(t, d), dump(t, fresh); got != want {
				t.Fatalf("maps after incremental updates differ from a full sync:\n%s", diffLines(got, want))
			}
			t.Logf("%d flows checked, %d pods, %d rule sets at the end", checked, len(s.Endpoints()), len(s.RuleSets()))
		})
	}
}

// diffLines lists the lines only one side has.
func diffLines(got, want string) string {
	g, w := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	var out []string
	for l := range g {
		if !w[l] {
			out = append(out, "incremental only: "+l)
		}
	}
	for l := range w {
		if !g[l] {
			out = append(out, "full sync only:   "+l)
		}
	}
	sort.Strings(out)
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}
