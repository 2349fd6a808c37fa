package catalogue

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"netpolbench/datapath"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// layoutOf is a backend's map layout: its own when it fixes one, else the environment's.
func layoutOf(fixed datapath.Layout, env Env) datapath.Layout {
	if fixed != "" {
		return fixed
	}
	if env.Layout != "" {
		return env.Layout
	}
	return datapath.LayoutHash
}

// newEBPF opens the datapath for sync, churn and test runs. perKey applies map changes one
// syscall per key instead of batch operations (the path the datapath measures against).
func newEBPF(layout datapath.Layout, perKey bool) func(Env) (policy.Backend, error) {
	return func(env Env) (policy.Backend, error) {
		l := layoutOf(layout, env)
		km, err := newKernelMeter(env.name, nil, kernelCountsEBPF)
		if err != nil {
			return nil, err
		}
		// The maps charge their memory to the cgroup of the thread that creates them, for good:
		// only the opening needs the meter's thread.
		var dp *datapath.Datapath
		err = km.Do(func() error {
			var err error
			// CTLookup keeps test-run probes independent of each other (no entry is created)
			// while paying the lookup a real new flow pays.
			dp, err = datapath.Open(datapath.Options{Layout: l, CT: datapath.CTLookup, NoDropEvents: true, PerKey: perKey, Sizes: datapath.SizesWithHeadroom(env.State, l, env.MapHeadroom)})
			return err
		})
		km.release()
		if err != nil {
			return nil, errors.Join(err, km.Close())
		}
		return &ebpfBackend{Datapath: dp, name: env.name, kmem: km}, nil
	}
}

// decideEBPF opens the datapath synced, deciding each flow's first packet with
// BPF_PROG_TEST_RUN through from_container and to_container. Conntrack lookups happen but
// create nothing, so probes stay independent.
func decideEBPF(layout datapath.Layout) func(Env) (Decider, error) {
	return func(env Env) (Decider, error) {
		l := layoutOf(layout, env)
		d, err := datapath.Open(datapath.Options{Layout: l, CT: datapath.CTLookup, Sizes: datapath.SizesWithHeadroom(env.State, l, env.MapHeadroom)})
		if err != nil {
			return nil, fmt.Errorf("open ebpf: %w", err)
		}
		if _, err := d.Sync(env.State); err != nil {
			d.Close()
			return nil, fmt.Errorf("open ebpf: %w", err)
		}
		return d, nil
	}
}

// stampedCTEntries sizes conntrack of a stamped install at Cilium's default (512k TCP
// entries) at every scale: a per-packet measurement opens tens of thousands of flows, and a
// table sized by pod count would evict at small scales and not at large ones, which would be
// measured as a cost of scale.
const stampedCTEntries = 512 * 1024

// installEBPF loads a datapath synced to the state and attaches it to the node side of every
// pod veth (TCX ingress and egress; clsact filters on kernels before 6.6). Real traffic needs
// full conntrack: a SYN-ACK leaving the destination pod is judged as that pod's egress unless
// the SYN's allow created an entry for the reply.
func installEBPF(layout datapath.Layout) func(*testbed.Testbed, Env) (Installed, error) {
	return func(tb *testbed.Testbed, env Env) (Installed, error) {
		l := layoutOf(layout, env)
		opts := datapath.Options{Layout: l, CT: datapath.CTFull, Sizes: datapath.SizesWithHeadroom(env.State, l, env.MapHeadroom)}
		e := &installedEBPF{tb: tb, attach: (*datapath.Datapath).Attach}
		if env.Stamped {
			opts.TCXNext, opts.NoDropEvents = true, true
			opts.Sizes.CT = max(opts.Sizes.CT, stampedCTEntries)
			e.attach = (*datapath.Datapath).AttachTCX
		}
		dp, err := datapath.Open(opts)
		if err != nil {
			return Installed{}, fmt.Errorf("enforce ebpf: %w", err)
		}
		e.Datapath = dp
		st, err := dp.Sync(env.State)
		if err != nil {
			dp.Close()
			return Installed{Stats: st}, fmt.Errorf("enforce ebpf: sync: %w", err)
		}
		remove := func() error { return errors.Join(e.Out(), dp.Close()) }
		// Attach only after the maps are filled, so no packet meets a half-synced datapath.
		if err := e.put(func(ifindex int) (io.Closer, error) { return e.attach(dp, ifindex) }); err != nil {
			return Installed{Stats: st}, errors.Join(fmt.Errorf("enforce ebpf: attach: %w", err), remove())
		}
		return Installed{Backend: e, Remove: remove, Stats: st}, nil
	}
}

// planEBPF is the datapath's map plan for a full sync of the layout, with the maps sized as New
// sizes them.
func planEBPF(layout datapath.Layout) func(Env) (results.Size, error) {
	return func(env Env) (results.Size, error) {
		maps, err := datapath.PlannedMaps(env.State, layoutOf(layout, env), env.MapHeadroom)
		if err != nil {
			return results.Size{}, err
		}
		var out results.Size
		for _, m := range maps {
			out.Maps = append(out.Maps, results.MapSize{Name: m.Name, Type: m.Type, Entries: uint64(m.Entries), MaxEntries: uint64(m.MaxEntries),
				KeyBytes: m.KeyBytes, ValueBytes: m.ValueBytes})
		}
		return out, nil
	}
}

