package policy

import (
	"math/bits"
	"slices"
)

// entryKey is an Entry as a rule set's count table holds it: 16 bytes without pointers, so
// the table is one flat block the garbage collector does not scan. The named port is interned
// (Compiler.portNames); 0 is none.
type entryKey struct {
	peer  Identity
	named uint32
	port  uint16
	end   uint16
	proto uint32
}

// key returns an entry's key, interning its named port.
func (c *Compiler) key(e Entry) entryKey {
	k := entryKey{peer: e.Peer, port: e.Port, end: e.EndPort, proto: uint32(e.Proto)}
	if e.NamedPort != "" {
		n, ok := c.portName[e.NamedPort]
		if !ok {
			c.portNames = append(c.portNames, e.NamedPort)
			n = uint32(len(c.portNames))
			c.portName[e.NamedPort] = n
		}
		k.named = n
	}
	return k
}

// entry turns a key back into its entry.
func (c *Compiler) entry(k entryKey) Entry {
	e := Entry{Peer: k.peer, Proto: Protocol(k.proto), Port: k.port, EndPort: k.end}
	if k.named != 0 {
		e.NamedPort = c.portNames[k.named-1]
	}
	return e
}

func (k entryKey) hash() uint64 {
	a := uint64(k.peer)<<32 | uint64(k.named)
	b := uint64(k.port)<<48 | uint64(k.end)<<32 | uint64(k.proto)
	hi, lo := bits.Mul64(a^0x9e3779b97f4a7c15, b^0xd6e8feb86659fd93)
	return hi ^ lo
}

// count is how many (policy, rule, port) contributions an entry of a set has. epoch is the
// compiler's epoch of the event that last touched it, and touch its index in the set's
// touched list during that event.
type count struct {
	n     int32
	epoch uint32
	touch int32
}

// countTable maps entry keys to counts: open addressing with linear probing, deleting by
// shifting later entries back instead of leaving tombstones.
//
// Go's map costs a rule set several dependent cache misses per lookup once it is big (map,
// directory, table, control word, slot), and churn, which inserts new identities' entries and
// deletes released ones, leaves its probe sequences long. Here a lookup in a table of one
// segment is the table header and, mostly, one cache line of slots.
//
// A table past segSlots slots grows by splitting one segment at a time (extendible hashing:
// the top bits of a key's hash pick its segment in a directory), so no insert rehashes more
// than one segment's keys, however big the rule set.
type countTable struct {
	one countSeg    // the table while it is one segment (most rule sets are small)
	dir []*countSeg // then: dir[hash>>(64-depth)] is a key's segment
	// depth is the number of top hash bits that index dir.
	depth uint
	// segs and slots count the segments in dir and their slots.
	segs, slots int
	n           int
	seed        uint32
}

type countSeg struct {
	slots []countSlot // length 0 or a power of two, at most segSlots
	n     int
	// grow is the key count past which the segment doubles or splits: between a half and
	// three quarters of its slots, drawn per segment. Rule sets that gain an entry with every
	// new identity hold the same number of keys; with one threshold they would all grow in
	// the same event.
	grow  int
	depth uint   // the top hash bits its keys share (in dir)
	salt  uint32 // with the table's seed, draws grow
}

type countSlot struct {
	k    entryKey
	v    count
	used bool
}

const minCountTable = 8

// segSlots is the most slots a segment has: 4,096 of 32 bytes, so splitting one moves at most
// 3,072 keys. A variable so tests can make tables split early.
var segSlots = 4096

// len returns the number of keys.
func (t *countTable) len() int { return t.n }

// seg returns the segment of hash h.
func (t *countTable) seg(h uint64) *countSeg {
	if t.dir == nil {
		return &t.one
	}
	return t.dir[h>>(64-t.depth)]
}

// find returns the slot of k, or of the empty slot where it would go.
func (s *countSeg) find(k entryKey, h uint64) (int, bool) {
	mask := len(s.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		sl := &s.slots[i]
		if !sl.used {
			return i, false
		}
		if sl.k == k {
			return i, true
		}
	}
}

// upsert returns k's count, inserting a zero count when k is not there. The pointer is valid
// until the next upsert or remove.
func (t *countTable) upsert(k entryKey) *count {
	h := k.hash()
	s := t.seg(h)
	for s.n+1 > s.grow { // a split may leave k's half as full: split again
		if len(s.slots) < segSlots || !t.splittable(s) {
			t.resizeSeg(s, max(2*len(s.slots), minCountTable))
		} else {
			t.split(s)
		}
		s = t.seg(h)
	}
	i, ok := s.find(k, h)
	if !ok {
		s.slots[i] = countSlot{k: k, used: true}
		s.n++
		t.n++
	}
	return &s.slots[i].v
}

