package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// touch is an entry changed by the current event: whether it existed at the event's start
// and its count now (kept here too, so finish needs no map lookup per change).
type touch struct {
	k   entryKey
	was bool
	n   int32
}

// contribute adds (n = 1) or takes back (n = -1) every entry one policy gives a rule set.
func (c *Compiler) contribute(s *ruleSet, cp *compiledPolicy, n int32) {
	for _, r := range cp.rules[s.Direction] {
		if len(r.peers) == 0 {
			c.forPorts(s, r, IdentityAny, func(e Entry) { c.bump(s, e, n) })
			continue
		}
		for _, pe := range r.peers {
			for _, id := range c.selectors.selected(pe) {
				c.forPorts(s, r, id, func(e Entry) { c.bump(s, e, n) })
			}
		}
	}
}

// bumpRule adds (n = 1) or takes back (n = -1) what the rule of a peer contributes for one
// identity to every rule set of the peer's policy in the peer's direction: the selector cache
// calls it for every identity a peer gains or loses.
func (c *Compiler) bumpRule(ref peerRef, id Identity, n int32) {
	cp, dir, r := ref.cp, ref.dir, ref.rule
	if ps := c.setsByPolicy[cp.key]; ps != nil {
		for _, s := range ps[dir] {
			c.forPorts(s, r, id, func(e Entry) { c.bump(s, e, n) })
		}
	}
}

// forPorts expands one rule and one peer identity into the set's entries.
func (c *Compiler) forPorts(s *ruleSet, r *compiledRule, peer Identity, fn func(Entry)) {
	if len(r.ports) == 0 {
		fn(Entry{Peer: peer})
		return
	}
	for _, p := range r.ports {
		switch {
		case p.name == "":
			fn(Entry{Peer: peer, Proto: p.proto, Port: p.port, EndPort: p.endPort})
		case s.Direction == Egress:
			fn(Entry{Peer: peer, Proto: p.proto, NamedPort: p.name})
		default:
			for _, cp := range s.ports {
				if cp.Name == p.name && cp.Protocol == p.proto {
					fn(Entry{Peer: peer, Proto: p.proto, Port: cp.Port, EndPort: cp.Port})
					break
				}
			}
		}
	}
}

// bump changes an entry's count by n. The first touch in an event notes whether the entry
// existed before it; finish turns the touched entries into the delta.
func (c *Compiler) bump(s *ruleSet, e Entry, n int32) {
	k := c.key(e)
	v := s.counts.upsert(k)
	now := v.n + n
	if now < 0 {
		panic(fmt.Sprintf("policy: rule set %d entry %s count below zero", s.ID, e))
	}
	if !s.full {
		if v.epoch != c.epoch {
			if len(s.touched) == 0 {
				c.markChanged(s)
			}
			v.epoch, v.touch = c.epoch, int32(len(s.touched))
			s.touched = append(s.touched, touch{k: k, was: v.n > 0})
		}
		s.touched[v.touch].n = now
	}
	v.n = now
}

// finish brings the sorted views of changed rule sets up to date and returns the entries that
// appeared and vanished, sorted by set and entry (nothing when compiling from scratch). A new
// set sorts its counts; a removed one loses the entries it had at the start of the event; the
// others compare their touched entries' counts with how they started and merge the difference.
func (c *Compiler) finish() (added, removed []RuleSetEntry) {
	// Sorted by id without following the pointers: hundreds of sets may have changed, each
	// a cache miss away.
	type byID struct {
		id RuleSetID
		s  *ruleSet
	}
	order := make([]byID, 0, len(c.changed))
	for _, s := range c.changed {
		order = append(order, byID{s.ID, s})
	}
	clear(c.changed)
	c.changed = c.changed[:0]
	slices.SortFunc(order, func(a, b byID) int { return cmp.Compare(a.id, b.id) })
	sets := make([]*ruleSet, len(order))
	for i, o := range order {
		sets[i] = o.s
	}
	incremental := c.d != nil
	if incremental { // at most this many changes: size the delta once
		var na, nr int
		for _, s := range sets {
			switch {
			case s.full:
				na += s.counts.len()
			case s.refs == 0:
				nr += len(s.Entries)
			default:
				for _, t := range s.touched {
					switch {
					case !t.was && t.n > 0:
						na++
					case t.was && t.n == 0:
						nr++
					}
				}
			}
		}
		added, removed = make([]RuleSetEntry, 0, na), make([]RuleSetEntry, 0, nr)
	}
	for _, s := range sets {
		dead := s.refs == 0
		switch {
		case s.full:
			s.full = false
			if dead {
				continue // born and gone in one event
			}
			s.Entries = s.Entries[:0]
			var zero []entryKey
			s.counts.each(func(k entryKey, v count) {
				if v.n == 0 {
					zero = append(zero, k)
					return
				}
				s.Entries = append(s.Entries, c.entry(k))
			})
			for _, k := range zero {
				s.counts.remove(k)
			}
			SortEntries(s.Entries)
			if incremental {
				added = appendSet(added, s, s.Entries)
			}
		case dead:
			removed = appendSet(removed, s, s.Entries)
		default:
			add, del := c.scratch[0][:0], c.scratch[1][:0]
			for _, t := range s.touched {
				switch {
				case !t.was && t.n > 0:
					add = append(add, c.entry(t.k))
				case t.n == 0:
					if t.was {
						del = append(del, c.entry(t.k))
					}
					s.counts.remove(t.k)
				}
			}
			s.touched = s.touched[:0]
			SortEntries(add)
			SortEntries(del)
			if n := len(s.Entries); n+len(add) > cap(s.Entries) && n >= 64 {
				// Sets that gain an entry with every new identity fill up in step: a per-set
				// share of extra room (a quarter to three quarters) spreads their copies.
				extra := n/4 + int(jitter(uint32(s.ID), uint32(n))%uint32(n/2+1))
				s.Entries = slices.Grow(s.Entries, len(add)+extra)
			}
			s.Entries = mergeEntries(s.Entries, add, del)
			added = appendSet(added, s, add)
			removed = appendSet(removed, s, del)
			c.scratch = [2][]Entry{add, del} // nothing keeps them: reuse for the next set
		}
	}
	return added, removed
}

