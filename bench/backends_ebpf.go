package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cilium/ebpf"

	"netpolbench/datapath"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

func init() {
	for _, l := range []struct {
		name   string
		layout datapath.Layout
		perKey bool
	}{{"ebpf", datapath.LayoutHash, false}, {"ebpf-cilium", datapath.LayoutCilium, false}, {"ebpf-perkey", datapath.LayoutHash, true}} {
		path := "map-diff-batch"
		if l.perKey {
			path = "map-diff-per-key"
		}
		Register(Factory{Name: l.name, Path: path, Kernel: !l.perKey, Open: func(env Env) (policy.Backend, error) {
			return openEBPF(env, l.name, l.layout, l.perKey)
		}})
	}
}

// ebpfBackend is the identity datapath with the bench's extras: exact sizes from the kernel,
// BPF_PROG_TEST_RUN batch means and enforcement in the testbed.
type ebpfBackend struct {
	*datapath.Datapath
	name   string
	layout datapath.Layout
}

// openEBPF opens the datapath for sync, churn and test runs. perKey applies map changes one
// syscall per key instead of batch operations (the path the datapath measures against).
func openEBPF(env Env, name string, layout datapath.Layout, perKey bool) (policy.Backend, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: the eBPF datapath needs root (CAP_BPF, CAP_NET_ADMIN)", ErrUnavailable)
	}
	// CTLookup keeps test-run probes independent of each other (no entry is created) while
	// paying the lookup a real new flow pays.
	dp, err := datapath.Open(datapath.Options{Layout: layout, CT: datapath.CTLookup, NoDropEvents: true, PerKey: perKey, Sizes: datapath.SizesFor(env.State, layout)})
	if err != nil {
		return nil, err
	}
	return &ebpfBackend{Datapath: dp, name: name, layout: layout}, nil
}

func (b *ebpfBackend) Name() string { return b.name }

// Size reports every map and program as the kernel sees them.
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
	pkt, err := datapath.Packet(policy.Flow{Src: podRange.Addr().Next(), Dst: podRange.Addr().Next().Next(), Proto: policy.ProtoTCP, Port: 80}, datapath.ProbeSrcPort)
	if err != nil {
		return 0, err
	}
	_, d, err := b.EmptyProgram().Benchmark(pkt, repeat, nil)
	if err != nil {
		return 0, fmt.Errorf("test-run empty program: %w", err)
	}
	return d, nil
}

// Enforce puts a second datapath, synced to s, on every pod veth of the testbed: with full
// conntrack (real connections need their replies to pass) and TCX_NEXT on allow, so the
// stamps behind it see allowed packets. The backend's own maps stay for test runs.
func (b *ebpfBackend) Enforce(tb *testbed.Testbed, s *policy.State) (Enforcement, error) {
	dp, err := datapath.Open(datapath.Options{Layout: b.layout, CT: datapath.CTFull, TCXNext: true, NoDropEvents: true, Sizes: datapath.SizesFor(s, b.layout)})
	if err != nil {
		return Enforcement{}, err
	}
	if _, err := dp.Sync(s); err != nil {
		dp.Close()
		return Enforcement{}, fmt.Errorf("sync enforcing datapath: %w", err)
	}
	var cl closerList
	err = tb.InNode(func() error {
		for _, v := range tb.PodVeths() {
			l, err := dp.AttachTCX(v.Index)
			if err != nil {
				return err
			}
			cl = append(cl, l)
		}
		return nil
	})
	cl = append(cl, dp)
	if err != nil {
		return Enforcement{}, errors.Join(err, cl.Close())
	}
	return Enforcement{Attach: attachTCX, Backend: dp, Closer: cl}, nil
}

type closerList []io.Closer

// Close closes in reverse order (links before the programs they hold).
func (c closerList) Close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i].Close())
	}
	return errors.Join(errs...)
}
