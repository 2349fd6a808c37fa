package bench

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"

	"netpolbench/bench/stamp"
	"netpolbench/policy"
	"netpolbench/testbed"
)

// flowKind is where a flow's ends are: it decides which enforcement points its packets cross.
type flowKind uint8

const (
	podToPod    flowKind = iota // the source's point, then the destination's
	fromOutside                 // the destination's point only
	toOutside                   // the source's point only
	numFlowKinds
)

func (k flowKind) String() string {
	return [...]string{"pod-to-pod", "from-outside", "to-outside"}[k]
}

// flowClass is what a new-flow packet's cost depends on besides the state: which points it
// crosses, the reference's fate of its flow and where a denied one is dropped, and its
// protocol (a UDP datagram meets a conntrack lookup that a TCP SYN skips). Every scale's flow
// list holds the same number of flows of each class, so a figure pooled over classes compares
// across scales and the growth of each path can be fitted apart.
type flowClass struct {
	verdict policy.Verdict
	kind    flowKind
	// deniedAt is policy.Egress for a flow denied by its source's egress policy (dropped at
	// the source's point), policy.Ingress for one denied at its destination, and
	// policy.Ingress (ignored) for an allowed flow.
	deniedAt policy.Direction
	proto    policy.Protocol
}

func (c flowClass) String() string {
	fate := "allow"
	if c.verdict == policy.Deny {
		fate = "deny-at-destination"
		if c.deniedAt == policy.Egress {
			fate = "deny-at-source"
		}
	}
	return fmt.Sprintf("%s/%s/%s", fate, c.kind, strings.ToLower(c.proto.String()))
}

func compareClasses(a, b flowClass) int {
	return cmp.Or(cmp.Compare(a.verdict, b.verdict), cmp.Compare(a.kind, b.kind), cmp.Compare(a.deniedAt, b.deniedAt), cmp.Compare(a.proto, b.proto))
}

// flowQuotas is the number of flows of each class in a list of nAllow allowed and nDeny denied
// flows. Per verdict: three quarters pod to pod, an eighth from outside, an eighth to outside;
// the denied pod-to-pod flows half at the source's point and half at the destination's (from
// outside a flow can only be denied at its destination, to outside only at its source); in
// every cell a third UDP, the rest TCP.
func flowQuotas(nAllow, nDeny int) map[flowClass]int {
	q := map[flowClass]int{}
	split := func(c flowClass, n int) {
		udp := n / 3
		c.proto = policy.ProtoUDP
		q[c] = udp
		c.proto = policy.ProtoTCP
		q[c] = n - udp
	}
	for _, v := range []struct {
		verdict policy.Verdict
		n       int
	}{{policy.Allow, nAllow}, {policy.Deny, nDeny}} {
		kinds := [numFlowKinds]int{v.n - 2*(v.n/8), v.n / 8, v.n / 8}
		if v.verdict == policy.Allow {
			for k, n := range kinds {
				split(flowClass{verdict: policy.Allow, kind: flowKind(k), deniedAt: policy.Ingress}, n)
			}
			continue
		}
		atSource := kinds[podToPod] / 2
		split(flowClass{verdict: policy.Deny, kind: podToPod, deniedAt: policy.Egress}, atSource)
		split(flowClass{verdict: policy.Deny, kind: podToPod, deniedAt: policy.Ingress}, kinds[podToPod]-atSource)
		split(flowClass{verdict: policy.Deny, kind: fromOutside, deniedAt: policy.Ingress}, kinds[fromOutside])
		split(flowClass{verdict: policy.Deny, kind: toOutside, deniedAt: policy.Egress}, kinds[toOutside])
	}
	for c, n := range q {
		if n == 0 {
			delete(q, c)
		}
	}
	return q
}

// classOf is the class of a flow of a list.
func classOf(f stamp.ExpectedFlow) flowClass {
	c := flowClass{verdict: f.Verdict, kind: podToPod, deniedAt: policy.Ingress, proto: f.Proto}
	switch {
	case testbed.OutsideRange.Contains(f.Src.Unmap()):
		c.kind = fromOutside
	case testbed.OutsideRange.Contains(f.Dst.Unmap()):
		c.kind = toOutside
	}
	if f.Verdict == policy.Deny {
		c.deniedAt = f.DeniedAt
	}
	return c
}

