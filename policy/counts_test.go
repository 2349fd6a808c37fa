package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestCountTableMatchesAMap drives the count table and a Go map with the same random inserts,
// updates and deletes (few distinct peers and ports, so keys collide and runs form) and
// compares them after every step, through growing and shrinking; with small segments, also
// through splitting segments and folding them back into one.
func TestCountTableMatchesAMap(t *testing.T) {
	for _, seg := range []int{4096, 64} {
		t.Run(fmt.Sprintf("segment=%d", seg), func(t *testing.T) {
			defer func(old int) { segSlots = old }(segSlots)
			segSlots = seg
			countTableMatchesAMap(t)
		})
	}
}

func countTableMatchesAMap(t *testing.T) {
	split := false
	for seed := range 20 {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		tab := countTable{seed: uint32(seed)}
		want := map[entryKey]int32{}
		keys := 1 + r.IntN(2000)
		randKey := func() entryKey {
			return entryKey{peer: Identity(256 + r.IntN(keys)), port: uint16(r.IntN(3) * 80), named: uint32(r.IntN(2)), proto: 6}
		}
		for step := range 20000 {
			k := randKey()
			switch op := r.IntN(10); {
			case op < 5 && step <= 15000:
				n := int32(1 + r.IntN(3))
				tab.upsert(k).n += n
				want[k] += n
			case op < 9 || step > 15000: // the second phase drains the table
				tab.remove(k)
				delete(want, k)
			default:
				v, ok := tab.get(k)
				w, wok := want[k]
				if ok != wok || v.n != w {
					t.Fatalf("seed %d step %d: get %v = %d, %v; want %d, %v", seed, step, k, v.n, ok, w, wok)
				}
			}
			if tab.len() != len(want) {
				t.Fatalf("seed %d step %d: %d keys, want %d", seed, step, tab.len(), len(want))
			}
			split = split || tab.dir != nil
			segs, slots := 0, 0
			tab.segments(func(s *countSeg) {
				segs++
				slots += len(s.slots)
				if 4*s.n > 3*len(s.slots) || len(s.slots) > segSlots {
					t.Fatalf("seed %d step %d: a segment has %d keys in %d slots (at most %d, three quarters full)", seed, step, s.n, len(s.slots), segSlots)
				}
			})
			if tab.dir != nil && (segs != tab.segs || slots != tab.slots || len(tab.dir) != 1<<tab.depth) {
				t.Fatalf("seed %d step %d: %d segments of %d slots counted as %d of %d; directory %d at depth %d",
					seed, step, segs, slots, tab.segs, tab.slots, len(tab.dir), tab.depth)
			}
		}
		if tab.dir != nil && 8*tab.len() < segSlots || tab.dir == nil && len(tab.one.slots) > minCountTable && 8*tab.len() < len(tab.one.slots) {
			t.Fatalf("seed %d: %d keys left in %d slots, %d directory entries: the table did not shrink", seed, tab.len(), len(tab.one.slots), len(tab.dir))
		}
		seen := 0
		tab.each(func(k entryKey, v count) {
			seen++
			if want[k] != v.n {
				t.Fatalf("seed %d: each gives %v = %d, want %d", seed, k, v.n, want[k])
			}
		})
		if seen != len(want) {
			t.Fatalf("seed %d: each visits %d keys, want %d", seed, seen, len(want))
		}
		for k, w := range want {
			if v, ok := tab.get(k); !ok || v.n != w {
				t.Fatalf("seed %d: get %v = %d, %v; want %d", seed, k, v.n, ok, w)
			}
		}
		for k := range want {
			tab.remove(k)
			delete(want, k)
			for k2, w := range want { // spot-check the rest as the table folds back
				if v, ok := tab.get(k2); !ok || v.n != w {
					t.Fatalf("seed %d draining: get %v = %d, %v; want %d", seed, k2, v.n, ok, w)
				}
				break
			}
		}
		if tab.len() != 0 || tab.dir != nil || len(tab.one.slots) > minCountTable {
			t.Fatalf("seed %d: drained table has %d keys, %d directory entries, %d slots", seed, tab.len(), len(tab.dir), len(tab.one.slots))
		}
	}
	if segSlots < 1000 && !split {
		t.Error("no table ever split into segments")
	}
}

