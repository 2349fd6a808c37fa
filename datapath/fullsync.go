package datapath

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
)

// A full sync plans every map's contents into slices, in parts planned on all cores, instead
// of diffing through per-key plan maps: at 100,000 pods and about a million policy groups the
// plan maps cost more than the kernel writes. On a fresh datapath (the kernel holds nothing)
// the parts are written as planned, each part by its own goroutine (hash map updates take
// per-bucket locks, so batch writes from two cores run about twice as fast as from one), while
// the Go mirror of the kernel is built from the same slices on the side.

// workers is how many parts a full sync plans and writes in parallel.
func workers() int { return max(1, min(runtime.GOMAXPROCS(0), 8)) }

// parallel runs the tasks on up to workers() goroutines and returns their errors joined.
func parallel(tasks ...func() error) error {
	n := min(workers(), len(tasks))
	if n <= 1 {
		var errs []error
		for _, task := range tasks {
			errs = append(errs, task())
		}
		return errors.Join(errs...)
	}
	errs := make([]error, len(tasks))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(tasks) {
					return
				}
				errs[i] = tasks[i]()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// background runs tasks on their own goroutines; wait returns when all are done.
type background struct{ wg sync.WaitGroup }

func (b *background) run(task func()) { b.wg.Go(task) }
func (b *background) wait()           { b.wg.Wait() }

// splitEven returns the bounds of n items cut into up to parts runs of about the same size,
// none shorter than least (planning a few entries in parts gains nothing).
func splitEven(n, parts, least int) []int {
	parts = max(1, min(parts, n/max(1, least)))
	bounds := make([]int, parts+1)
	for i := range bounds {
		bounds[i] = n * i / parts
	}
	return bounds
}

// minPart is the fewest entries worth a goroutine of their own (a variable so tests can plan
// small states in parts).
var minPart = 16 * 1024

// fullSync is one map's share of a full sync: what it should hold, in parts, and what must
// be written and deleted to get there.
type fullSync[K comparable, V comparable] struct {
	t *table[K, V]
	// keys and vals are the planned contents, in parts. After prepare they hold only the
	// entries the kernel lacks or holds with another value.
	keys [][]K
	vals [][]V
	// fresh: the kernel holds nothing, so everything is written and nothing deleted.
	fresh bool
	// next is the planned contents as a map: the mirror once the sync is through.
	next map[K]V
	del  []K
	// done counts the entries written per part; wrote is set once the upserts were tried.
	done  []int
	wrote bool
	err   error
}

func newFullSync[K comparable, V comparable](t *table[K, V], keys [][]K, vals [][]V) *fullSync[K, V] {
	return &fullSync[K, V]{t: t, keys: keys, vals: vals, fresh: len(t.cur) == 0}
}

func (f *fullSync[K, V]) planned() int {
	n := 0
	for _, p := range f.keys {
		n += len(p)
	}
	return n
}

// buildNext builds the mirror-to-be from the planned parts.
func (f *fullSync[K, V]) buildNext() {
	next := make(map[K]V, f.planned())
	for i, p := range f.keys {
		vs := f.vals[i]
		for j := range p {
			next[p[j]] = vs[j]
		}
	}
	f.next = next
}

// prepare diffs the plan against the kernel's contents unless the kernel holds nothing, in
// which case the mirror is built later, beside the writes (see startMirror).
func (f *fullSync[K, V]) prepare() {
	f.t.forgetPlan()
	if f.fresh {
		return
	}
	f.buildNext()
	cur := f.t.cur
	for i, p := range f.keys {
		vs := f.vals[i]
		var ks []K
		var nv []V
		for j := range p {
			if c, ok := cur[p[j]]; ok && c == vs[j] {
				continue
			}
			ks = append(ks, p[j])
			nv = append(nv, vs[j])
		}
		f.keys[i], f.vals[i] = ks, nv
	}
	for k := range cur {
		if _, ok := f.next[k]; !ok {
			f.del = append(f.del, k)
		}
	}
}

// startMirror builds a fresh map's mirror on the side while the kernel is written.
func (f *fullSync[K, V]) startMirror(bg *background) {
	if f.fresh {
		bg.run(f.buildNext)
	}
}

// writeUpserts writes the parts, each from its own goroutine.
func (f *fullSync[K, V]) writeUpserts(perKey bool) error {
	f.wrote = true
	f.done = make([]int, len(f.keys))
	errs := make([]error, len(f.keys))
	var wg sync.WaitGroup
	for i := range f.keys {
		if len(f.keys[i]) == 0 {
			continue
		}
		if len(f.keys) == 1 {
			f.done[i], errs[i] = f.t.write(f.keys[i], f.vals[i], perKey)
			break
		}
		wg.Go(func() { f.done[i], errs[i] = f.t.write(f.keys[i], f.vals[i], perKey) })
	}
	wg.Wait()
	f.err = errors.Join(errs...)
	return f.err
}

// finishUpserts brings the mirror to what the kernel holds after writeUpserts (next must be
// built), counts the operations and names the map in an error.
func (f *fullSync[K, V]) finishUpserts(st *opStats) error {
	if !f.wrote {
		return nil
	}
	t := f.t
	n := 0
	for _, d := range f.done {
		n += d
	}
	if f.planned() > 0 {
		st.add(t.count, n, t.entrySize())
	}
	if f.err == nil {
		// The kernel now holds the plan plus the entries still to be deleted.
		for _, k := range f.del {
			f.next[k] = t.cur[k]
		}
		t.cur = f.next
		return nil
	}
	if len(t.cur) == 0 {
		t.cur = make(map[K]V, n)
	}
	for i, d := range f.done {
		for j := range d {
			t.cur[f.keys[i][j]] = f.vals[i][j]
		}
	}
	return t.wrap("update", f.err)
}

// flushDeletes deletes what the plan no longer has.
func (f *fullSync[K, V]) flushDeletes(perKey bool, st *opStats) error {
	if len(f.del) == 0 {
		return nil
	}
	for _, k := range f.del {
		f.t.del[k] = struct{}{}
	}
	return f.t.flushDeletes(perKey, st)
}