// flowMixShort says which classes of flows hold fewer flows than their quota ("" when none):
// the cluster had too few flows of that kind for the draws.
func flowMixShort(flows []stamp.ExpectedFlow, nAllow, nDeny int) string {
	got := map[flowClass]int{}
	for _, f := range flows {
		got[classOf(f)]++
	}
	var short []string
	for c, want := range flowQuotas(nAllow, nDeny) {
		if got[c] < want {
			short = append(short, fmt.Sprintf("%s %d of %d", c, got[c], want))
		}
	}
	slices.Sort(short)
	return strings.Join(short, ", ")
}

// packetFlows draws the frozen flow list of a per-packet measurement from a cluster: up to
// nAllow allowed and nDeny denied flows that the testbed can send as new-flow packets (TCP or
// UDP), each with the reference evaluator's verdict and deny point, filling the quota of each
// class (flowQuotas) whatever the cluster's own mix, so every scale measures the same mix of
// paths. Pod-to-pod flows go to a port the destination declares (TCP 80 when it declares
// none), flows to outside to a common port. The same cluster and seed give the same list.
func packetFlows(cl *policy.Cluster, seed uint64, nAllow, nDeny int) []stamp.ExpectedFlow {
	keys := cl.PodKeys()
	if len(keys) < 2 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x706b74))
	outside := func() netip.Addr {
		b := testbed.OutsideRange.Addr().As4()
		b[3] = byte(1 + rng.IntN(254))
		return netip.AddrFrom4(b)
	}
	pod := func() *policy.Pod { return cl.Pods[keys[rng.IntN(len(keys))]] }
	portOf := func(dst *policy.Pod) (policy.Protocol, uint16, bool) {
		if len(dst.Ports) == 0 {
			return policy.ProtoTCP, 80, true
		}
		cp := dst.Ports[rng.IntN(len(dst.Ports))]
		return cp.Protocol, cp.Port, cp.Protocol == policy.ProtoTCP || cp.Protocol == policy.ProtoUDP
	}
	common := []struct {
		proto policy.Protocol
		port  uint16
	}{{policy.ProtoTCP, 443}, {policy.ProtoTCP, 80}, {policy.ProtoUDP, 53}}
	draw := [numFlowKinds]func() (policy.Flow, bool){
		podToPod: func() (policy.Flow, bool) {
			src, dst := pod(), pod()
			proto, port, ok := portOf(dst)
			return policy.Flow{Src: src.IP, Dst: dst.IP, Proto: proto, Port: port}, ok && src.IP != dst.IP
		},
		fromOutside: func() (policy.Flow, bool) {
			dst := pod()
			proto, port, ok := portOf(dst)
			return policy.Flow{Src: outside(), Dst: dst.IP, Proto: proto, Port: port}, ok
		},
		toOutside: func() (policy.Flow, bool) {
			c := common[rng.IntN(len(common))]
			return policy.Flow{Src: pod().IP, Dst: outside(), Proto: c.proto, Port: c.port}, true
		},
	}
	want := flowQuotas(nAllow, nDeny)
	got := map[flowClass][]stamp.ExpectedFlow{}
	seen := map[policy.Flow]bool{}
	for kind := range numFlowKinds {
		wantKind := 0
		for c, n := range want {
			if c.kind == kind {
				wantKind += n
			}
		}
		full := func() bool {
			for c, n := range want {
				if c.kind == kind && len(got[c]) < n {
					return false
				}
			}
			return true
		}
		// A rare class (a flow denied at its destination, where most policies deny at the
		// source) takes many draws; the bound keeps a cluster without any finite.
		for tries := 0; tries < 200*wantKind && !full(); tries++ {
			f, ok := draw[kind]()
			if !ok || seen[f] || testbed.CanSend(f) != nil {
				continue
			}
			seen[f] = true
			v, ex := cl.Evaluate(f)
			ef := stamp.ExpectedFlow{Flow: f, Verdict: v, DeniedAt: policy.Ingress}
			if v == policy.Deny && ex.Egress.Enforced && !ex.Egress.Allowed {
				ef.DeniedAt = policy.Egress
			}
			c := classOf(ef)
			if len(got[c]) < want[c] {
				got[c] = append(got[c], ef)
			}
		}
	}
	classes := make([]flowClass, 0, len(got))
	for c := range got {
		classes = append(classes, c)
	}
	slices.SortFunc(classes, compareClasses)
	var out []stamp.ExpectedFlow
	for _, c := range classes {
		out = append(out, got[c]...)
	}
	return out
}
