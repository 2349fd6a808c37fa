package datapath

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// The faults the map writer injects, each as the kernel reports it.
var (
	faultFull          = faults.Kind{Name: "update: map full"}
	faultPartialUpdate = faults.Kind{Name: "batch update: k of n written, then map full", Partial: true}
	faultDelete        = faults.Kind{Name: "delete: EBUSY"}
	faultPartialDelete = faults.Kind{Name: "batch delete: k of n deleted, then EBUSY", Partial: true}
	faultEpoch         = faults.Kind{Name: "epoch write: EBUSY"}
)

// faultyMap is a map writer that fails where its schedule says, leaving the kernel as it would
// be left: a full map refuses a batch at some entry after writing the ones before it (a
// preallocated hash map says E2BIG, an LPM trie ENOSPC), a batch delete stops part way.
type faultyMap struct {
	mapWriter
	full error
	s    *faults.Schedule
}

func (f *faultyMap) BatchUpdate(keys, values any, opts *ebpf.BatchOptions) (int, error) {
	k, ok := f.s.Next(faultFull, faultPartialUpdate)
	if !ok {
		return f.mapWriter.BatchUpdate(keys, values, opts)
	}
	done := 0
	if k == faultPartialUpdate {
		cut := f.s.IntN(reflect.ValueOf(keys).Len())
		var err error
		if done, err = f.writePrefix(keys, values, cut, opts); err != nil {
			return done, err
		}
	}
	return done, fmt.Errorf("batch update: %w", f.full)
}

// writePrefix writes the first n entries as one batch (one per key where the map type has no
// batch operations).
func (f *faultyMap) writePrefix(keys, values any, n int, opts *ebpf.BatchOptions) (int, error) {
	if n == 0 {
		return 0, nil
	}
	ks, vs := reflect.ValueOf(keys).Slice(0, n), reflect.ValueOf(values).Slice(0, n)
	done, err := f.mapWriter.BatchUpdate(ks.Interface(), vs.Interface(), opts)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return done, err
	}
	for i := range n {
		if err := f.mapWriter.Put(ks.Index(i).Addr().Interface(), vs.Index(i).Addr().Interface()); err != nil {
			return i, err
		}
	}
	return n, nil
}

func (f *faultyMap) Put(key, value any) error {
	if _, ok := f.s.Next(faultFull); ok {
		return fmt.Errorf("update: %w", f.full)
	}
	return f.mapWriter.Put(key, value)
}

func (f *faultyMap) BatchDelete(keys any, opts *ebpf.BatchOptions) (int, error) {
	k, ok := f.s.Next(faultDelete, faultPartialDelete)
	if !ok {
		return f.mapWriter.BatchDelete(keys, opts)
	}
	done := 0
	if cut := f.s.IntN(reflect.ValueOf(keys).Len()); k == faultPartialDelete && cut > 0 {
		var err error
		if done, err = f.mapWriter.BatchDelete(reflect.ValueOf(keys).Slice(0, cut).Interface(), opts); err != nil {
			return done, err
		}
	}
	return done, fmt.Errorf("batch delete: %w", unix.EBUSY)
}

func (f *faultyMap) Delete(key any) error {
	if _, ok := f.s.Next(faultDelete); ok {
		return fmt.Errorf("delete: %w", unix.EBUSY)
	}
	return f.mapWriter.Delete(key)
}

// faultyEpoch fails the epoch's writes where its schedule says.
type faultyEpoch struct {
	mapWriter
	s *faults.Schedule
}

func (f *faultyEpoch) Put(key, value any) error {
	if _, ok := f.s.Next(faultEpoch); ok {
		return fmt.Errorf("update: %w", unix.EBUSY)
	}
	return f.mapWriter.Put(key, value)
}

// injectFaults puts s between the datapath and every map a sync writes.
func injectFaults(d *Datapath, s *faults.Schedule) {
	t := d.tabs
	t.lxc.m = &faultyMap{mapWriter: t.lxc.m, full: unix.E2BIG, s: s}
	t.ipcache.m = &faultyMap{mapWriter: t.ipcache.m, full: unix.ENOSPC, s: s}
	t.summary.m = &faultyMap{mapWriter: t.summary.m, full: unix.E2BIG, s: s}
	t.policy.m = &faultyMap{mapWriter: t.policy.m, full: unix.E2BIG, s: s}
	t.named.m = &faultyMap{mapWriter: t.named.m, full: unix.E2BIG, s: s}
	d.epochMap = &faultyEpoch{mapWriter: d.epochMap, s: s}
}

