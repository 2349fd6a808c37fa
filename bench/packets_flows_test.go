package bench

import (
	"reflect"
	"testing"

	"netpolbench/policy"
	"netpolbench/testbed"
	"netpolbench/workloads"
)

func TestPacketFlowsKeepTheMixOfPathsAtEveryScale(t *testing.T) {
	spec, err := workloads.Preset("default")
	if err != nil {
		t.Fatal(err)
	}
	const n = 96
	want := flowQuotas(n, n)
	// Three quarters pod to pod, an eighth each from and to outside; denied pod-to-pod flows
	// half at either point; a third UDP.
	if want[flowClass{policy.Deny, podToPod, policy.Egress, policy.ProtoTCP}] != 24 ||
		want[flowClass{policy.Deny, podToPod, policy.Ingress, policy.ProtoUDP}] != 12 ||
		want[flowClass{policy.Allow, toOutside, policy.Ingress, policy.ProtoUDP}] != 4 {
		t.Fatalf("quotas %v", want)
	}
	for _, pods := range []int{100, 3000} {
		g, err := workloads.Generate(spec.WithPods(pods))
		if err != nil {
			t.Fatal(err)
		}
		cl := g.Cluster
		flows := packetFlows(cl, 7, n, n)
		if again := packetFlows(cl, 7, n, n); !reflect.DeepEqual(flows, again) {
			t.Fatal("the same cluster and seed gave another list")
		}
		got := map[flowClass]int{}
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
			kind := podToPod
			switch {
			case !srcPod:
				kind = fromOutside
			case !dstPod:
				kind = toOutside
			}
			if c := classOf(f); c.kind != kind {
				t.Errorf("%s: class %s, but it goes %s", f, c, kind)
			}
			got[classOf(f)]++
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d pods: flows by class %v, want %v", pods, got, want)
		}
		if short := flowMixShort(flows, n, n); short != "" {
			t.Errorf("%d pods: short %s", pods, short)
		}
	}
}
