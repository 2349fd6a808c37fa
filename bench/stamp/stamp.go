package stamp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Hook is where a sample's last stamp ran.
type Hook uint8

const (
	HookNetfilterForward Hook = 1
	HookTCXIngress       Hook = 2
	HookTCXEgress        Hook = 3
	// HookNetfilterPath closes the nf-path span (PREROUTING to the outgoing veth's TCX egress).
	HookNetfilterPath Hook = 4
)

func (h Hook) String() string {
	switch h {
	case HookNetfilterForward:
		return "nf-forward"
	case HookTCXIngress:
		return "tcx-ingress"
	case HookTCXEgress:
		return "tcx-egress"
	case HookNetfilterPath:
		return "nf-path"
	}
	return fmt.Sprintf("hook-%d", uint8(h))
}

// Netfilter priorities of the stamps around the filter table (NF_IP_PRI_FILTER = 0), where
// iptables (legacy and nft flavours) registers its FORWARD chain, of the netfilter step that
// stands in for it in a floor, and of the stamp that opens the nf-path span: before
// NF_IP_PRI_RAW_BEFORE_DEFRAG (-450), so defragmentation (-400), the raw table (-300) and
// conntrack (-200) all run inside the span. The kernel refuses a BPF hook at a priority
// another hook holds (EBUSY), so the step cannot take the filter table's own priority.
const (
	PriorityBeforeFilter    int32 = -2
	PriorityStep            int32 = -1
	PriorityAfterFilter     int32 = 2
	PriorityBeforeConntrack int32 = -500
)

// Sample is one packet's enforcement time as the stamps saw it.
type Sample struct {
	// Delta is the time from the before-stamp to the after-stamp (or to the drop), ns. For a
	// pod-to-pod packet through TCX it is the sum of both veths' parts.
	Delta uint64
	// Carry is the tcx-ingress part of Delta, ns (0 when there was none).
	Carry   uint64
	Src     netip.Addr
	Dst     netip.Addr
	SrcPort uint16
	DstPort uint16
	Proto   uint8
	// TCPFlags are the TCP header's flag bits (0 for other protocols).
	TCPFlags uint8
	Hook     Hook
	// Dropped is set when the packet never reached the after-stamp; Reason is then the
	// kernel's skb_drop_reason.
	Dropped bool
	Reason  uint32
}

// New reports whether the sample is the first packet of a flow: a TCP SYN without ACK, or any
// packet of another protocol (UDP and ICMP probes are one packet per flow).
func (s Sample) New() bool {
	if s.Proto != 6 {
		return true
	}
	return s.TCPFlags&0x02 != 0 && s.TCPFlags&0x10 == 0
}

// sampleSize is sizeof(struct sample) in bpf/stamp/stamp.c.
const sampleSize = 40

func decodeSample(b []byte) (Sample, error) {
	if len(b) < sampleSize {
		return Sample{}, fmt.Errorf("decode sample: %d bytes, want %d", len(b), sampleSize)
	}
	var s Sample
	s.Delta = binary.LittleEndian.Uint64(b[0:])
	s.Carry = binary.LittleEndian.Uint64(b[8:])
	s.Src = netip.AddrFrom4([4]byte(b[16:20]))
	s.Dst = netip.AddrFrom4([4]byte(b[20:24]))
	s.SrcPort = binary.BigEndian.Uint16(b[24:])
	s.DstPort = binary.BigEndian.Uint16(b[26:])
	s.Proto = b[28]
	s.TCPFlags = b[29]
	s.Hook = Hook(b[30])
	s.Dropped = b[31] == 1
	s.Reason = binary.LittleEndian.Uint32(b[32:])
	return s, nil
}

// Counters are the stamps' own bookkeeping, summed over CPUs.
type Counters struct {
	Stamped, Passed, Dropped uint64
	// Unpaired counts after-stamps that found another packet's slot (nesting): not sampled.
	Unpaired uint64
	// Lost counts samples the ring buffer had no room for.
	Lost uint64
}

