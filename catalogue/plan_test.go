package catalogue

import (
	"testing"

	"netpolbench/internal/testenv"
	"netpolbench/results"
)

// TestEveryKernelBackendPlansItsSize: the benchmark caps backends on what their plan says a
// sync writes (the iptables family on rules and set members, nftables on set elements), so
// each backend it runs in a kernel has one.
func TestEveryKernelBackendPlansItsSize(t *testing.T) {
	for _, n := range Names((*Backend).CanBench) {
		if b := MustGet(n); b.Family != InProcess && b.Plan == nil {
			t.Errorf("%s has no Plan", n)
		}
	}
}

// TestEBPFPlanIsWhatItsSyncWrites: the map plan of both layouts, computed without the kernel,
// is what the kernel reports after a full sync: entries, capacity (with the headroom the
// backend was opened with) and key and value sizes.
func TestEBPFPlanIsWhatItsSyncWrites(t *testing.T) {
	testenv.NeedKernel(t, NeedsOf(false, "ebpf")...)
	st := mustState(t, "default", 400)
	for _, name := range []string{"ebpf", "ebpf-cilium"} {
		b := MustGet(name)
		planned, ok, err := b.PlannedSize(Env{State: st, MapHeadroom: 3})
		if err != nil || !ok {
			t.Fatalf("%s: plan %v, ok %v", name, err, ok)
		}
		be, err := b.Open(Env{State: st, MapHeadroom: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		if _, err := be.Sync(st); err != nil {
			t.Fatal(err)
		}
		got, err := be.(Sizer).Size()
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]results.MapSize{}
		for _, m := range got.Maps {
			have[m.Name] = m
		}
		if len(planned.Maps) < 5 {
			t.Fatalf("%s: %d maps planned", name, len(planned.Maps))
		}
		for _, p := range planned.Maps {
			k := have[p.Name]
			k.MemlockBytes = 0
			if k != p {
				t.Errorf("%s map %s: planned %+v, synced %+v", name, p.Name, p, k)
			}
		}
		if planned.Pods != st.NumEndpoints() || planned.Backend != name {
			t.Errorf("%s: planned size labelled %s at %d pods", name, planned.Backend, planned.Pods)
		}
	}
}
