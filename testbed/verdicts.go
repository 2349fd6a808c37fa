package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"netpolbench/policy"
)

// controlPort is the TCP port of the control flows. Any port would do: a control flow has no
// pod at either end, so every backend must let it through.
const controlPort = 7

// ControlFlows returns flows every correct backend delivers whatever s says: for each pod
// namespace, TCP between an address of its blocks that is no pod's and an outside host, both
// ways. Each crosses the node through that namespace's veth, so if one is not delivered the
// testbed (or a backend that drops what it must not touch) is at fault, not the policy.
func (tb *Testbed) ControlFlows(s *policy.State) []policy.Flow {
	outside := netip.MustParseAddr("203.0.113.254")
	var out []policy.Flow
	for i := range tb.pods {
		blk := tb.blocksOf(i)[0]
		a, ok := freeAddr(s, blk)
		if !ok {
			continue
		}
		for _, f := range []policy.Flow{
			{Src: a, Dst: outside, Proto: policy.ProtoTCP, Port: controlPort},
			{Src: outside, Dst: a, Proto: policy.ProtoTCP, Port: controlPort},
		} {
			if v, _ := s.Cluster().Evaluate(f); v == policy.Allow {
				out = append(out, f)
			}
		}
	}
	return out
}

// freeAddr returns the highest address of blk below its broadcast address that no pod holds.
func freeAddr(s *policy.State, blk netip.Prefix) (netip.Addr, bool) {
	first := addrUint(blk.Masked().Addr())
	last := first | (1<<(32-blk.Bits()) - 1)
	for u := last - 1; u > first && last-u < 4096; u-- {
		a := uint32ToAddr(u)
		if _, isPod := s.EndpointByIP(a); !isPod {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// ProbeVerdicts sends every flow as a real packet under whatever is in force and returns the
// observed verdicts (delivered = allow). Control flows go out in the same batch; if one is not
// delivered the call fails instead of reporting drops.
func (tb *Testbed) ProbeVerdicts(ctx context.Context, s *policy.State, flows []policy.Flow, opts ProbeOptions) ([]policy.Verdict, error) {
	controls := tb.ControlFlows(s)
	if len(controls) == 0 {
		return nil, errors.New("probe verdicts: no control flow available (every candidate address is a pod)")
	}
	all := append(append([]policy.Flow(nil), controls...), flows...)
	got, err := tb.Probe(ctx, all, opts)
	if err != nil {
		return nil, err
	}
	var lost []string
	for i, f := range controls {
		if !got[i] {
			lost = append(lost, f.String())
		}
	}
	if len(lost) > 0 {
		return nil, fmt.Errorf("testbed fault: control flows not delivered: %s (they touch no pod, so no backend may drop them)", strings.Join(lost, ", "))
	}
	out := make([]policy.Verdict, len(flows))
	for i := range flows {
		if got[len(controls)+i] {
			out[i] = policy.Allow
		}
	}
	return out, nil
}
