package datapath

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestPlanGroupAllowsExactlyTheEntriesPorts: for random groups of overlapping, adjacent and
// whole-protocol port entries, the summary's inline spans and flags plus the exact keys allow
// every (protocol, port) some entry allows and nothing else, whatever the inline budget.
func TestPlanGroupAllowsExactlyTheEntriesPorts(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	protos := []policy.Protocol{policy.ProtoTCP, policy.ProtoUDP, policy.ProtoSCTP}
	names := newNameTable()
	for c := range 300 {
		var es []policy.Entry
		for range 1 + r.IntN(20) {
			e := policy.Entry{Peer: 300, Proto: protos[r.IntN(len(protos))]}
			switch k := r.IntN(20); {
			case k == 0:
				e.NamedPort = fmt.Sprintf("n%d", r.IntN(3))
			case k == 1:
				// every port of the protocol
			case k < 8:
				e.Port = uint16(1 + r.IntN(2000))
				e.EndPort = e.Port + uint16(r.IntN(300))
			default:
				e.Port = uint16(1 + r.IntN(2000))
				e.EndPort = e.Port
			}
			es = append(es, e)
		}
		policy.SortEntries(es)
		es = slices.Compact(es) // rule sets hold no duplicates
		for _, inline := range []int{-1, 1, 3, maxInline} {
			sum, keys, err := planGroup(es, inline, names.id)
			if err != nil {
				t.Fatal(err)
			}
			if inline >= 0 && int(sum.Nranges) > inline {
				t.Fatalf("case %d inline %d: %d inline spans", c, inline, sum.Nranges)
			}
			exact := map[bpfPolicyKey]bool{}
			for _, k := range keys {
				if exact[k] {
					t.Fatalf("case %d inline %d: key %+v planned twice", c, inline, k)
				}
				exact[k] = true
			}
			for _, proto := range protos {
				for port := 1; port <= 2400; port++ {
					want := false
					for _, e := range es {
						want = want || e.NamedPort == "" && e.MatchesL4(proto, uint16(port))
					}
					if got := summaryAllows(sum, exact, proto, uint16(port)); got != want {
						t.Fatalf("case %d inline %d: %s/%d: planned %v, entries %v\nentries: %v\nsummary: %+v",
							c, inline, proto, port, got, want, es, sum)
					}
				}
			}
			for _, e := range es {
				if e.NamedPort == "" {
					continue
				}
				id, _ := names.id(e.NamedPort)
				if !exact[bpfPolicyKey{Proto: uint8(e.Proto), Kind: 1, Port: id}] || sum.Named&protoBit(e.Proto) == 0 {
					t.Fatalf("case %d: named port %s/%s not planned", c, e.Proto, e.NamedPort)
				}
			}
		}
	}
}

// summaryAllows decides a numeric port as the programs do from a group's summary and keys.
func summaryAllows(sum bpfSummary, exact map[bpfPolicyKey]bool, proto policy.Protocol, port uint16) bool {
	if sum.AnyProto != 0 || sum.AllPorts&protoBit(proto) != 0 {
		return true
	}
	for _, x := range sum.Ranges[:sum.Nranges] {
		if x.Proto == uint8(proto) && port >= x.Lo && port <= x.Hi {
			return true
		}
	}
	return sum.Exact&protoBit(proto) != 0 && exact[bpfPolicyKey{Proto: uint8(proto), Port: port}]
}

// TestFullSyncOfAChangedStateLeavesTheMapsAFreshSyncWould: a full sync over maps that hold an
// older state writes and deletes only the difference, and incremental updates after it still
// end where a fresh sync would.
func TestFullSyncOfAChangedStateLeavesTheMapsAFreshSyncWould(t *testing.T) {
	needBPF(t)
	for seed := range 6 {
		w := newWorld(uint64(200 + seed))
		c := w.Cluster(40, 6)
		comp := policytest.MustCompile(t, c)
		s := comp.State()
		opts := Options{Layout: []Layout{LayoutHash, LayoutCilium}[seed%2], Sizes: Sizes{Summaries: 8192, Policy: 65536}}
		d := mustSynced(t, s, opts)
		step := 0
		churn := func(n int, update bool) {
			for range n {
				delta, err := comp.Apply(w.Event(c, step))
				step++
				if err != nil || !update {
					continue
				}
				if _, err := d.Update(s, delta); err != nil {
					t.Fatalf("seed %d step %d: %v", seed, step, err)
				}
			}
		}
		churn(30, false)
		st, err := d.Sync(s)
		if err != nil {
			t.Fatalf("seed %d: resync: %v", seed, err)
		}
		fresh := mustSynced(t, s, opts)
		if got, want := dump(t, d), dump(t, fresh); got != want {
			t.Fatalf("seed %d: maps after a resync differ from a fresh sync:\n%s", seed, faults.Diff(want, got))
		}
		if st.Ops == 0 {
			t.Fatalf("seed %d: resync after 30 events wrote nothing", seed)
		}
		churn(30, true)
		again := mustSynced(t, s, opts)
		if got, want := dump(t, d), dump(t, again); got != want {
			t.Fatalf("seed %d: maps after updates that followed a resync differ:\n%s", seed, faults.Diff(want, got))
		}
	}
}

// countOps is what a full sync of s into fresh maps like d's costs.
func countOps(tb testing.TB, d *Datapath, s *policy.State) int {
	tb.Helper()
	st, err := mustOpen(tb, d.Options()).Sync(s)
	if err != nil {
		tb.Fatal(err)
	}
	return st.Ops
}

// TestFullSyncInPartsWritesWhatOnePartWould: planning and writing in parallel parts (forced
// on a small cluster) leaves the same maps, the same operation count and the same ownership
// for incremental updates as planning in one part.
func TestFullSyncInPartsWritesWhatOnePartWould(t *testing.T) {
	needBPF(t)
	if workers() < 2 {
		t.Skip("needs GOMAXPROCS ≥ 2 to plan in parts")
	}
	w := newWorld(300)
	c := w.Cluster(300, 30)
	comp := policytest.MustCompile(t, c)
	s := comp.State()
	for _, layout := range []Layout{LayoutHash, LayoutCilium} {
		opts := Options{Layout: layout, Sizes: Sizes{Summaries: 16384, Policy: 65536}}
		one := mustSynced(t, s, opts)
		old := minPart
		minPart = 4
		parts := mustOpen(t, opts)
		st, err := parts.Sync(s)
		minPart = old
		if err != nil {
			t.Fatal(err)
		}
		if want := countOps(t, one, s); st.Ops != want {
			t.Fatalf("%s: sync in parts cost %d ops, in one part %d", layout, st.Ops, want)
		}
		if got, want := dump(t, parts), dump(t, one); got != want {
			t.Fatalf("%s: maps differ:\n%s", layout, faults.Diff(want, got))
		}
		for step := range 20 {
			delta, err := comp.Apply(w.Event(c, 1000+step))
			if err != nil {
				continue
			}
			for _, d := range []*Datapath{one, parts} {
				if _, err := d.Update(s, delta); err != nil {
					t.Fatalf("%s step %d: %v", layout, step, err)
				}
			}
		}
		if got, want := dump(t, parts), dump(t, one); got != want {
			t.Fatalf("%s: maps after updates differ:\n%s", layout, faults.Diff(want, got))
		}
	}
}