// mirror renders the Go side's view of the maps as dump renders the kernel's.
func mirror(d *Datapath) string {
	t := d.tabs
	return d.render(contents{lxc: t.lxc.cur, ipcache: t.ipcache.cur, summary: t.summary.cur, policy: t.policy.cur, named: t.named.cur})
}

// planned renders what a fresh full sync of s writes: the plan of every entry, nothing diffed.
func planned(tb testing.TB, d *Datapath, s *policy.State) string {
	tb.Helper()
	p, err := planState(s, d.opts.Layout == LayoutCilium, d.opts.InlinePorts, d.names, 1)
	if err != nil {
		tb.Fatal(err)
	}
	c := contents{lxc: map[uint32]bpfEndpoint{}, ipcache: map[bpfIpcacheKey]bpfIpcacheValue{},
		summary: map[bpfSummaryKey]bpfSummary{}, policy: map[bpfPolicyKey]uint8{}, named: map[bpfNamedPortKey]bpfNamedPortValue{}}
	fill(c.ipcache, [][]bpfIpcacheKey{p.ipcK}, [][]bpfIpcacheValue{p.ipcV})
	fill(c.summary, p.sumK, p.sumV)
	fill(c.policy, p.polK, p.polV)
	fill(c.named, p.namK, p.namV)
	fill(c.lxc, p.lxcK, p.lxcV)
	return d.render(c)
}

func fill[K comparable, V any](m map[K]V, ks [][]K, vs [][]V) {
	for i := range ks {
		for j := range ks[i] {
			m[ks[i][j]] = vs[i][j]
		}
	}
}

func kernelEpoch(tb testing.TB, d *Datapath) uint32 {
	tb.Helper()
	var e uint32
	if err := d.objs.Epoch.Lookup(uint32(0), &e); err != nil {
		tb.Fatal(err)
	}
	return e
}

// faultSubject describes a datapath under faults for faults.Drive. Its mirror check holds the
// Go side to the kernel after every call, failed or not, and holds the epoch to its promise:
// once a call succeeds, the maps' contents never differ from those of the last successful call
// without the epoch having moved (established flows must be checked again).
func faultSubject(d *Datapath, s *faults.Schedule) faults.Subject {
	var okDump string
	var okEpoch uint32
	synced := false
	return faults.Subject{
		Backend:  d,
		Schedule: s,
		Dump:     func(tb testing.TB) string { return dump(tb, d) },
		Fresh:    func(tb testing.TB, st *policy.State) string { return planned(tb, d, st) },
		Fallback: func(st policy.SyncStats) bool { return CountsOf(st).Fallback },
		Mirror: func(tb testing.TB, failed bool) bool {
			tb.Helper()
			now := dump(tb, d)
			if m := mirror(d); m != now {
				tb.Fatalf("the Go mirror differs from the kernel's maps (- kernel, + mirror):\n%s", faults.Diff(now, m))
			}
			if failed {
				return true
			}
			e := kernelEpoch(tb, d)
			if e != d.epoch {
				tb.Fatalf("the kernel's epoch is %d, the Go side believes %d", e, d.epoch)
			}
			if synced && now != okDump && e == okEpoch {
				tb.Fatalf("the maps changed since the last successful call but the epoch stayed at %d: established flows keep the old policy's verdict", e)
			}
			okDump, okEpoch, synced = now, e, true
			return true
		},
	}
}