// remove deletes k. It moves later slots of k's run back so every key stays reachable from
// its home slot without passing an empty one.
func (t *countTable) remove(k entryKey) {
	if t.n == 0 {
		return
	}
	h := k.hash()
	s := t.seg(h)
	i, ok := s.find(k, h)
	if !ok {
		return
	}
	mask := len(s.slots) - 1
	for j := (i + 1) & mask; s.slots[j].used; j = (j + 1) & mask {
		// Slot j may fill the hole at i unless its home lies cyclically in (i, j].
		home := int(s.slots[j].k.hash()) & mask
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = countSlot{}
	s.n--
	t.n--
	switch {
	case t.dir != nil && 8*t.n < segSlots:
		t.collapse()
	case t.dir != nil && 8*t.n < t.slots:
		t.rebuild() // segments never merge: start again at the size the keys need
	case t.dir == nil && len(s.slots) > minCountTable && 8*s.n < len(s.slots):
		s.resize(len(s.slots)/2, t.seed)
	}
}

// resizeSeg resizes a segment, keeping the table's slot count.
func (t *countTable) resizeSeg(s *countSeg, size int) {
	if t.dir != nil {
		t.slots += size - len(s.slots)
	}
	s.resize(size, t.seed)
}

// splittable says whether a full segment may split. Keys whose hashes share many top bits
// (crafted, or equal) would double the directory with every split and leave most of it
// pointing at few segments: past eight directory entries per segment, or 32 bits, the segment
// grows instead.
func (t *countTable) splittable(s *countSeg) bool {
	return t.dir == nil || s.depth < 32 && (s.depth < t.depth || len(t.dir) < 4*t.segs)
}

// rebuild inserts every key into a fresh table.
func (t *countTable) rebuild() {
	type kv struct {
		k entryKey
		v count
	}
	all := make([]kv, 0, t.n)
	t.each(func(k entryKey, v count) { all = append(all, kv{k, v}) })
	*t = countTable{seed: t.seed}
	for _, e := range all {
		*t.upsert(e.k) = e.v
	}
}

// resize rehashes the segment into size slots.
func (s *countSeg) resize(size int, seed uint32) {
	old := s.slots
	s.slots = make([]countSlot, size)
	s.grow = size/2 + int(jitter(seed^s.salt, uint32(size))%uint32(size/4+1))
	mask := size - 1
	for _, sl := range old {
		if !sl.used {
			continue
		}
		i := int(sl.k.hash()) & mask
		for s.slots[i].used {
			i = (i + 1) & mask
		}
		s.slots[i] = sl
	}
}

// split divides a full segment in two by the next bit of its keys' hashes, doubling the
// directory first when the segment already uses all of its bits.
func (t *countTable) split(s *countSeg) {
	if t.dir == nil {
		seg := new(countSeg)
		*seg = t.one
		t.one = countSeg{}
		t.dir, t.depth, s = []*countSeg{seg}, 0, seg
		t.segs, t.slots = 1, len(seg.slots)
	}
	if s.depth == t.depth {
		dir := make([]*countSeg, 2*len(t.dir))
		for i := range dir {
			dir[i] = t.dir[i>>1]
		}
		t.dir, t.depth = dir, t.depth+1
	}
	// The halves' prefixes (the top depth+1 bits their keys share) salt their growth points.
	first := slices.Index(t.dir, s)
	prefix := uint32(first >> (t.depth - s.depth))
	var halves [2]*countSeg
	for b := range halves {
		halves[b] = &countSeg{depth: s.depth + 1, salt: (2*prefix + uint32(b) + 1) * 0x9e3779b1}
		halves[b].resize(len(s.slots), t.seed)
	}
	t.segs++
	t.slots += len(s.slots)
	bit := 63 - s.depth
	for _, sl := range s.slots {
		if !sl.used {
			continue
		}
		h := sl.k.hash()
		d := halves[h>>bit&1]
		mask := len(d.slots) - 1
		i := int(h) & mask
		for d.slots[i].used {
			i = (i + 1) & mask
		}
		d.slots[i] = sl
		d.n++
	}
	shift := t.depth - s.depth - 1 // the directory bit that now tells the halves apart
	for i, d := range t.dir {
		if d == s {
			t.dir[i] = halves[i>>shift&1]
		}
	}
}

// collapse folds the segments of a table that has shrunk back into one.
func (t *countTable) collapse() {
	size := minCountTable
	for 2*t.n > size {
		size *= 2
	}
	one := countSeg{}
	one.resize(size, t.seed)
	t.each(func(k entryKey, v count) {
		i, _ := one.find(k, k.hash())
		one.slots[i] = countSlot{k: k, v: v, used: true}
		one.n++
	})
	t.one, t.dir, t.depth, t.segs, t.slots = one, nil, 0, 0, 0
}

// jitter is a hash of a seed and a size, to draw per-table and per-set growth points.
func jitter(seed, size uint32) uint32 {
	h := (seed ^ size*0x9e3779b1) * 0x85ebca6b
	return h ^ h>>15
}

// segments calls fn for every segment once.
func (t *countTable) segments(fn func(*countSeg)) {
	if t.dir == nil {
		fn(&t.one)
		return
	}
	for i, s := range t.dir {
		if i == 0 || t.dir[i-1] != s { // a segment's directory entries are adjacent
			fn(s)
		}
	}
}

// each calls fn for every key and its count, in no particular order. fn must not change the
// table.
func (t *countTable) each(fn func(entryKey, count)) {
	t.segments(func(s *countSeg) {
		for i := range s.slots {
			if sl := &s.slots[i]; sl.used {
				fn(sl.k, sl.v)
			}
		}
	})
}

// clearEpochs zeroes every count's epoch.
func (t *countTable) clearEpochs() {
	t.segments(func(s *countSeg) {
		for i := range s.slots {
			s.slots[i].v.epoch = 0
		}
	})
}
