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
// UDP), each with the reference evaluator's verdict and deny point. Three in four are pod to
// pod on a port the destination declares (TCP 80 when it declares none), one in eight from an
// outside host to a pod, one in eight from a pod to an outside host on a common port. The same
// cluster and seed give the same list.
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
	seen := map[policy.Flow]bool{}
	var allow, deny []stamp.ExpectedFlow
	for tries := 0; tries < 200*(nAllow+nDeny) && (len(allow) < nAllow || len(deny) < nDeny); tries++ {
		var f policy.Flow
		switch k := rng.IntN(8); {
		case k < 6:
			src, dst := pod(), pod()
			proto, port, ok := portOf(dst)
			if !ok || src.IP == dst.IP {
				continue
			}
			f = policy.Flow{Src: src.IP, Dst: dst.IP, Proto: proto, Port: port}
		case k == 6:
			dst := pod()
			proto, port, ok := portOf(dst)
			if !ok {
				continue
			}
			f = policy.Flow{Src: outside(), Dst: dst.IP, Proto: proto, Port: port}
		default:
			c := common[rng.IntN(len(common))]
			f = policy.Flow{Src: pod().IP, Dst: outside(), Proto: c.proto, Port: c.port}
		}
		if seen[f] || testbed.CanSend(f) != nil {
			continue
		}
		seen[f] = true
		v, ex := cl.Evaluate(f)
		ef := stamp.ExpectedFlow{Flow: f, Verdict: v, DeniedAt: policy.Ingress}
		if v == policy.Deny && ex.Egress.Enforced && !ex.Egress.Allowed {
			ef.DeniedAt = policy.Egress
		}
		if v == policy.Allow && len(allow) < nAllow {
			allow = append(allow, ef)
		} else if v == policy.Deny && len(deny) < nDeny {
			deny = append(deny, ef)
		}
	}
	return append(allow, deny...)
}