// Options configure the stamps at load time.
type Options struct {
	// PodRange is the pod address range (required): a tcx-ingress packet to it is carried to
	// the destination veth's egress stamp instead of being emitted.
	PodRange netip.Prefix
	// StepDropPort makes the TCX ingress step drop TCP and UDP to this port (tests); 0 drops
	// nothing by port.
	StepDropPort uint16
	// StepDropSource and StepDropDest make the step programs drop packets of these IP total
	// lengths, bytes (0: none): the TCX ingress step (the source's enforcement point) drops
	// StepDropSource, the TCX egress step (the destination's) StepDropDest, the netfilter step
	// both. The traffic generator marks a floor packet's drop point by its length.
	StepDropSource, StepDropDest uint16
}

// ethHeaderLen is what a TCX context's len counts beyond the IP packet.
const ethHeaderLen = 14

// lenOrZero converts an IP length marker into a context length (0 stays 0: no marker).
func lenOrZero(ipLen uint16, extra uint32) uint32 {
	if ipLen == 0 {
		return 0
	}
	return uint32(ipLen) + extra
}

// Stamps is a loaded set of stamp programs and their attachments.
type Stamps struct {
	objs stampObjects
	// tp is the kfree_skb tracepoint, attached for the life of the Stamps; links are the
	// attachments Detach removes, steps those of the step programs (DetachSteps).
	tp    link.Link
	links []link.Link
	steps []link.Link
	rd    *ringbuf.Reader
	// tcx holds the ifindexes the TCX stamps are attached to.
	tcx map[int]bool

	mu      sync.Mutex
	reasons map[uint32]string
}

// Load loads the stamp programs and attaches the kfree_skb tracepoint that closes dropped
// packets. Needs CAP_BPF and CAP_PERFMON (root), kernel ≥ 6.4 (netfilter links) and ≥ 6.6
// (TCX).
func Load(opts Options) (*Stamps, error) {
	if !opts.PodRange.IsValid() || !opts.PodRange.Addr().Is4() {
		return nil, errors.New("load stamps: pod range must be an IPv4 prefix")
	}
	spec, err := loadStamp()
	if err != nil {
		return nil, fmt.Errorf("load stamps: %w", err)
	}
	net4 := opts.PodRange.Masked().Addr().As4()
	var mask [4]byte
	for i := 0; i < opts.PodRange.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	// The C side compares raw network-order words; hand them over as the kernel reads them.
	for name, v := range map[string]any{
		"pod_net":            binary.LittleEndian.Uint32(net4[:]),
		"pod_mask":           binary.LittleEndian.Uint32(mask[:]),
		"step_drop_port":     opts.StepDropPort,
		"step_drop_len_in":   lenOrZero(opts.StepDropSource, ethHeaderLen),
		"step_drop_len_out":  lenOrZero(opts.StepDropDest, ethHeaderLen),
		"step_drop_len_nf_a": lenOrZero(opts.StepDropSource, 0),
		"step_drop_len_nf_b": lenOrZero(opts.StepDropDest, 0),
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("load stamps: set %s: %w", name, err)
		}
	}
	s := &Stamps{}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load stamps: %+v", ve)
		}
		return nil, fmt.Errorf("load stamps: %w", err)
	}
	tp, err := link.AttachTracing(link.TracingOptions{Program: s.objs.Drop, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		s.objs.Close()
		return nil, fmt.Errorf("attach kfree_skb tracepoint: %w (needs tp_btf and kernel BTF)", err)
	}
	s.tp = tp
	s.rd, err = ringbuf.NewReader(s.objs.Samples)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open sample ring buffer: %w", err)
	}
	return s, nil
}

// AttachNetfilter attaches the netfilter stamps on IPv4 FORWARD around the filter table, in the
// network namespace of the calling thread: call it from a locked thread that has entered the
// node namespace. The links are closed by Close.
func (s *Stamps) AttachNetfilter() error {
	for _, a := range []struct {
		prog *ebpf.Program
		prio int32
	}{{s.objs.NfBefore, PriorityBeforeFilter}, {s.objs.NfAfter, PriorityAfterFilter}} {
		l, err := link.AttachNetfilter(link.NetfilterOptions{
			Program:        a.prog,
			ProtocolFamily: link.NetfilterProtoIPv4,
			Hook:           link.NetfilterInetForward,
			Priority:       a.prio,
		})
		if err != nil {
			return fmt.Errorf("attach netfilter stamp at priority %d: %w (needs kernel ≥ 6.4)", a.prio, err)
		}
		s.links = append(s.links, l)
	}
	return nil
}