func appendSet(out []RuleSetEntry, s *ruleSet, es []Entry) []RuleSetEntry {
	for _, e := range es {
		out = append(out, RuleSetEntry{s.ID, s.Direction, e})
	}
	return out
}

// mergeEntries adds and removes sorted entries from sorted entries, in place: deletions
// compact the list from the first one on, and additions merge in from the back, so adding a
// new identity's entries, which go near the end, moves only what lies after them.
func mergeEntries(sorted, add, del []Entry) []Entry {
	if len(add) == 0 && len(del) == 0 {
		return sorted
	}
	if len(add)+len(del) <= 8 { // a few: search for each
		for _, e := range del {
			if i, found := searchFromEnd(sorted, e); found {
				sorted = slices.Delete(sorted, i, i+1)
			}
		}
		for _, e := range add {
			if i, found := searchFromEnd(sorted, e); !found {
				sorted = slices.Insert(sorted, i, e)
			}
		}
		return sorted
	}
	if len(del) > 0 {
		w, _ := slices.BinarySearchFunc(sorted, del[0], CompareEntries)
		for _, e := range sorted[w:] {
			if len(del) > 0 && CompareEntries(del[0], e) == 0 {
				del = del[1:]
				continue
			}
			sorted[w] = e
			w++
		}
		clear(sorted[w:]) // let go of the named ports' strings
		sorted = sorted[:w]
	}
	n, m := len(sorted), len(add)
	sorted = slices.Grow(sorted, m)[:n+m]
	for i, j, k := n-1, m-1, n+m-1; j >= 0; k-- {
		if i >= 0 && CompareEntries(sorted[i], add[j]) > 0 {
			sorted[k] = sorted[i]
			i--
		} else {
			sorted[k] = add[j]
			j--
		}
	}
	return sorted
}

// searchFromEnd is slices.BinarySearchFunc(es, e, CompareEntries), galloping from the end: a
// new identity has the highest number so far, and its entries go in just before the few CIDR
// entries at the end of a set, where a binary search over the whole set would take a cache
// miss per probe.
func searchFromEnd(es []Entry, e Entry) (int, bool) {
	// The insertion point lies in [lo, hi]: es[:lo] < e <= es[hi:].
	lo, hi := 0, len(es)
	for step := 1; hi > 0; step *= 2 {
		i := max(len(es)-step, 0)
		if CompareEntries(es[i], e) < 0 {
			lo = i + 1
			break
		}
		hi = i
	}
	i, _ := slices.BinarySearchFunc(es[lo:hi], e, CompareEntries)
	at := lo + i
	return at, at < len(es) && CompareEntries(es[at], e) == 0
}

// SortEntries sorts entries by peer, protocol, port, end port and port name.
//
// Big lists (a policy event may add thousands of entries to a set) are sorted by peer with a
// byte-wise radix sort, and only runs of one peer are compared entry by entry: most entries
// of a set differ by peer, and comparison sorting moved and compared 40-byte entries
// log2(n) times each.
func SortEntries(es []Entry) {
	if len(es) < 256 {
		slices.SortFunc(es, CompareEntries)
		return
	}
	tmp := make([]Entry, len(es))
	src, dst := es, tmp
	for shift := 0; shift < 32; shift += 8 {
		var counts [256]int
		for i := range src {
			counts[byte(src[i].Peer>>shift)]++
		}
		if counts[byte(src[0].Peer>>shift)] == len(src) {
			continue // every peer has this byte: the pass would change nothing
		}
		pos := 0
		for b, n := range counts {
			counts[b] = pos
			pos += n
		}
		for i := range src {
			b := byte(src[i].Peer >> shift)
			dst[counts[b]] = src[i]
			counts[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &es[0] {
		copy(es, src)
	}
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && es[j].Peer == es[i].Peer {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(es[i:j], CompareEntries)
		}
		i = j
	}
}

// CompareEntries orders entries by peer, protocol, port, end port and port name. Early returns,
// not cmp.Or, which would evaluate every comparison: deltas of big policy events sort
// thousands of entries.
func CompareEntries(a, b Entry) int {
	if a.Peer != b.Peer {
		return cmp.Compare(a.Peer, b.Peer)
	}
	if a.Proto != b.Proto {
		return cmp.Compare(a.Proto, b.Proto)
	}
	if a.Port != b.Port {
		return cmp.Compare(a.Port, b.Port)
	}
	if a.EndPort != b.EndPort {
		return cmp.Compare(a.EndPort, b.EndPort)
	}
	return strings.Compare(a.NamedPort, b.NamedPort)
}
