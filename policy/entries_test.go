package policy

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSortEntriesOrdersBigListsLikeCompareEntries(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 3000} {
		r := testRand(uint64(n))
		es := make([]Entry, n)
		for i := range es {
			peer := Identity(256 + r.IntN(300))
			switch r.IntN(4) {
			case 0:
				peer = IdentityLocalScope + Identity(r.IntN(40))
			case 1:
				peer = Identity(r.IntN(3)) // any, host, world
			}
			es[i] = Entry{Peer: peer, Proto: Protocol(r.IntN(3)), Port: uint16(r.IntN(4)), EndPort: uint16(r.IntN(3))}
			if r.IntN(5) == 0 {
				es[i].NamedPort = []string{"http", "dns"}[r.IntN(2)]
			}
		}
		want := slices.Clone(es)
		slices.SortFunc(want, CompareEntries)
		SortEntries(es)
		if !slices.Equal(es, want) {
			t.Errorf("%d entries: SortEntries differs from sorting by CompareEntries", n)
		}
	}
}

func TestSearchFromEndFindsLikeBinarySearchFunc(t *testing.T) {
	r := testRand(7)
	for _, n := range []int{0, 1, 2, 5, 100, 700} {
		var es []Entry
		for range n {
			es = append(es, Entry{Peer: Identity(256 + r.IntN(50)), Proto: Protocol(r.IntN(3)), Port: uint16(r.IntN(5))})
		}
		SortEntries(es)
		es = slices.Compact(es)
		for range 500 {
			e := Entry{Peer: Identity(250 + r.IntN(60)), Proto: Protocol(r.IntN(3)), Port: uint16(r.IntN(6))}
			gi, gf := searchFromEnd(es, e)
			wi, wf := slices.BinarySearchFunc(es, e, CompareEntries)
			if gi != wi || gf != wf {
				t.Fatalf("%d entries: searchFromEnd(%v) = %d, %v; want %d, %v", len(es), e, gi, gf, wi, wf)
			}
		}
	}
}

func TestMergeEntriesAddsAndRemovesInOrder(t *testing.T) {
	r := testRand(11)
	for trial := range 400 {
		var all []Entry
		for range r.IntN(300) {
			all = append(all, Entry{Peer: Identity(256 + r.IntN(80)), Proto: Protocol(r.IntN(2)), Port: uint16(r.IntN(4))})
		}
		SortEntries(all)
		all = slices.Compact(all)
		// Each entry is kept, removed, or (left out of the list) added back.
		var sorted, add, del, want []Entry
		for _, e := range all {
			switch r.IntN(4) {
			case 0:
				add = append(add, e)
				want = append(want, e)
			case 1:
				sorted = append(sorted, e)
				del = append(del, e)
			default:
				sorted = append(sorted, e)
				want = append(want, e)
			}
		}
		if trial%2 == 0 { // spare capacity: the merge must still not disturb it wrongly
			sorted = slices.Grow(sorted, r.IntN(20))
		}
		if trial%5 == 0 { // few changes: the search path
			add, del = add[:min(len(add), 3)], del[:min(len(del), 3)]
			want = want[:0]
			for _, e := range all {
				if (slices.Contains(sorted, e) && !slices.Contains(del, e)) || slices.Contains(add, e) {
					want = append(want, e)
				}
			}
		}
		if got := mergeEntries(sorted, add, del); !slices.Equal(got, want) {
			t.Fatalf("trial %d: merge of %d entries, +%d -%d gives %d entries, want %d", trial, len(sorted), len(add), len(del), len(got), len(want))
		}
	}
}

// testRand is the source of the entries these tests draw.
func testRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
