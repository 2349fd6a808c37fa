package policy

import (
	"fmt"
	"math"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// The compiler stamps counts, endpoints and rule sets with a uint32 epoch, one per event. A
// walk across the point where it would wrap must keep the state equal to a fresh compile and
// the deltas able to rebuild it.
func TestChurnAcrossTheEpochWrapKeepsTheStateExact(t *testing.T) {
	for _, start := range []uint32{math.MaxUint32 - 3, math.MaxUint32 - 2, math.MaxUint32 - 1} {
		t.Run(fmt.Sprint(start), func(t *testing.T) {
			comp := renameWorld(t)
			comp.epoch = start // as after that many events
			m := newMirror(comp.State())
			evs := []Event{
				// A new identity that an existing peer selects: entries go into existing sets.
				{Kind: PodAdd, Pod: &Pod{Namespace: "x", Name: "web-3", Labels: map[string]string{"app": "web", "tier": "t"},
					IP: netip.AddrFrom4([4]byte{198, 18, 0, 20})}},
				{Kind: PolicyAdd, Policy: ingressPolicy("web-8080", map[string]string{"app": "web"}, intstr.FromInt32(8080))},
				{Kind: PolicyAdd, Policy: ingressPolicy("db-81", map[string]string{"app": "db"}, intstr.FromInt32(81))},
				{Kind: PodRelabel, PodKey: "x/db-1", Labels: map[string]string{"app": "web"}},
				{Kind: PolicyRemove, PolicyKey: "x/web-8080"},
			}
			for i, ev := range evs {
				d, err := comp.Apply(ev)
				if err != nil {
					t.Fatalf("event %d (%s): %v", i, ev.Kind, err)
				}
				if err := m.apply(d); err != nil {
					t.Fatalf("event %d (%s, epoch %d): delta cannot be applied: %v", i, ev.Kind, comp.epoch, err)
				}
				if err := m.equal(comp.State()); err != nil {
					t.Fatalf("event %d (%s, epoch %d): state after delta differs: %v", i, ev.Kind, comp.epoch, err)
				}
				fresh := mustCompile(t, comp.Cluster().Clone())
				if got, want := canonical(comp.State()), canonical(fresh.State()); got != want {
					t.Fatalf("event %d (%s, epoch %d): differs from a fresh compile: %s", i, ev.Kind, comp.epoch, firstDiff(got, want))
				}
			}
		})
	}
}
