package policy

import "math/bits"

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

// countTable maps entry keys to counts: an open-addressing table with linear probing, kept at
// most half full, that deletes by shifting later entries back instead of leaving tombstones.
//
// Go's map costs a rule set several dependent cache misses per lookup once it is big (map,
// directory, table, control word, slot), and churn, which inserts new identities' entries and
// deletes released ones, leaves its probe sequences long. Here a lookup is the table header
// and, mostly, one cache line of slots.
type countTable struct {
	slots []countSlot // length 0 or a power of two
	n     int
	// grow is the key count past which the table doubles: between a half and three quarters
	// of its slots, drawn per table from seed. Rule sets that gain an entry with every new
	// identity hold the same number of keys; with one threshold they would all double in the
	// same event.
	grow int
	seed uint32
}

type countSlot struct {
	k    entryKey
	v    count
	used bool
}

const minCountTable = 8

// len returns the number of keys.
func (t *countTable) len() int { return t.n }

// find returns the slot of k, or of the empty slot where it would go.
func (t *countTable) find(k entryKey) (int, bool) {
	mask := len(t.slots) - 1
	for i := int(k.hash()) & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if !s.used {
			return i, false
		}
		if s.k == k {
			return i, true
		}
	}
}

// get returns k's count, and whether k is there.
func (t *countTable) get(k entryKey) (count, bool) {
	if t.n == 0 {
		return count{}, false
	}
	i, ok := t.find(k)
	return t.slots[i].v, ok
}

// upsert returns k's count, inserting a zero count when k is not there. The pointer is valid
// until the next upsert or remove.
func (t *countTable) upsert(k entryKey) *count {
	if t.n+1 > t.grow {
		t.resize(max(2*len(t.slots), minCountTable))
	}
	i, ok := t.find(k)
	if !ok {
		t.slots[i] = countSlot{k: k, used: true}
		t.n++
	}
	return &t.slots[i].v
}

// remove deletes k. It moves later slots of k's run back so every key stays reachable from
// its home slot without passing an empty one.
func (t *countTable) remove(k entryKey) {
	if t.n == 0 {
		return
	}
	i, ok := t.find(k)
	if !ok {
		return
	}
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].used; j = (j + 1) & mask {
		// Slot j may fill the hole at i unless its home lies cyclically in (i, j].
		home := int(t.slots[j].k.hash()) & mask
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = countSlot{}
	t.n--
	if len(t.slots) > minCountTable && 8*t.n < len(t.slots) {
		t.resize(len(t.slots) / 2)
	}
}

// reserve makes room for n keys in all, so a batch of inserts resizes the table at most once.
func (t *countTable) reserve(n int) {
	if n <= t.grow {
		return
	}
	size := max(len(t.slots), minCountTable)
	for 2*n > size {
		size *= 2
	}
	t.resize(size)
}

func (t *countTable) resize(size int) {
	old := t.slots
	t.slots = make([]countSlot, size)
	t.grow = size/2 + int(jitter(t.seed, uint32(size))%uint32(size/4+1))
	mask := size - 1
	for _, s := range old {
		if !s.used {
			continue
		}
		i := int(s.k.hash()) & mask
		for t.slots[i].used {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// jitter is a hash of a seed and a size, to draw per-table and per-set growth points.
func jitter(seed, size uint32) uint32 {
	h := (seed ^ size*0x9e3779b1) * 0x85ebca6b
	return h ^ h>>15
}

// each calls fn for every key and its count, in no particular order. fn must not change the
// table.
func (t *countTable) each(fn func(entryKey, count)) {
	for i := range t.slots {
		if s := &t.slots[i]; s.used {
			fn(s.k, s.v)
		}
	}
}