// faultCases are the backends of the catalogue this package provides: both layouts, batch and
// per-key writes (ebpf, ebpf-cilium, ebpf-perkey).
// every is the mean number of map operations between faults: one syscall writes a batch, or
// one key on the per-key path, so per-key faults are spaced wider for the same share of
// failed calls.
//
// inParts plans and writes full syncs in parts from several goroutines, as a sync of 100,000
// pods does, so faults also hit one part of a map while another part is written.
var faultCases = []struct {
	name    string
	opts    Options
	every   []int
	inParts bool
}{
	{"ebpf", Options{Layout: LayoutHash}, []int{3, 7, 17}, false},
	{"ebpf-cilium", Options{Layout: LayoutCilium}, []int{3, 7, 17}, false},
	{"ebpf-perkey", Options{Layout: LayoutHash, PerKey: true}, []int{12, 28, 68}, false},
	{"ebpf-in-parts", Options{Layout: LayoutHash}, []int{5}, true},
}

// TestFaultsAtTheMapWriterLeaveTheMirrorTrueAndConverge runs the default churn stream over the
// default workload at 200 pods with a fault every N map operations on average (three N per
// backend, seeded): full maps, batches cut part way, failed deletes and epoch writes. After every event
// the Go mirror equals the kernel's maps, a failed call says a full sync follows, a call that
// succeeds leaves the maps a fresh sync writes with the epoch moved, and once the faults stop
// the datapath converges to what a freshly opened one holds after one sync.
func TestFaultsAtTheMapWriterLeaveTheMirrorTrueAndConverge(t *testing.T) {
	needBPF(t)
	var all faults.Tally
	for _, fc := range faultCases {
		for i, every := range fc.every {
			t.Run(fmt.Sprintf("%s/every=%d", fc.name, every), func(t *testing.T) {
				if fc.inParts {
					if workers() < 2 {
						t.Skip("needs GOMAXPROCS ≥ 2 to write in parts")
					}
					old := minPart
					minPart = 8
					t.Cleanup(func() { minPart = old })
				}
				g, err := workloads.Generate(workloads.Default().WithPods(200))
				if err != nil {
					t.Fatal(err)
				}
				comp := policytest.MustCompile(t, g.Cluster)
				spec := workloads.DefaultChurn()
				spec.Count, spec.Rate = 40, 0
				ch, err := workloads.NewChurn(spec, g, uint64(10+i))
				if err != nil {
					t.Fatal(err)
				}
				opts := fc.opts
				opts.Sizes = SizesFor(comp.State(), opts.Layout)
				d := mustOpen(t, opts)
				sched := faults.NewSchedule(every, uint64(100+i))
				injectFaults(d, sched)
				tally := faults.Drive(t, faultSubject(d, sched), comp, ch)
				fresh := mustSynced(t, comp.State(), opts)
				if got, want := dump(t, d), dump(t, fresh); got != want {
					t.Fatalf("after the faults stopped the maps differ from a fresh datapath's:\n%s", faults.Diff(want, got))
				}
				all.Add(tally)
			})
		}
	}
	if !t.Failed() {
		faults.RequireKinds(t, all, faultFull, faultPartialUpdate, faultDelete, faultPartialDelete, faultEpoch)
	}
	t.Logf("ebpf backends: %s", all)
}

