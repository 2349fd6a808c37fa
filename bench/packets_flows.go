package bench

import (
	"math/rand/v2"
	"net/netip"

	"netpolbench/bench/stamp"
	"netpolbench/policy"
	"netpolbench/testbed"
)

// packetFlows draws the frozen flow list of a per-packet measurement from a cluster: up to
// nAllow allowed and nDeny denied flows that the testbed can send as new-flow packets (TCP or
// UDP), each with the reference evaluator's verdict and deny point. Each verdict's flows are
// three quarters pod to pod on a port the destination declares (TCP 80 when it declares none),
// an eighth from an outside host to a pod and an eighth from a pod to an outside host on a
// common port, whatever the cluster's share of each, so every scale measures the same mix of
// paths. The same cluster and seed give the same list.
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
	draw := [...]func() (policy.Flow, bool){
		func() (policy.Flow, bool) { // pod to pod
			src, dst := pod(), pod()
			proto, port, ok := portOf(dst)
			return policy.Flow{Src: src.IP, Dst: dst.IP, Proto: proto, Port: port}, ok && src.IP != dst.IP
		},
		func() (policy.Flow, bool) { // outside to pod
			dst := pod()
			proto, port, ok := portOf(dst)
			return policy.Flow{Src: outside(), Dst: dst.IP, Proto: proto, Port: port}, ok
		},
		func() (policy.Flow, bool) { // pod to outside
			c := common[rng.IntN(len(common))]
			return policy.Flow{Src: pod().IP, Dst: outside(), Proto: c.proto, Port: c.port}, true
		},
	}
	quota := func(n int) [3]int { return [3]int{n - 2*(n/8), n / 8, n / 8} }
	want := [2][3]int{quota(nDeny), quota(nAllow)} // by policy.Verdict, then kind
	var got [2][3][]stamp.ExpectedFlow
	seen := map[policy.Flow]bool{}
	for kind := range draw {
		for tries := 0; tries < 200*(want[0][kind]+want[1][kind]) &&
			(len(got[0][kind]) < want[0][kind] || len(got[1][kind]) < want[1][kind]); tries++ {
			f, ok := draw[kind]()
			if !ok || seen[f] || testbed.CanSend(f) != nil {
				continue
			}
			seen[f] = true
			v, ex := cl.Evaluate(f)
			if len(got[v][kind]) >= want[v][kind] {
				continue
			}
			ef := stamp.ExpectedFlow{Flow: f, Verdict: v, DeniedAt: policy.Ingress}
			if v == policy.Deny && ex.Egress.Enforced && !ex.Egress.Allowed {
				ef.DeniedAt = policy.Egress
			}
			got[v][kind] = append(got[v][kind], ef)
		}
	}
	var out []stamp.ExpectedFlow
	for _, v := range []policy.Verdict{policy.Allow, policy.Deny} {
		for kind := range draw {
			out = append(out, got[v][kind]...)
		}
	}
	return out
}
