package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// randomWorld builds random clusters, policies, flows and churn from a seed. It deliberately
// uses a small vocabulary so that selectors, ports and prefixes collide often.
type randomWorld struct {
	r      *rand.Rand
	nextIP uint32
	nextID int
}

func newRandomWorld(seed uint64) *randomWorld {
	return &randomWorld{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), nextIP: 1}
}

var (
	rwNamespaces = []string{"x", "y", "z"}
	rwApps       = []string{"a", "b", "c", "d"}
	rwTiers      = []string{"web", "db"}
	rwPortNames  = []string{"http", "dns", "metrics"}
)

func (w *randomWorld) pick(s []string) string { return s[w.r.IntN(len(s))] }

func (w *randomWorld) labels() map[string]string {
	m := map[string]string{"app": w.pick(rwApps)}
	if w.r.IntN(2) == 0 {
		m["tier"] = w.pick(rwTiers)
	}
	if w.r.IntN(4) == 0 {
		m["pod-template-hash"] = fmt.Sprintf("h%d", w.r.IntN(100))
	}
	return m
}

func (w *randomWorld) ip() netip.Addr {
	// Pods spread over 198.18.0.0/22 so that random ipBlocks cover some of them.
	n := w.nextIP
	w.nextIP++
	return netip.AddrFrom4([4]byte{198, 18, byte(n >> 8 & 3), byte(n)})
}

func (w *randomWorld) pod() *Pod {
	w.nextID++
	p := &Pod{Namespace: w.pick(rwNamespaces), Name: fmt.Sprintf("p%d", w.nextID), Labels: w.labels(), IP: w.ip()}
	for _, name := range rwPortNames {
		if w.r.IntN(2) == 0 {
			proto := ProtoTCP
			if name == "dns" || w.r.IntN(5) == 0 {
				proto = ProtoUDP
			}
			p.Ports = append(p.Ports, ContainerPort{Name: name, Protocol: proto, Port: uint16(80 + w.r.IntN(4))})
		}
	}
	if len(p.Ports) > 0 && w.r.IntN(6) == 0 {
		// A name declared again, as another container may: only the first one resolves.
		dup := p.Ports[w.r.IntN(len(p.Ports))]
		dup.Port = uint16(80 + w.r.IntN(4))
		p.Ports = append(p.Ports, dup)
		if w.r.IntN(2) == 0 {
			last := len(p.Ports) - 1
			p.Ports[0], p.Ports[last] = p.Ports[last], p.Ports[0]
		}
	}
	return p
}

func (w *randomWorld) selector(pod bool) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch w.r.IntN(5) {
	case 0:
	case 1, 2:
		if pod {
			s.MatchLabels = map[string]string{"app": w.pick(rwApps)}
		} else {
			s.MatchLabels = map[string]string{"team": w.pick([]string{"red", "blue"})}
		}
	case 3:
		key, vals := "app", []string{w.pick(rwApps), w.pick(rwApps)}
		if !pod {
			key, vals = NamespaceNameLabel, []string{w.pick(rwNamespaces)}
		}
		op := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn}[w.r.IntN(2)]
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: vals}}
	case 4:
		key := "tier"
		if !pod {
			key = "team"
		}
		op := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}[w.r.IntN(2)]
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: key, Operator: op}}
	}
	return s
}

var rwPrefixes = []string{"198.18.0.0/23", "198.18.0.0/24", "198.18.1.0/26", "198.18.0.64/28", "198.18.0.5/32",
	"203.0.113.0/24", "203.0.113.0/25", "203.0.113.128/27", "203.0.113.10/32", "0.0.0.0/0"}

