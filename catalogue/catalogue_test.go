package catalogue

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"netpolbench/datapath"
	"netpolbench/internal/needs"
	"netpolbench/internal/testenv"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestWhatResultsRecordPerBackend pins what the benchmark records for each backend: the apply
// path, the unit of its operations, where its stamps go, whether the per-IP budget caps it and
// whether it is capped on its plan.
// A change here changes figures in results.json.
func TestWhatResultsRecordPerBackend(t *testing.T) {
	type rec struct {
		path, opsUnit, stamp     string
		perIP, planBudget, bench bool
		maxPods                  int
	}
	want := map[string]rec{
		"reference":         {"", "map ops", "", false, false, false, 0},
		"compiled":          {"state-lookup", "map ops", "", false, false, true, 0},
		"ebpf":              {"map-diff-batch", "map ops", "tcx", false, false, true, 0},
		"ebpf-cilium":       {"map-diff-batch", "map ops", "tcx", false, false, true, 0},
		"ebpf-perkey":       {"map-diff-per-key", "map ops", "tcx", false, false, true, 0},
		"iptables":          {"partial-restore", "restore lines", "netfilter", true, true, true, 0},
		"ipset":             {"partial-restore", "restore lines", "netfilter", true, true, true, 0},
		"iptables-legacy":   {"partial-restore", "restore lines", "netfilter", true, true, true, 0},
		"ipset-legacy":      {"partial-restore", "restore lines", "netfilter", true, true, true, 0},
		"iptables-fullsync": {"full-restore", "restore lines", "netfilter", true, true, true, 0},
		"iptables-perrule":  {"per-rule", "restore lines", "netfilter", true, true, true, 1000},
		"nftables":          {"partial-transaction", "nft commands", "netfilter", false, true, true, 0},
	}
	names := Names(nil)
	for n, w := range want {
		b, err := Get(n)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		got := rec{b.Path, b.Family.OpsUnit, b.Family.Stamp, b.Family.PerIP, b.Family.PlanBudget, b.CanBench(), b.MaxPods}
		if got != w {
			t.Errorf("%s records %+v, want %+v", n, got, w)
		}
	}
	for _, n := range names {
		if _, ok := want[n]; !ok {
			t.Errorf("backend %s is not in this table: add what it records", n)
		}
	}
}

// TestEveryBackendIsComplete: a name, a help line and a family; a way in; a cap with its
// reason; a stamp point for what carries real packets; and what enforces a kernel names its
// needs.
func TestEveryBackendIsComplete(t *testing.T) {
	for _, n := range Names(nil) {
		b := MustGet(n)
		if b.Help == "" || b.Family == nil {
			t.Errorf("%s: no help or family", n)
		}
		if !b.CanBench() && !b.CanDecide() && !b.CanEnforce() {
			t.Errorf("%s: no way in", n)
		}
		if (b.MaxPods > 0) != (b.CapReason != "") {
			t.Errorf("%s: a pod cap needs its reason", n)
		}
		if b.CanEnforce() && (b.Family.Stamp == "" || len(b.Needs) == 0) {
			t.Errorf("%s carries real packets but has no stamp point or no needs", n)
		}
		if b.Family.InNode && b.Install != nil {
			t.Errorf("%s: a family in the node namespace is in force once synced; Install is never used", n)
		}
	}
	if got := Names((*Backend).CanDecide); !slices.Equal(got, []string{"compiled", "ebpf", "ebpf-cilium", "ipset", "iptables", "nftables", "reference"}) {
		t.Errorf("deciders %v", got)
	}
}

// TestDecidersWithoutAKernelAgreeWithTheReference runs the e2e model's cases through every
// backend that decides without a kernel (the compiled lookup and the iptables and nftables
// tracers).
func TestDecidersWithoutAKernelAgreeWithTheReference(t *testing.T) {
	for _, c := range policytest.Cases[:8] {
		cl, err := c.Cluster()
		if err != nil {
			t.Fatal(err)
		}
		comp, err := policy.Compile(cl, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"reference", "compiled", "iptables", "ipset", "nftables"} {
			b := MustGet(n)
			if len(b.DecideNeeds) > 0 {
				t.Fatalf("%s needs %s to decide", n, needs.Names(b.DecideNeeds))
			}
			d, err := b.Decider(Env{State: comp.State()})
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			table, err := policytest.NewTable(c.Name+"/"+n, comp.Cluster(), policytest.Grid(), d.Verdict)
			d.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(table.Mismatches) > 0 {
				t.Errorf("%s: %d cells disagree:\n%s", n, len(table.Mismatches), table.Report())
			}
		}
	}
}

// TestMissingNeedsMakeABackendUnavailable: no way in is tried on a machine that lacks what the
// backend needs, and the error names the missing need.
func TestMissingNeedsMakeABackendUnavailable(t *testing.T) {
	missing := needs.Tool("npb-no-such-tool", "none")
	called := false
	defer Register(&Backend{Name: "test-needy", Help: "test only", Family: InProcess,
		Needs: []needs.Need{missing}, DecideNeeds: []needs.Need{missing},
		New:    func(Env) (policy.Backend, error) { called = true; return nil, nil },
		Decide: func(Env) (Decider, error) { called = true; return nil, nil },
	})()
	b := MustGet("test-needy")
	_, errOpen := b.Open(Env{})
	_, errDecide := b.Decider(Env{})
	for _, err := range []error{errOpen, errDecide} {
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, needs.ErrMissing) || !strings.Contains(err.Error(), "npb-no-such-tool") {
			t.Errorf("error %v, want ErrUnavailable naming the missing tool", err)
		}
	}
	if called {
		t.Error("a way in was tried without its needs")
	}
	if _, err := MustGet("iptables").Open(Env{}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "OpenInNode") {
		t.Errorf("iptables opened outside a node namespace: %v", err)
	}
	if _, err := MustGet("reference").Open(Env{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("the reference opened for the benchmark: %v", err)
	}
	if _, err := Get("nosuch"); err == nil || !strings.Contains(err.Error(), "ebpf-cilium") {
		t.Errorf("Get(nosuch) = %v, want an error listing the backends", err)
	}
}

// TestMapHeadroomSizesTheEBPFMaps: the benchmark's --map-headroom reaches the maps an eBPF
// backend is opened with, and without it they hold twice the state.
func TestMapHeadroomSizesTheEBPFMaps(t *testing.T) {
	testenv.NeedKernel(t, MustGet("ebpf").Needs...)
	st := mustState(t, "default", 1000)
	for _, headroom := range []float64{0, 4} {
		be, err := MustGet("ebpf").Open(Env{State: st, MapHeadroom: headroom})
		if err != nil {
			t.Fatal(err)
		}
		got := be.(*ebpfBackend).Sizes()
		be.Close()
		want := datapath.SizesWithHeadroom(st, datapath.LayoutHash, headroom)
		if got != want {
			t.Errorf("headroom %g: maps sized %+v, want %+v", headroom, got, want)
		}
		if headroom == 0 && got != datapath.SizesFor(st, datapath.LayoutHash) {
			t.Errorf("no headroom given: maps sized %+v, want SizesFor's", got)
		}
		if headroom == 4 && got.Endpoints < 4*uint32(len(st.Endpoints())) {
			t.Errorf("headroom 4: lxc holds %d entries for %d endpoints", got.Endpoints, len(st.Endpoints()))
		}
	}
}
