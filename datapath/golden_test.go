package datapath

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// goldenStates are the states of the golden map sizes: entries per map after a full sync,
// and the key and value bytes of each entry, per layout.
func goldenStates(t *testing.T) []struct {
	name string
	s    *policy.State
	want map[Layout]string
} {
	t.Helper()
	small, err := workloads.Preset("small")
	if err != nil {
		t.Fatal(err)
	}
	out := []struct {
		name string
		s    *policy.State
		want map[Layout]string
	}{
		{"small", nil, map[Layout]string{
			LayoutHash:   "ipcache=7×(8+8) lxc=100×(4+28) named_ports=351×(8+8) policy=0×(12+1) policy_summary=92×(8+44)",
			LayoutCilium: "ipcache=107×(8+8) lxc=100×(4+28) named_ports=351×(8+8) policy=0×(12+1) policy_summary=92×(8+44)",
		}},
		{"default", nil, map[Layout]string{
			LayoutHash:   "ipcache=13×(8+8) lxc=1000×(4+28) named_ports=3417×(8+8) policy=3×(12+1) policy_summary=3027×(8+44)",
			LayoutCilium: "ipcache=1013×(8+8) lxc=1000×(4+28) named_ports=3417×(8+8) policy=3×(12+1) policy_summary=3027×(8+44)",
		}},
	}
	for i, spec := range []workloads.Spec{small, workloads.Default()} {
		g, err := workloads.Generate(spec)
		if err != nil {
			t.Fatal(err)
		}
		out[i].s = policytest.MustCompile(t, g.Cluster).State()
	}
	return out
}

// TestGoldenMapSizes fails when a change grows or shrinks the datapath's state for a known
// cluster, so such a change is seen in review: what the kernel's maps hold after a full sync.
// TestPlannedStateHasTheGoldenMapSizes checks the same table on the plan, without a kernel.
func TestGoldenMapSizes(t *testing.T) {
	needBPF(t)
	for _, tc := range goldenStates(t) {
		for _, layout := range []Layout{LayoutHash, LayoutCilium} {
			d := mustSynced(t, tc.s, Options{Layout: layout})
			f, err := d.Facts()
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, m := range f.Maps {
				if m.Entries >= 0 && m.Name != "epoch" {
					parts = append(parts, fmt.Sprintf("%s=%d×(%d+%d)", m.Name, m.Entries, m.KeyBytes, m.ValueBytes))
				}
			}
			if got := strings.Join(parts, " "); got != tc.want[layout] {
				t.Errorf("%s/%s: map sizes changed:\n got %s\nwant %s", tc.name, layout, got, tc.want[layout])
			}
		}
	}
}

// planSizes formats a plan's entries as TestGoldenMapSizes formats the kernel's maps.
func planSizes(p *statePlan) string {
	n := func(parts int, each func(i int) int) int {
		total := 0
		for i := range parts {
			total += each(i)
		}
		return total
	}
	return fmt.Sprintf("ipcache=%d×(%d+%d) lxc=%d×(%d+%d) named_ports=%d×(%d+%d) policy=%d×(%d+%d) policy_summary=%d×(%d+%d)",
		len(p.ipcK), unsafe.Sizeof(bpfIpcacheKey{}), unsafe.Sizeof(bpfIpcacheValue{}),
		n(len(p.lxcK), func(i int) int { return len(p.lxcK[i]) }), unsafe.Sizeof(uint32(0)), unsafe.Sizeof(bpfEndpoint{}),
		n(len(p.namK), func(i int) int { return len(p.namK[i]) }), unsafe.Sizeof(bpfNamedPortKey{}), unsafe.Sizeof(bpfNamedPortValue{}),
		n(len(p.polK), func(i int) int { return len(p.polK[i]) }), unsafe.Sizeof(bpfPolicyKey{}), unsafe.Sizeof(uint8(0)),
		n(len(p.sumK), func(i int) int { return len(p.sumK[i]) }), unsafe.Sizeof(bpfSummaryKey{}), unsafe.Sizeof(bpfSummary{}))
}