func (w *randomWorld) ipBlock() *networkingv1.IPBlock {
	cidr := netip.MustParsePrefix(w.pick(rwPrefixes))
	b := &networkingv1.IPBlock{CIDR: cidr.String()}
	for _, e := range rwPrefixes {
		ep := netip.MustParsePrefix(e)
		if ep.Bits() > cidr.Bits() && cidr.Contains(ep.Addr()) && w.r.IntN(2) == 0 {
			b.Except = append(b.Except, e)
		}
	}
	return b
}

func (w *randomWorld) peers() []networkingv1.NetworkPolicyPeer {
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
			p.IPBlock = w.ipBlock()
		}
		out = append(out, p)
	}
	return out
}

func (w *randomWorld) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for range w.r.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[w.r.IntN(3)]
		if w.r.IntN(4) != 0 {
			p.Protocol = &proto
		}
		switch w.r.IntN(4) {
		case 0:
		case 1:
			v := intstr.FromInt32(int32(80 + w.r.IntN(4)))
			p.Port = &v
		case 2:
			v := intstr.FromInt32(int32(80 + w.r.IntN(2)))
			end := int32(81 + w.r.IntN(3))
			p.Port, p.EndPort = &v, &end
		case 3:
			v := intstr.FromString(w.pick(rwPortNames))
			p.Port = &v
		}
		out = append(out, p)
	}
	return out
}

func (w *randomWorld) policy(ns, name string) *networkingv1.NetworkPolicy {
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
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return np
}

