package bench

import (
	"reflect"
	"testing"

	"netpolbench/policy"
	"netpolbench/testbed"
	"netpolbench/workloads"
)

func TestPacketFlowsKeepTheMixOfPathsAndTheReferencesVerdicts(t *testing.T) {
	spec, err := workloads.Preset("default")
	if err != nil {
		t.Fatal(err)
	}
	g, err := workloads.Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	cl := g.Cluster
	const n = 64
	flows := packetFlows(cl, 7, n, n)
	if again := packetFlows(cl, 7, n, n); !reflect.DeepEqual(flows, again) {
		t.Fatal("the same cluster and seed gave another list")
	}
	// kind: 0 pod to pod, 1 from outside, 2 to outside.
	var count [2][3]int
	for _, f := range flows {
		v, ex := cl.Evaluate(f.Flow)
		if v != f.Verdict {
			t.Errorf("%s: expected %s, the reference says %s", f, f.Verdict, v)
		}
		if v == policy.Deny && (f.DeniedAt == policy.Egress) != (ex.Egress.Enforced && !ex.Egress.Allowed) {
			t.Errorf("%s: deny point disagrees with the reference (%s)", f, ex)
		}
		if err := testbed.CanSend(f.Flow); err != nil || f.Proto != policy.ProtoTCP && f.Proto != policy.ProtoUDP {
			t.Errorf("%s: not a new-flow packet the testbed sends (%v)", f, err)
		}
		_, srcPod := cl.PodByIP(f.Src)
		_, dstPod := cl.PodByIP(f.Dst)
		kind := 0
		switch {
		case !srcPod:
			kind = 1
		case !dstPod:
			kind = 2
		}
		count[f.Verdict][kind]++
	}
	want := [3]int{n - 2*(n/8), n / 8, n / 8}
	for _, v := range []policy.Verdict{policy.Allow, policy.Deny} {
		if count[v] != want {
			t.Errorf("%s flows by kind (pod to pod, from outside, to outside): %v, want %v", v, count[v], want)
		}
	}
}