// AttachTCX attaches the TCX stamps on ifindex: before-stamps at the head and after-stamps at
// the tail of both the ingress and the egress chain, so whatever enforcement program sits on
// the device runs between them. The enforcement program must return TCX_NEXT on allow, or
// the after-stamp never runs and allowed packets go unmeasured.
func (s *Stamps) AttachTCX(ifindex int) error {
	for _, a := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
		anchor link.Anchor
	}{
		{s.objs.TcxIngressBefore, ebpf.AttachTCXIngress, link.Head()},
		{s.objs.TcxIngressAfter, ebpf.AttachTCXIngress, link.Tail()},
		{s.objs.TcxEgressBefore, ebpf.AttachTCXEgress, link.Head()},
		{s.objs.TcxEgressAfter, ebpf.AttachTCXEgress, link.Tail()},
	} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: a.prog, Attach: a.attach, Anchor: a.anchor})
		if err != nil {
			return fmt.Errorf("attach tcx stamp on ifindex %d: %w (needs kernel ≥ 6.6)", ifindex, err)
		}
		s.links = append(s.links, l)
	}
	if s.tcx == nil {
		s.tcx = map[int]bool{}
	}
	s.tcx[ifindex] = true
	return nil
}

// AttachStep attaches the trivial step programs on ifindex's TCX ingress and egress, each just
// before its chain's after-stamp when the stamps are on that device: the empty step for the
// floor (dropping the packets Options.StepDropSource and StepDropDest mark), or a port drop
// for tests.
func (s *Stamps) AttachStep(ifindex int) error {
	for _, a := range []struct {
		prog, after *ebpf.Program
		attach      ebpf.AttachType
	}{
		{s.objs.Step, s.objs.TcxIngressAfter, ebpf.AttachTCXIngress},
		{s.objs.StepOut, s.objs.TcxEgressAfter, ebpf.AttachTCXEgress},
	} {
		anchor := link.Tail()
		if s.tcx[ifindex] {
			anchor = link.BeforeProgram(a.after)
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: a.prog, Attach: a.attach, Anchor: anchor})
		if err != nil {
			return fmt.Errorf("attach step on ifindex %d: %w", ifindex, err)
		}
		s.steps = append(s.steps, l)
	}
	return nil
}

// TCXAnchors are where an enforcement program goes so that the TCX stamps of a device
// surround it: just before the after-stamp of the ingress and of the egress chain.
func (s *Stamps) TCXAnchors() (ingress, egress link.Anchor) {
	return link.BeforeProgram(s.objs.TcxIngressAfter), link.BeforeProgram(s.objs.TcxEgressAfter)
}

// AttachNetfilterPath opens the nf-path span on IPv4 PREROUTING ahead of conntrack
// (PriorityBeforeConntrack) and closes it at the head of the TCX egress chain of every
// outgoing device in ifindexes, in the network namespace of the calling thread (as
// AttachNetfilter). Needs kernel ≥ 6.4 (netfilter links) and ≥ 6.6 (TCX).
func (s *Stamps) AttachNetfilterPath(ifindexes ...int) error {
	l, err := link.AttachNetfilter(link.NetfilterOptions{
		Program:        s.objs.NfPathBefore,
		ProtocolFamily: link.NetfilterProtoIPv4,
		Hook:           link.NetfilterInetPreRouting,
		Priority:       PriorityBeforeConntrack,
	})
	if err != nil {
		return fmt.Errorf("attach netfilter path stamp at priority %d: %w (needs kernel ≥ 6.4)", PriorityBeforeConntrack, err)
	}
	s.links = append(s.links, l)
	for _, ifindex := range ifindexes {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: s.objs.NfPathAfter, Attach: ebpf.AttachTCXEgress, Anchor: link.Head()})
		if err != nil {
			return fmt.Errorf("attach netfilter path end on ifindex %d: %w (needs kernel ≥ 6.6)", ifindex, err)
		}
		s.links = append(s.links, l)
	}
	return nil
}

