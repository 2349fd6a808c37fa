package bench

import (
	"context"
	"errors"
	"testing"

	"netpolbench/bench/stamp"
	"netpolbench/catalogue"
	"netpolbench/datapath"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
	"netpolbench/testbed"
	"netpolbench/workloads"
)

func needPacketKernel(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
}

// mustPacketWorld compiles a workloads preset at pods and freezes a flow list from it.
func mustPacketWorld(t testing.TB, preset string, pods, flows int) (*policy.Compiler, *stamp.FlowList) {
	t.Helper()
	spec, err := workloads.Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	g, err := workloads.Generate(spec.WithPods(pods))
	if err != nil {
		t.Fatal(err)
	}
	comp, err := policy.Compile(g.Cluster, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fl, err := stamp.NewFlowList(packetFlows(comp.Cluster(), 1, flows, flows))
	if err != nil {
		t.Fatal(err)
	}
	return comp, fl
}

func mustFreshBed(t testing.TB) *testbed.Testbed {
	t.Helper()
	return testbed.ForTest(t, testbed.Options{})
}

// mustEnforce puts the catalogue's backend name in force in bed, synced to st and stamped, and
// takes it out when the test ends.
func mustEnforce(t testing.TB, bed *testbed.Testbed, name string, st *policy.State) (PacketSwitch, packetLookups) {
	t.Helper()
	b := catalogue.MustGet(name)
	e, _, err := b.Enforce(bed, catalogue.Env{State: st, Stamped: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("take %s out: %v", name, err)
		}
	})
	sw, err := switchOf(b, e)
	if err != nil {
		t.Fatal(err)
	}
	lk, _ := e.Backend().(packetLookups)
	return sw, lk
}

// TestPacketRoundsMatchEveryPathToItsFloor runs a small measurement with the eBPF datapath,
// iptables and nftables, each in a fresh testbed: every sample agrees with the reference,
// every path the backend took has a floor from the same rounds, and netfilter floor rounds run
// without conntrack.
func TestPacketRoundsMatchEveryPathToItsFloor(t *testing.T) {
	needPacketKernel(t)
	comp, fl := mustPacketWorld(t, "default", 100, 48)
	st := comp.State()
	plan := PacketPlan{Flows: fl, Rounds: 2, New: 1500, Established: 300}
	for _, c := range []struct {
		name  string
		paths []stamp.Path
	}{
		{"ebpf", []stamp.Path{stamp.PathTCXBoth, stamp.PathTCXDropIngress, stamp.PathTCXDropEgress, stamp.PathTCXIngressOnly, stamp.PathTCXEgressOnly, stamp.PathTCXDropEgressOnly}},
		{"iptables", []stamp.Path{stamp.PathFilterPass, stamp.PathFilterDrop, stamp.PathNetfilterPass, stamp.PathNetfilterDrop}},
		{"nftables", []stamp.Path{stamp.PathFilterPass, stamp.PathFilterDrop, stamp.PathNetfilterPass, stamp.PathNetfilterDrop}},
	} {
		t.Run(c.name, func(t *testing.T) {
			testenv.NeedKernel(t, catalogue.NeedsOf(false, c.name)...)
			bed := mustFreshBed(t)
			sw, lk := mustEnforce(t, bed, c.name, st)
			res, err := MeasurePackets(context.Background(), bed, sw, plan)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Rounds) != 2*plan.Rounds || !res.Rounds[0].Floor || res.Rounds[1].Floor {
				t.Fatalf("%d rounds, want %d alternating from a floor round", len(res.Rounds), 2*plan.Rounds)
			}
			floors := res.Floors()
			pts, err := res.AboveFloor()
			if err != nil {
				t.Fatal(err)
			}
			seen := map[stamp.Path]bool{}
			for _, p := range pts {
				seen[p.Path] = true
				if p.Floor != floors[p.Path].Median {
					t.Errorf("%s: subtracted %.0f ns, the floor's median is %.0f", p.PacketPoint, p.Floor, floors[p.Path].Median)
				}
			}
			for _, p := range c.paths {
				f := floors[p]
				if !seen[p] || f.Samples == 0 || len(f.RoundMedians) != plan.Rounds {
					t.Errorf("path %s/%s: backend samples %v, floor %+v", p.Span(), p, seen[p], f)
				}
			}
			for i, rd := range res.Rounds {
				if c.name == "ebpf" {
					continue
				}
				if !rd.ConntrackKnown {
					t.Fatalf("round %d: node conntrack statistics unread", i+1)
				}
				if rd.Floor && rd.ConntrackGrowth > 0 {
					t.Errorf("floor round %d: conntrack gained %d entries; nothing may hold its hooks", i+1, rd.ConntrackGrowth)
				}
				// Conntrack kills an entry whose SYN is answered by a reset, but keeps those of
				// UDP flows and of the reset connections for seconds.
				if !rd.Floor && rd.ConntrackGrowth <= 0 {
					t.Errorf("backend round %d: conntrack gained %d entries", i+1, rd.ConntrackGrowth)
				}
			}
			for _, p := range c.paths {
				f := floors[p]
				t.Logf("%s/%s: floor %.0f ns (rounds %v) over %d samples", p.Span(), p, f.Median, f.RoundMedians, f.Samples)
			}
			for _, p := range pts {
				t.Logf("%s: %d samples, p50 %d ns above the floor, %d clamped", p.PacketPoint, p.Above.TotalCount(), p.Above.ValueAtQuantile(50), p.Clamped)
			}
			t.Logf("new flows at %.0f packets/s; %d samples checked in %s", res.Rounds[1].New.Rate(), res.Check.Samples, res.Elapsed)
			if c.name == "ebpf" {
				// The datapath counted its map operations in the backend rounds only: one
				// allowed new flow per packet of that path, at least.
				ls, err := lk.Lookups()
				if err != nil {
					t.Fatal(err)
				}
				if l := ls[datapath.MetricKey{Reason: datapath.ReasonAllowNew, Dir: policy.Ingress}]; l.Packets == 0 || l.PerPacket(datapath.LookupEpoch) != 1 {
					t.Errorf("allowed new flows at ingress: %+v", l)
				}
			}
		})
	}
}

// TestPacketRoundsFailWhenTheBackendDisagrees enforces an empty state (nothing isolated) while
// the flow list expects the real cluster's verdicts: the denied flows pass, and the
// measurement fails instead of recording them.
func TestPacketRoundsFailWhenTheBackendDisagrees(t *testing.T) {
	needPacketKernel(t)
	_, fl := mustPacketWorld(t, "default", 100, 16)
	openComp, err := policy.Compile(policy.NewCluster(), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bed := mustFreshBed(t)
	sw, _ := mustEnforce(t, bed, "ebpf", openComp.State())
	_, err = MeasurePackets(context.Background(), bed, sw, PacketPlan{Flows: fl, Rounds: 1, New: 200})
	if !errors.Is(err, stamp.ErrVerdictMismatch) {
		t.Fatalf("err %v, want a verdict mismatch", err)
	}
}
