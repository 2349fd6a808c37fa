package datapath

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"netpolbench/policy"
)

// mapWriter is what a sync writes a map through: the *ebpf.Map itself, or a test's wrapper
// that injects faults. Batch operations return how many entries the kernel processed, also
// when they fail part way (the kernel applies a batch in order and stops at the first error).
type mapWriter interface {
	BatchUpdate(keys, values any, opts *ebpf.BatchOptions) (int, error)
	BatchDelete(keys any, opts *ebpf.BatchOptions) (int, error)
	Put(key, value any) error
	Delete(key any) error
}

// table mirrors one BPF map: cur is what the kernel holds (every change goes through flush),
// up and del are the pending changes of the plan being built.
type table[K comparable, V comparable] struct {
	name string
	// field is the Sizes field that sets the map's max_entries, for messages.
	field string
	// count picks the map's count in a MapCounts.
	count func(*MapCounts) *int
	m     mapWriter
	max   uint32
	cur   map[K]V
	up    map[K]V
	del   map[K]struct{}
}

func newTable[K comparable, V comparable](sm sizedMap, count func(*MapCounts) *int, m mapWriter) *table[K, V] {
	return &table[K, V]{name: sm.name, field: sm.field, count: count, m: m, max: *sm.entries,
		cur: map[K]V{}, up: map[K]V{}, del: map[K]struct{}{}}
}

// set plans k = v; a no-op when the kernel already holds it.
func (t *table[K, V]) set(k K, v V) {
	delete(t.del, k)
	if c, ok := t.cur[k]; ok && c == v {
		delete(t.up, k)
		return
	}
	t.up[k] = v
}

// remove plans the deletion of k; a later set in the same plan cancels it.
func (t *table[K, V]) remove(k K) {
	delete(t.up, k)
	if _, ok := t.cur[k]; ok {
		t.del[k] = struct{}{}
	}
}

// forgetPlan drops the pending changes of a plan that was never flushed (a failed update): a
// full sync plans from what the kernel holds.
func (t *table[K, V]) forgetPlan() {
	if len(t.up) > 0 {
		t.up = map[K]V{}
	}
	if len(t.del) > 0 {
		t.del = map[K]struct{}{}
	}
}

func (t *table[K, V]) entrySize() int {
	var k K
	var v V
	return int(unsafe.Sizeof(k) + unsafe.Sizeof(v))
}

// opStats counts the kernel operations of one flush.
type opStats struct {
	ops   int
	bytes int
	// perMap counts the operations per map.
	perMap MapCounts
}

func (s *opStats) add(count func(*MapCounts) *int, n, size int) {
	s.ops += n
	s.bytes += n * size
	*count(&s.perMap) += n
}

// stats is what the flush cost so far.
func (s *opStats) stats() policy.SyncStats {
	return policy.SyncStats{Ops: s.ops, Bytes: s.bytes, Detail: &Counts{Ops: s.perMap}}
}

// flushUpserts writes the planned updates to the kernel.
func (t *table[K, V]) flushUpserts(perKey bool, st *opStats) error {
	if len(t.up) == 0 {
		return nil
	}
	keys := make([]K, 0, len(t.up))
	vals := make([]V, 0, len(t.up))
	for k, v := range t.up {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	done, err := t.write(keys, vals, perKey)
	if len(t.cur) == 0 {
		t.cur = make(map[K]V, done) // a first sync: skip the growth steps
	}
	for i := 0; i < done; i++ {
		t.cur[keys[i]] = vals[i]
	}
	st.add(t.count, done, t.entrySize())
	if err != nil {
		return t.wrap("update", err)
	}
	t.up = map[K]V{} // clear() would keep the buckets of a full sync and cost O(capacity) each time
	return nil
}

func (t *table[K, V]) write(keys []K, vals []V, perKey bool) (int, error) {
	if !perKey {
		n, err := t.m.BatchUpdate(keys, vals, nil)
		if err == nil || !errors.Is(err, ebpf.ErrNotSupported) {
			return n, err
		}
	}
	for i := range keys {
		if err := t.m.Put(&keys[i], &vals[i]); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

// flushDeletes removes the planned deletions from the kernel.
func (t *table[K, V]) flushDeletes(perKey bool, st *opStats) error {
	if len(t.del) == 0 {
		return nil
	}
	keys := make([]K, 0, len(t.del))
	for k := range t.del {
		keys = append(keys, k)
	}
	done := 0
	var err error
	if !perKey {
		done, err = t.m.BatchDelete(keys, nil)
		if err != nil && errors.Is(err, ebpf.ErrNotSupported) {
			done, err = 0, nil
			perKey = true
		}
	}
	if perKey {
		for ; done < len(keys); done++ {
			if err = t.m.Delete(&keys[done]); err != nil {
				break
			}
		}
	}
	for i := 0; i < done; i++ {
		delete(t.cur, keys[i])
	}
	st.add(t.count, done, int(unsafe.Sizeof(keys[0])))
	if err != nil {
		return t.wrap("delete", err)
	}
	t.del = map[K]struct{}{}
	return nil
}

// wrap names the map; a full map is reported as such, never as a silent miss, with its size
// and what sets it. (A preallocated hash map that is full refuses a new key with E2BIG, an
// LPM trie with ENOSPC.)
func (t *table[K, V]) wrap(verb string, err error) error {
	if verb == "update" && (errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC)) {
		return fmt.Errorf("%s map %s: %w: %d entries held, max_entries %d: %w (raise Options.Sizes.%s; %s)",
			verb, t.name, ErrMapFull, len(t.cur), t.max, err, t.field, HeadroomHint)
	}
	return fmt.Errorf("%s map %s: %w", verb, t.name, err)
}

// ErrMapFull is returned (wrapped) when a map has no room for a planned entry.
var ErrMapFull = errors.New("map full")