// AttachNetfilterStep attaches the netfilter step on IPv4 FORWARD next to the filter table
// (PriorityStep), in the network namespace of the calling thread: it stands in for the filter
// table when the floor is measured.
func (s *Stamps) AttachNetfilterStep() error {
	l, err := link.AttachNetfilter(link.NetfilterOptions{
		Program:        s.objs.NfStep,
		ProtocolFamily: link.NetfilterProtoIPv4,
		Hook:           link.NetfilterInetForward,
		Priority:       PriorityStep,
	})
	if err != nil {
		return fmt.Errorf("attach netfilter step: %w (needs kernel ≥ 6.4)", err)
	}
	s.steps = append(s.steps, l)
	return nil
}

// Detach removes every attachment but the kfree_skb tracepoint, steps included, so the stamps
// can be attached again. Samples already in the ring buffer stay there for Drain.
func (s *Stamps) Detach() error {
	err := errors.Join(s.DetachSteps(), detachAll(s.links))
	s.links = nil
	s.tcx = nil
	return err
}

// DetachSteps removes the step programs and leaves the stamps where they are.
func (s *Stamps) DetachSteps() error {
	err := detachAll(s.steps)
	s.steps = nil
	return err
}

// detachAll detaches and closes links, last first.
func detachAll(links []link.Link) error {
	var errs []error
	for i := len(links) - 1; i >= 0; i-- {
		// Detach first: closing alone releases a TCX link a moment later (from a kernel work
		// queue), and a program attached again, or a check that nothing is attached any more,
		// would still see it.
		if err := links[i].Detach(); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, ebpf.ErrNotSupported) {
			errs = append(errs, fmt.Errorf("detach stamp: %w", err))
		}
		errs = append(errs, links[i].Close())
	}
	return errors.Join(errs...)
}

// Drain reads every sample the ring buffer holds now, waiting at most wait for the first.
func (s *Stamps) Drain(wait time.Duration) ([]Sample, error) {
	var out []Sample
	var rec ringbuf.Record
	s.rd.SetDeadline(time.Now().Add(wait))
	for {
		err := s.rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read samples: %w", err)
		}
		smp, err := decodeSample(rec.RawSample)
		if err != nil {
			return out, err
		}
		out = append(out, smp)
		// After the first sample, take only what is already there.
		s.rd.SetDeadline(time.Now())
	}
}

// Counters sums the stamps' per-CPU counters.
func (s *Stamps) Counters() (Counters, error) {
	var c Counters
	dst := []*uint64{&c.Stamped, &c.Passed, &c.Dropped, &c.Unpaired, &c.Lost}
	for i, p := range dst {
		var per []uint64
		if err := s.objs.Counters.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("read stamp counters: %w", err)
		}
		for _, v := range per {
			*p += v
		}
	}
	return c, nil
}

// ReasonName returns the kernel's name of an skb_drop_reason (from kernel BTF), e.g.
// "SKB_DROP_REASON_NETFILTER_DROP", or the number when BTF has no name for it.
func (s *Stamps) ReasonName(r uint32) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reasons == nil {
		s.reasons = map[uint32]string{}
		if spec, err := btf.LoadKernelSpec(); err == nil {
			var e *btf.Enum
			if err := spec.TypeByName("skb_drop_reason", &e); err == nil {
				for _, v := range e.Values {
					s.reasons[uint32(v.Value)] = v.Name
				}
			}
		}
	}
	if n, ok := s.reasons[r]; ok {
		return n
	}
	return fmt.Sprintf("reason-%d", r)
}

// Close detaches every stamp (see detachAll) and releases the programs and maps.
func (s *Stamps) Close() error {
	errs := []error{s.Detach()}
	if s.tp != nil {
		errs = append(errs, s.tp.Close())
		s.tp = nil
	}
	if s.rd != nil {
		errs = append(errs, s.rd.Close())
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}
