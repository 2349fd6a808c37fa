package catalogue

import (
	"os"
	"strings"
	"testing"

	"netpolbench/internal/memcg"
	"netpolbench/internal/netns"
	"netpolbench/internal/owner"
	"netpolbench/internal/testenv"
	"netpolbench/nftables"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/testbed"
	"netpolbench/workloads"
)

func mustState(t *testing.T, preset string, pods int) *policy.State {
	t.Helper()
	spec, err := workloads.Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	g, err := workloads.Generate(spec.WithPods(pods))
	if err != nil {
		t.Fatal(err)
	}
	return policytest.MustCompile(t, g.Cluster).State()
}

// TestNftablesSizeFromCountsIsWhatItsPlanSays: the nftables family sizes a backend from its
// full sync's counts (the benchmark's fallback), and those are the table its plan (what the
// benchmark caps on) counts without a sync, plus the transaction's commands and bytes.
func TestNftablesSizeFromCountsIsWhatItsPlanSays(t *testing.T) {
	s := mustState(t, "default", 1000)
	b, err := nftables.New(nftables.Config{NFT: nftables.NewFake()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.Sync(s)
	if err != nil {
		t.Fatal(err)
	}
	sz, ok := Nftables.SizeFromCounts(st)
	if !ok || sz.Nftables == nil {
		t.Fatalf("no size from the counts of a full sync: %+v", st.Detail)
	}
	plan, ok, err := MustGet("nftables").PlannedSize(Env{State: s})
	if err != nil || !ok || plan.Nftables == nil || plan.Backend != "nftables" || plan.Pods != s.NumEndpoints() {
		t.Fatalf("nftables plan %+v, %v, %v", plan, ok, err)
	}
	want := *plan.Nftables
	c := nftables.CountsOf(st)
	want.Commands, want.Bytes = uint64(c.Commands), uint64(c.Bytes)
	if *sz.Nftables != want || want.Elements == 0 || want.Bytes == 0 {
		t.Errorf("size from counts %+v, plan and transaction %+v", *sz.Nftables, want)
	}
	if _, ok := Nftables.SizeFromCounts(policy.SyncStats{}); ok {
		t.Error("sized a backend without counts")
	}
	up, err := b.Update(s, &policy.Delta{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := Nftables.SizeFromCounts(up); ok {
		t.Error("sized the table from a partial sync's counts")
	}
}

// newTestNode creates a network namespace of the test's own for a backend's node state.
func newTestNode(t *testing.T) string {
	t.Helper()
	name, err := owner.Name(testbed.Prefix, "catsize")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Error(err)
		}
	})
	return name
}

// ourGroups lists the memory cgroups this process created and has not removed.
func ourGroups(t *testing.T) []string {
	t.Helper()
	left, err := memcg.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range left {
		if l.PID == os.Getpid() {
			out = append(out, l.Path)
		}
	}
	return out
}

// TestKernelMemoryGrowsWithTheStateAndLeavesNothing syncs each family's backends at two
// scales: the kernel memory their state takes is measured, is larger for the larger state,
// says what it counts, and the memory cgroup that measured it is gone once the backend is
// closed.
func TestKernelMemoryGrowsWithTheStateAndLeavesNothing(t *testing.T) {
	testenv.Long(t, "kernel memory of every family")
	names := []string{"nftables", "ebpf", "iptables", "ipset"}
	testenv.NeedKernel(t, NeedsOf(false, names...)...)
	if g, err := memcg.New("probe"); err != nil {
		testenv.Missing(t, err.Error())
	} else if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	small, large := mustState(t, "small", 100), mustState(t, "small", 400)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			var got [2]uint64
			for i, s := range []*policy.State{small, large} {
				b := MustGet(name)
				env := Env{State: s}
				if b.Family.InNode {
					env.Node = newTestNode(t)
				}
				be, err := b.Open(env)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := be.Sync(s); err != nil {
					be.Close()
					t.Fatal(err)
				}
				sz, err := be.(Sizer).Size()
				if err != nil {
					be.Close()
					t.Fatal(err)
				}
				if err := be.Close(); err != nil {
					t.Fatal(err)
				}
				if left := ourGroups(t); len(left) > 0 {
					t.Fatalf("memory cgroups left after Close: %v", left)
				}
				if sz.KernelBytes == nil {
					t.Fatalf("%d pods: no kernel memory: %s", s.NumEndpoints(), sz.KernelNote)
				}
				if sz.KernelNote == "" || strings.HasPrefix(sz.KernelNote, "not measured") {
					t.Errorf("kernel memory without a note on what it counts: %q", sz.KernelNote)
				}
				got[i] = *sz.KernelBytes
			}
			t.Logf("kernel bytes: %d at %d pods, %d at %d pods", got[0], small.NumEndpoints(), got[1], large.NumEndpoints())
			if got[0] == 0 || got[1] <= got[0] {
				t.Errorf("kernel memory %d bytes for the small state, %d for the large one", got[0], got[1])
			}
		})
	}
}
