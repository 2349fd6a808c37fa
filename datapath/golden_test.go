package datapath

import (
	"fmt"
	"strings"
	"testing"

	"netpolbench/workloads"
)

// TestGoldenMapSizes fails when a change grows or shrinks the datapath's state for a known
// cluster, so such a change is seen in review: entries per map after a full sync, and the key
// and value bytes of each entry.
func TestGoldenMapSizes(t *testing.T) {
	needBPF(t)
	small, err := workloads.Preset("small")
	if err != nil {
		t.Fatal(err)
	}
	def := workloads.Default()
	for _, tc := range []struct {
		name string
		spec workloads.Spec
		want map[Layout]string
	}{
		{"small", small, map[Layout]string{
			LayoutHash:   "ipcache=7×(8+8) lxc=100×(4+28) named_ports=351×(8+8) policy=0×(12+1) policy_summary=92×(8+44)",
			LayoutCilium: "ipcache=107×(8+8) lxc=100×(4+28) named_ports=351×(8+8) policy=0×(12+1) policy_summary=92×(8+44)",
		}},
		{"default", def, map[Layout]string{
			LayoutHash:   "ipcache=13×(8+8) lxc=1000×(4+28) named_ports=3417×(8+8) policy=3×(12+1) policy_summary=3027×(8+44)",
			LayoutCilium: "ipcache=1013×(8+8) lxc=1000×(4+28) named_ports=3417×(8+8) policy=3×(12+1) policy_summary=3027×(8+44)",
		}},
	} {
		g, err := workloads.Generate(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		s := mustCompile(t, g.Cluster).State()
		for _, layout := range []Layout{LayoutHash, LayoutCilium} {
			d := mustSynced(t, s, Options{Layout: layout})
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
