package datapath

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"netpolbench/internal/testenv"
	"netpolbench/policy"
)

// needBPF skips (fails under CI) when the test cannot load BPF programs.
func needBPF(tb testing.TB) {
	tb.Helper()
	testenv.NeedKernel(tb, Needs...)
}

// mustOpen opens a datapath and closes it when the test ends.
func mustOpen(tb testing.TB, opts Options) *Datapath {
	tb.Helper()
	needBPF(tb)
	d, err := Open(opts)
	if err != nil {
		tb.Fatalf("open datapath: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("close datapath: %v", err)
		}
	})
	return d
}

// mustSynced opens a datapath sized for the compiled state and syncs it.
func mustSynced(tb testing.TB, s *policy.State, opts Options) *Datapath {
	tb.Helper()
	if opts.Sizes == (Sizes{}) {
		opts.Sizes = SizesFor(s, opts.Layout)
	}
	d := mustOpen(tb, opts)
	if _, err := d.Sync(s); err != nil {
		tb.Fatalf("sync: %v", err)
	}
	return d
}

// Cluster building blocks for the semantic tables.

type podSpec struct {
	ns, name, ip string
	labels       map[string]string
	ports        []corev1.ContainerPort
}

func k8sPod(p podSpec) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: p.ports}}},
		Status:     corev1.PodStatus{PodIP: p.ip},
	}
}

func buildCluster(tb testing.TB, nsLabels map[string]map[string]string, pods []podSpec, pols []*networkingv1.NetworkPolicy) *policy.Cluster {
	tb.Helper()
	c := policy.NewCluster()
	names := make([]string, 0, len(nsLabels))
	for n := range nsLabels {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := c.AddNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: nsLabels[n]}}); err != nil {
			tb.Fatal(err)
		}
	}
	for _, p := range pods {
		if err := c.AddPod(k8sPod(p)); err != nil {
			tb.Fatal(err)
		}
	}
	for _, np := range pols {
		if err := c.AddPolicy(np); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

func netpol(ns, name string, sel map[string]string, types []networkingv1.PolicyType,
	in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel},
			PolicyTypes: types, Ingress: in, Egress: eg},
	}
}

func podPeer(sel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: sel}}
}

func nsPeer(sel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel}}
}

func cidrPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(proto corev1.Protocol, p int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(p)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func portRange(proto corev1.Protocol, p, end int32) networkingv1.NetworkPolicyPort {
	np := port(proto, p)
	np.EndPort = &end
	return np
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
}

func protoOnly(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

// l4 is one column group of a truth table.
type l4 struct {
	proto policy.Protocol
	port  uint16
}

func (p l4) String() string {
	if p.proto == policy.ProtoICMP {
		return "ICMP"
	}
	return fmt.Sprintf("%s/%d", p.proto, p.port)
}

// truthTable decides every src × dst × l4 with the reference evaluator and with the decider.
// On a mismatch it prints, per l4, the matrix (rows: source, columns: destination; "a"/"d" for
// agreeing allow/deny, "A!"/"D!" for the decider's disagreeing verdict) and agree/disagree
// counts per protocol.
func truthTable(t *testing.T, c *policy.Cluster, p policy.Decider, addrs []netip.Addr, cols []l4) {
	t.Helper()
	type count struct{ agree, disagree int }
	perProto := map[policy.Protocol]*count{}
	var b strings.Builder
	bad := 0
	for _, col := range cols {
		cnt := perProto[col.proto]
		if cnt == nil {
			cnt = &count{}
			perProto[col.proto] = cnt
		}
		var m strings.Builder
		fmt.Fprintf(&m, "%s\n%-16s", col, "src \\ dst")
		for _, d := range addrs {
			fmt.Fprintf(&m, " %-3s", lastOctet(d))
		}
		m.WriteString("\n")
		colBad := 0
		for _, s := range addrs {
			fmt.Fprintf(&m, "%-16s", s)
			for _, d := range addrs {
				f := policy.Flow{Src: s, Dst: d, Proto: col.proto, Port: col.port}
				want, _ := c.Evaluate(f)
				got, err := p.Verdict(f)
				if err != nil {
					t.Fatalf("verdict %s: %v", f, err)
				}
				cell := "a"
				if got == policy.Deny {
					cell = "d"
				}
				if got != want {
					cell = strings.ToUpper(cell) + "!"
					cnt.disagree++
					colBad++
				} else {
					cnt.agree++
				}
				fmt.Fprintf(&m, " %-3s", cell)
			}
			m.WriteString("\n")
		}
		if colBad > 0 {
			b.WriteString(m.String())
			bad += colBad
		}
	}
	if bad == 0 {
		return
	}
	protos := make([]policy.Protocol, 0, len(perProto))
	for p := range perProto {
		protos = append(protos, p)
	}
	sort.Slice(protos, func(i, j int) bool { return protos[i] < protos[j] })
	for _, p := range protos {
		fmt.Fprintf(&b, "%s: %d agree, %d disagree\n", p, perProto[p].agree, perProto[p].disagree)
	}
	t.Errorf("%d verdicts disagree with the reference evaluator:\n%s", bad, b.String())
}

func lastOctet(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf(".%d", b[3])
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}