// installedEBPF is the datapath in force in a testbed, with the links that put it there; it
// can step out of the path and back in (Switch).
type installedEBPF struct {
	*datapath.Datapath
	tb     *testbed.Testbed
	attach func(*datapath.Datapath, int) (io.Closer, error)
	links  []io.Closer
}

var _ Switch = (*installedEBPF)(nil)

// put attaches the programs to every pod veth with attach, in the node namespace.
func (e *installedEBPF) put(attach func(ifindex int) (io.Closer, error)) error {
	return e.tb.InNode(func() error {
		for _, v := range e.tb.PodVeths() {
			c, err := attach(v.Index)
			if err != nil {
				return fmt.Errorf("%s: %w", v.Name, err)
			}
			e.links = append(e.links, c)
		}
		return nil
	})
}

// Out detaches the programs from every pod veth; the maps keep their entries.
func (e *installedEBPF) Out() error {
	var errs []error
	// tc filters (the fallback where TCX is missing) are deleted through netlink in the
	// calling thread's namespace.
	err := e.tb.InNode(func() error {
		for i := len(e.links) - 1; i >= 0; i-- {
			errs = append(errs, e.links[i].Close())
		}
		return nil
	})
	e.links = nil
	return errors.Join(append(errs, err)...)
}

// In attaches the programs again with TCX, at the given places of each chain.
func (e *installedEBPF) In(ingress, egress link.Anchor) error {
	if len(e.links) > 0 {
		return nil
	}
	err := e.put(func(ifindex int) (io.Closer, error) { return e.Datapath.AttachTCXAt(ifindex, ingress, egress) })
	if err != nil {
		return errors.Join(fmt.Errorf("put ebpf back: %w", err), e.Out())
	}
	return nil
}

// ebpfBackend is the datapath with what the benchmark measures besides sync and churn: exact
// sizes from the kernel and BPF_PROG_TEST_RUN batch means.
type ebpfBackend struct {
	*datapath.Datapath
	name string
	kmem *kernelMeter
}

func (b *ebpfBackend) Name() string { return b.name }

func (b *ebpfBackend) Close() error {
	return errors.Join(b.Datapath.Close(), b.kmem.Close())
}

// Size reports every map and program as the kernel sees them, and the kernel memory they take.
func (b *ebpfBackend) Size() (results.Size, error) {
	f, err := b.Facts()
	if err != nil {
		return results.Size{}, err
	}
	s := results.Size{Backend: b.name}
	for _, m := range f.Maps {
		if m.Entries < 0 {
			// ct and metrics: traffic fills them, not the policy; their capacity still counts.
			m.Entries = 0
		}
		s.Maps = append(s.Maps, results.MapSize{Name: m.Name, Type: m.Type, Entries: uint64(m.Entries), MaxEntries: uint64(m.MaxEntries),
			KeyBytes: m.KeyBytes, ValueBytes: m.ValueBytes, MemlockBytes: m.Memlock})
	}
	for _, p := range f.Programs {
		s.Programs = append(s.Programs, results.ProgramSize{Name: p.Name, Insns: uint64(p.Xlated / 8), JitedBytes: uint64(p.JITed), VerifierInsns: uint64(p.VerifiedInsns)})
	}
	b.kmem.fill(&s)
	return s, nil
}

// TestRun runs f's first packet through from_container and, when that allows it,
// to_container, each repeat times, and returns the sum of the kernel's mean run times: the
// enforcement cost of one packet, as a batch mean.
func (b *ebpfBackend) TestRun(f policy.Flow, repeat int) (time.Duration, error) {
	pkt, err := datapath.Packet(f, datapath.ProbeSrcPort)
	if err != nil {
		return 0, err
	}
	to, from := b.Programs()
	var total time.Duration
	for _, p := range []*ebpf.Program{from, to} {
		ret, d, err := p.Benchmark(pkt, repeat, nil)
		if err != nil {
			return 0, fmt.Errorf("test-run %s: %w", p, err)
		}
		total += d
		if int32(ret) == 2 { // TC_ACT_SHOT: the packet ends here
			break
		}
	}
	return total, nil
}

// TestRunFloor is the same measurement of the empty program: the test-run floor.
func (b *ebpfBackend) TestRunFloor(repeat int) (time.Duration, error) {
	a := testbed.PodRange.Addr()
	pkt, err := datapath.Packet(policy.Flow{Src: a.Next(), Dst: a.Next().Next(), Proto: policy.ProtoTCP, Port: 80}, datapath.ProbeSrcPort)
	if err != nil {
		return 0, err
	}
	_, d, err := b.EmptyProgram().Benchmark(pkt, repeat, nil)
	if err != nil {
		return 0, fmt.Errorf("test-run empty program: %w", err)
	}
	return d, nil
}