func (w *randomWorld) cluster(t testing.TB, pods, policies int) *Cluster {
	c := NewCluster()
	for i, ns := range rwNamespaces {
		lbl := map[string]string{"team": []string{"red", "blue", "red"}[i]}
		if err := c.AddNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: lbl}}); err != nil {
			t.Fatal(err)
		}
	}
	for range pods {
		if err := c.addPod(w.pod()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range policies {
		if err := c.AddPolicy(w.policy(w.pick(rwNamespaces), fmt.Sprintf("np%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (w *randomWorld) addr(c *Cluster) netip.Addr {
	if w.r.IntN(4) == 0 || len(c.Pods) == 0 {
		// Outside the cluster, or a pod-range address no pod holds.
		if w.r.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{198, 18, byte(w.r.IntN(4)), byte(w.r.IntN(256))})
		}
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(w.r.IntN(256))})
	}
	keys := c.PodKeys()
	return c.Pods[keys[w.r.IntN(len(keys))]].IP
}

func (w *randomWorld) flow(c *Cluster) Flow {
	f := Flow{Src: w.addr(c), Dst: w.addr(c)}
	f.Proto = []Protocol{ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP}[w.r.IntN(4)]
	if f.Proto != ProtoICMP {
		f.Port = uint16(79 + w.r.IntN(6))
	}
	return f
}

func (w *randomWorld) event(c *Cluster, seq int) Event {
	keys := c.PodKeys()
	for {
		switch w.r.IntN(6) {
		case 0:
			return Event{Kind: PodAdd, Pod: w.pod()}
		case 1:
			if len(keys) > 0 {
				return Event{Kind: PodDelete, PodKey: keys[w.r.IntN(len(keys))]}
			}
		case 2:
			if len(keys) > 0 {
				return Event{Kind: PodRelabel, PodKey: keys[w.r.IntN(len(keys))], Labels: w.labels()}
			}
		case 3:
			return Event{Kind: PolicyAdd, Policy: w.policy(w.pick(rwNamespaces), fmt.Sprintf("churn%d", seq))}
		case 4, 5:
			pk := c.PolicyKeys()
			if len(pk) == 0 {
				continue
			}
			k := pk[w.r.IntN(len(pk))]
			if w.r.IntN(2) == 0 {
				return Event{Kind: PolicyRemove, PolicyKey: k}
			}
			ns, name, _ := strings.Cut(k, "/")
			return Event{Kind: PolicyUpdate, Policy: w.policy(ns, name)}
		}
	}
}

// canonical is State.Canonical, short for the tests that compare states.
func canonical(s *State) string { return s.Canonical() }

func checkFlows(t *testing.T, w *randomWorld, s *State, n int, label string) {
	t.Helper()
	c := s.Cluster()
	bad := 0
	for range n {
		f := w.flow(c)
		want, ex := c.Evaluate(f)
		if got := s.Verdict(f); got != want {
			bad++
			if bad <= 5 {
				t.Errorf("%s: %s: compiled %s, reference %s (%s)", label, f, got, want, ex)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d flows disagree", label, bad, n)
	}
}

// TestCompiledMatchesReferenceUnderChurn is the property test: for random clusters, the compiled
// state read by a plain lookup gives the reference verdict on random flows, before and after
// random churn, and the incrementally maintained state equals a fresh compilation.
func TestCompiledMatchesReferenceUnderChurn(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for seed := range seeds {
		w := newRandomWorld(uint64(seed))
		cl := w.cluster(t, 20+w.r.IntN(40), 1+w.r.IntN(8))
		comp, err := Compile(cl, Options{})
		if err != nil {
			t.Fatalf("seed %d: compile: %v", seed, err)
		}
		checkFlows(t, w, comp.State(), 300, fmt.Sprintf("seed %d initial", seed))
		for step := range 30 {
			ev := w.event(cl, step)
			if _, err := comp.Apply(ev); err != nil {
				t.Fatalf("seed %d step %d: %s: %v", seed, step, ev.Kind, err)
			}
			checkFlows(t, w, comp.State(), 60, fmt.Sprintf("seed %d after %s (step %d)", seed, ev.Kind, step))
		}
		fresh, err := Compile(cl.Clone(), Options{})
		if err != nil {
			t.Fatalf("seed %d: fresh compile: %v", seed, err)
		}
		if got, want := canonical(comp.State()), canonical(fresh.State()); got != want {
			t.Fatalf("seed %d: incremental state differs from a fresh compile:\n%s", seed, firstDiff(got, want))
		}
	}
}

// firstDiff shows the first differing line of two renderings, and its neighbours.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			lo := max(0, i-2)
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s\ncontext (got):\n%s", i, gl, wl, strings.Join(g[lo:min(len(g), i+1)], "\n"))
		}
	}
	return "(no difference)"
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// FuzzCompiledMatchesReference lets the fuzzer choose the random world, its size and the churn
// it goes through; the compiled lookup must agree with the reference throughout, and the
// incremental state must equal a fresh compile.
func FuzzCompiledMatchesReference(f *testing.F) {
	f.Add(uint64(1), uint8(20), uint8(3), uint8(10))
	f.Add(uint64(99), uint8(50), uint8(8), uint8(30))
	f.Fuzz(func(t *testing.T, seed uint64, pods, policies, events uint8) {
		w := newRandomWorld(seed)
		cl := w.cluster(t, int(pods%64), int(policies%12))
		comp, err := Compile(cl, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkFlows(t, w, comp.State(), 100, "initial")
		m := newMirror(comp.State())
		for step := range int(events % 40) {
			ev := w.event(cl, step)
			d, err := comp.Apply(ev)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, ev.Kind, err)
			}
			checkFlows(t, w, comp.State(), 20, fmt.Sprintf("after %s", ev.Kind))
			// What a backend holds from deltas alone, and the compiler's own bookkeeping.
			if err := m.apply(d); err != nil {
				t.Fatalf("step %d %s: delta cannot be applied: %v", step, ev.Kind, err)
			}
			if err := m.equal(comp.State()); err != nil {
				t.Fatalf("step %d %s: state after delta differs: %v", step, ev.Kind, err)
			}
			if err := checkBookkeeping(comp); err != nil {
				t.Fatalf("step %d %s: %v", step, ev.Kind, err)
			}
		}
		fresh, err := Compile(cl.Clone(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := canonical(comp.State()), canonical(fresh.State()); got != want {
			t.Fatal(firstDiff(got, want))
		}
	})
}