// TestFullMapNamesTheMapItsSizeAndTheFlag: a sync into maps too small for the state fails with
// ErrMapFull naming the map, the entries it holds, its max_entries, the Sizes field and the
// command-line flag that raise it, and the Go side still knows exactly what the kernel holds
// (the batch stopped part way) and resyncs in full next.
func TestFullMapNamesTheMapItsSizeAndTheFlag(t *testing.T) {
	g, err := workloads.Generate(workloads.Default().WithPods(100))
	if err != nil {
		t.Fatal(err)
	}
	s := policytest.MustCompile(t, g.Cluster).State()
	for _, tc := range []struct {
		name, field string
		opts        Options
	}{
		{"lxc", "Endpoints", Options{Sizes: Sizes{Endpoints: 16}}},
		{"ipcache", "IPCache", Options{Layout: LayoutCilium, Sizes: Sizes{IPCache: 16}}},
		{"policy_summary", "Summaries", Options{Sizes: Sizes{Summaries: 16}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustOpen(t, tc.opts)
			_, err := d.Sync(s)
			if !errors.Is(err, ErrMapFull) || !errors.Is(err, policy.ErrNextSyncFull) {
				t.Fatalf("sync into a %d-entry %s: %v, want ErrMapFull and ErrNextSyncFull", 16, tc.name, err)
			}
			for _, want := range []string{"map " + tc.name + ":", "max_entries 16", "Options.Sizes." + tc.field, "--map-headroom"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
			if now := dump(t, d); mirror(d) != now {
				t.Fatalf("after a full map the Go mirror differs from the kernel:\n%s", faults.Diff(now, mirror(d)))
			}
		})
	}
}

// TestMapTheKernelRefusesNamesItsSizeAndTheFlag: a map too large to create is named with its
// max_entries, the Sizes field and the flag, whether the kernel says it is too big (E2BIG, on
// this kernel) or out of memory (ENOMEM from the memory cgroup, EPERM from RLIMIT_MEMLOCK
// before Linux 5.11, which are made up here).
func TestMapTheKernelRefusesNamesItsSizeAndTheFlag(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	sz := Sizes{Endpoints: 1 << 29, Policy: 3 << 20}
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{fmt.Errorf("map policy: map create: %w (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", unix.EPERM),
			[]string{"map policy with max_entries 3145728", "Options.Sizes.Policy", "--map-headroom", "ulimit -l"}},
		{fmt.Errorf("map lxc: map create: %w", unix.ENOMEM),
			[]string{"map lxc with max_entries 536870912", "Options.Sizes.Endpoints", "--map-headroom", "memory.max"}},
	} {
		msg, ok := refusedMap(tc.err, &sz, spec)
		if !ok {
			t.Fatalf("%v: not recognised as a refused map", tc.err)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: explanation does not say %q: %s", tc.err, w, msg)
			}
		}
	}
	if _, ok := refusedMap(fmt.Errorf("map lxc: map create: %w", unix.EINVAL), &sz, spec); ok {
		t.Errorf("EINVAL explained as a refused size")
	}

	// A hash map of 2^29 entries needs more than 2^32 bytes of buckets: the kernel refuses it
	// with E2BIG before allocating anything.
	needBPF(t)
	_, err = Open(Options{Sizes: Sizes{Endpoints: 1 << 29}})
	if err == nil {
		t.Fatal("opened a datapath with a 2^29-entry lxc map")
	}
	for _, w := range []string{"map lxc with max_entries 536870912", "Options.Sizes.Endpoints", "--map-headroom"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q: %v", w, err)
		}
	}
}

// TestEpochMovesAfterAFailedEpochWrite: when an update's map writes land but its epoch write
// fails, the next call moves the epoch even if it has nothing else to write, so established
// flows are checked against the changed maps.
func TestEpochMovesAfterAFailedEpochWrite(t *testing.T) {
	g, err := workloads.Generate(workloads.Default().WithPods(100))
	if err != nil {
		t.Fatal(err)
	}
	comp := policytest.MustCompile(t, g.Cluster)
	s := comp.State()
	d := mustSynced(t, s, Options{Sizes: SizesFor(s, LayoutHash)})
	before := kernelEpoch(t, d)
	sched := faults.NewSchedule(1, 1) // every epoch write fails
	d.epochMap = &faultyEpoch{mapWriter: d.epochMap, s: sched}
	ch, err := workloads.NewChurn(workloads.DefaultChurn(), g, 3)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ch.NextOf(workloads.ChurnPodAdd)
	if err != nil {
		t.Fatal(err)
	}
	delta, err := comp.Apply(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	sched.Start()
	if _, err := d.Update(s, delta); !errors.Is(err, policy.ErrNextSyncFull) {
		t.Fatalf("update with a failing epoch write: %v, want an error saying a full sync follows", err)
	}
	sched.Stop()
	st, err := d.Update(s, &policy.Delta{})
	if err != nil {
		t.Fatal(err)
	}
	if c := CountsOf(st); !c.Fallback || c.Ops.Epoch != 1 {
		t.Errorf("the call after the failure: fallback %v, %d epoch writes; want a fallback that writes the epoch", c.Fallback, c.Ops.Epoch)
	}
	if after := kernelEpoch(t, d); after == before {
		t.Fatalf("the pod's entry is in the maps but the kernel's epoch is still %d: established flows are not checked again", after)
	}
}