func TestEntryKeysRoundTrip(t *testing.T) {
	c := &Compiler{portName: map[string]uint32{}}
	for _, e := range []Entry{
		{Peer: IdentityAny},
		{Peer: 300, Proto: ProtoTCP, Port: 80, EndPort: 80},
		{Peer: 300, Proto: ProtoUDP, Port: 1000, EndPort: 2000},
		{Peer: IdentityLocalScope + 1, Proto: ProtoTCP, NamedPort: "http"},
		{Peer: 301, Proto: ProtoSCTP, NamedPort: "metrics"},
		{Peer: 302, Proto: ProtoTCP, NamedPort: "http"},
	} {
		if got := c.entry(c.key(e)); got != e {
			t.Errorf("entry(key(%v)) = %v", e, got)
		}
	}
	if len(c.portNames) != 2 {
		t.Errorf("named ports interned: %v, want http and metrics once each", c.portNames)
	}
}

func TestIDListIsASortedSet(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var l idList
	want := map[Identity]bool{}
	for step := range 5000 {
		id := Identity(256 + r.IntN(300))
		if r.IntN(3) == 0 {
			if got := l.remove(id); got != want[id] {
				t.Fatalf("step %d: remove(%d) = %v, want %v", step, id, got, want[id])
			}
			delete(want, id)
		} else {
			if got := l.add(id); got == want[id] {
				t.Fatalf("step %d: add(%d) = %v with the id present: %v", step, id, got, want[id])
			}
			want[id] = true
		}
		if len(l) != len(want) || !slices.IsSorted(l) || l.has(id) != want[id] {
			t.Fatalf("step %d: list %v, want the sorted ids of %v", step, l, want)
		}
	}
}

// Rule sets that gain an entry with every new identity hold the same number of keys. Their
// tables must not all double on the same insert.
func TestCountTablesOfEqualSizeGrowAtDifferentPoints(t *testing.T) {
	defer func(old int) { segSlots = old }(segSlots)
	segSlots = 4096
	at := map[int]bool{}
	for seed := range 64 {
		tab := countTable{seed: uint32(seed)}
		for i := 0; len(tab.one.slots) < 4096; i++ {
			tab.upsert(entryKey{peer: Identity(256 + i)}).n++
			if len(tab.one.slots) == 4096 {
				at[i] = true
			}
		}
	}
	if len(at) < 32 {
		t.Errorf("64 tables doubled to 4096 slots at only %d distinct sizes", len(at))
	}
}

// Keys whose hashes share their top bits (crafted ones can) must not double the directory with
// every split: it stays within eight entries per segment, and every key stays reachable.
func TestCountTableDirectoryStaysSmallForKeysSharingTopBits(t *testing.T) {
	defer func(old int) { segSlots = old }(segSlots)
	segSlots = 64
	var keys []entryKey
	for p := uint32(256); len(keys) < 400; p++ {
		for port := uint16(1); port < 8 && len(keys) < 400; port++ {
			k := entryKey{peer: Identity(p), port: port, end: port, proto: 6}
			if k.hash()>>54 == 0x155 { // the same top 10 bits
				keys = append(keys, k)
			}
		}
	}
	var tab countTable
	for i, k := range keys {
		tab.upsert(k).n = int32(i + 1)
		if tab.dir != nil && len(tab.dir) > 8*tab.segs {
			t.Fatalf("after %d keys: %d directory entries for %d segments", i+1, len(tab.dir), tab.segs)
		}
	}
	for i, k := range keys {
		if v, ok := tab.get(k); !ok || v.n != int32(i+1) {
			t.Fatalf("key %d: %d, %v", i, v.n, ok)
		}
	}
}

// Segments never merge, so a table that loses most of its keys is rebuilt at the size the
// rest need.
func TestCountTableThatShrinksGivesBackItsSlots(t *testing.T) {
	defer func(old int) { segSlots = old }(segSlots)
	segSlots = 64
	var tab countTable
	for i := range 20000 {
		tab.upsert(entryKey{peer: Identity(256 + i)}).n = int32(i + 1)
	}
	for i := range 19400 {
		tab.remove(entryKey{peer: Identity(256 + i)})
		if tab.dir != nil && 8*tab.len() < tab.slots {
			t.Fatalf("after %d removals: %d keys in %d slots", i+1, tab.len(), tab.slots)
		}
	}
	for i := 19400; i < 20000; i++ {
		if v, ok := tab.get(entryKey{peer: Identity(256 + i)}); !ok || v.n != int32(i+1) {
			t.Fatalf("key %d: %d, %v", i, v.n, ok)
		}
	}
}

// get returns k's count, and whether k is there.
func (t *countTable) get(k entryKey) (count, bool) {
	if t.n == 0 {
		return count{}, false
	}
	h := k.hash()
	s := t.seg(h)
	i, ok := s.find(k, h)
	return s.slots[i].v, ok
}
