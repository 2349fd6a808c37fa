package datapath

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"netpolbench/internal/needs"
	"netpolbench/policy"
)

// Layout is how remote peers are looked up.
type Layout string

const (
	// LayoutHash looks pod /32 addresses up in the `lxc` hash and keeps the LPM trie for ipBlock
	// prefixes only: a pod peer costs one hash lookup whatever the cluster's size.
	LayoutHash Layout = "hash"
	// LayoutCilium keeps Cilium's layout: every peer, pod /32s included, is resolved by the
	// LPM `ipcache`, whose cost grows with the number of keys.
	LayoutCilium Layout = "cilium"
)

// ParseLayout reads a --layout value.
func ParseLayout(s string) (Layout, error) {
	switch Layout(s) {
	case "", LayoutHash:
		return LayoutHash, nil
	case LayoutCilium:
		return LayoutCilium, nil
	}
	return "", fmt.Errorf("unknown layout %q (want hash or cilium)", s)
}

// CTMode is what the programs do with conntrack.
type CTMode uint8

const (
	// CTOff skips conntrack: every packet is a new flow.
	CTOff CTMode = 0
	// CTLookup looks flows up but never creates entries, so probes stay independent of each
	// other while paying the lookup a real new flow pays. The verdict command's default.
	CTLookup CTMode = 1
	// CTFull creates entries for allowed new flows; replies take the fast path.
	CTFull CTMode = 2
)

// Sizes are the max_entries of the maps. Zero fields take the minimum; see SizesFor.
type Sizes struct {
	Endpoints  uint32 // lxc
	IPCache    uint32 // ipcache (CIDR prefixes, plus pod /32s in the Cilium layout)
	Summaries  uint32 // policy_summary: one per (rule set, peer)
	Policy     uint32 // policy: single ports, expanded ranges and named ports
	NamedPorts uint32 // named_ports: one per (endpoint, protocol, port) with names
	CT         uint32 // ct (LRU)
}

const minEntries = 1024

// DefaultHeadroom is the room SizesFor leaves for churn: each map holds twice the entries of
// the state it is sized for.
const DefaultHeadroom = 2.0

// HeadroomHint is how a user of the command line raises the maps' sizes; errors about a full
// map or a map the kernel would not create quote it.
const HeadroomHint = "netpolbench bench and agent size the maps at --map-headroom times the synced state"

// SizesFor sizes the maps for s with room to double under churn (DefaultHeadroom).
func SizesFor(s *policy.State, layout Layout) Sizes {
	return SizesWithHeadroom(s, layout, DefaultHeadroom)
}

// SizesWithHeadroom sizes the maps for headroom times the entries s needs (headroom ≥ 1; below
// it, DefaultHeadroom), none below 1,024 entries.
func SizesWithHeadroom(s *policy.State, layout Layout, headroom float64) Sizes {
	if headroom < 1 {
		headroom = DefaultHeadroom
	}
	c := countState(s, layout, maxInline)
	grow := func(n int) uint32 {
		v := math.Ceil(headroom * float64(n))
		if v < minEntries {
			return minEntries
		}
		return uint32(min(v, math.MaxUint32))
	}
	return Sizes{
		Endpoints:  grow(c.endpoints),
		IPCache:    grow(c.ipcache),
		Summaries:  grow(c.summaries),
		Policy:     grow(c.policy),
		NamedPorts: grow(c.named),
		// Cilium's default TCP CT size; an LRU evicts beyond it.
		CT: min(grow(4*c.endpoints), 512*1024),
	}
}

// sizedMap is a map whose max_entries a Sizes field sets.
type sizedMap struct {
	name, field string
	entries     *uint32
}

// maps pairs every sized map with its field, for Open and for messages.
func (s *Sizes) maps() []sizedMap {
	return []sizedMap{{"lxc", "Endpoints", &s.Endpoints}, {"ipcache", "IPCache", &s.IPCache},
		{"policy_summary", "Summaries", &s.Summaries}, {"policy", "Policy", &s.Policy},
		{"named_ports", "NamedPorts", &s.NamedPorts}, {"ct", "CT", &s.CT}}
}

// sized returns the sized map called name; it panics on a map Sizes does not size.
func (s *Sizes) sized(name string) sizedMap {
	for _, m := range s.maps() {
		if m.name == name {
			return m
		}
	}
	panic("datapath: no size for map " + name)
}

// Options configure Open. The zero value loads the hash layout with minimum map sizes,
// conntrack lookups without creation, and TC_ACT_OK on allow.
type Options struct {
	Layout Layout
	CT     CTMode
	// TCXNext makes allow return TCX_NEXT (-1) instead of TC_ACT_OK, so programs attached after
	// ours in a TCX chain still see the packet (TCX_PASS ends the chain).
	TCXNext bool
	// NoDropEvents turns the ring-buffer drop notifications off.
	NoDropEvents bool
	Sizes        Sizes
	// InlinePorts is how many port spans (single ports or ranges) of one rule set and peer
	// are checked inline in the summary value; further ones are expanded into single-port keys
	// (see planGroup). Zero means the most the value holds (6); -1 expands every span (for
	// BenchmarkRange).
	InlinePorts int
	// NoFlowCache turns the per-CPU flow cache in front of `ct` off (an ablation for
	// benchmarks: every established packet then pays the `ct` hash lookup).
	NoFlowCache bool
	// PerKey applies map changes one syscall per key instead of batch operations.
	PerKey bool
}

const maxInline = 6

// Datapath is a loaded pair of enforcement programs and their maps. It implements
// policy.Backend and policy.Decider. Its methods are not safe for concurrent use (the Go-side
// mirror of the maps is unlocked); the attached programs of course are.
type Datapath struct {
	opts   Options
	objs   bpfObjects
	sizes  Sizes
	names  *nameTable
	tabs   *tables
	synced bool
	// needFull is set after a failed Update: the next Update does a full sync.
	needFull bool
	epoch    uint32
	// epochMap is where the epoch is written: the map, or a test's wrapper that injects faults.
	epochMap mapWriter
	// epochStale is set when the kernel's epoch lags epoch (its write failed): the next flush
	// writes it even when it changes nothing else.
	epochStale bool
	events     *ringbuf.Reader
}

var _ policy.Backend = (*Datapath)(nil)
var _ policy.Decider = (*Datapath)(nil)

// Needs is what loading a Datapath needs from the machine.
var Needs = []needs.Need{needs.BPF}

// Open loads the programs and creates their maps (empty; call Sync). Needs CAP_BPF and
// CAP_NET_ADMIN.
func Open(opts Options) (*Datapath, error) {
	if opts.Layout == "" {
		opts.Layout = LayoutHash
	}
	if _, err := ParseLayout(string(opts.Layout)); err != nil {
		return nil, err
	}
	if opts.InlinePorts == 0 {
		opts.InlinePorts = maxInline
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	sz := opts.Sizes
	for _, m := range sz.maps() {
		if *m.entries == 0 {
			*m.entries = minEntries
		}
		spec.Maps[m.name].MaxEntries = *m.entries
	}

	// The flow cache only ever holds entries with full conntrack; otherwise one slot keeps the
	// per-CPU allocation (16384 slots × 40 bytes per CPU) out of probe and test loads.
	cacheSlots := uint32(1)
	if opts.CT == CTFull && !opts.NoFlowCache {
		cacheSlots = spec.Maps["flow_cache"].MaxEntries
	}
	spec.Maps["flow_cache"].MaxEntries = cacheSlots

	allowRet := int32(0)
	if opts.TCXNext {
		allowRet = -1
	}
	set := map[string]any{
		"cfg_layout_cilium":   boolByte(opts.Layout == LayoutCilium),
		"cfg_ct_mode":         uint8(opts.CT),
		"cfg_drop_events":     boolByte(!opts.NoDropEvents),
		"cfg_allow_ret":       allowRet,
		"cfg_flow_cache_mask": cacheSlots - 1,
		"cfg_flow_cache":      boolByte(!opts.NoFlowCache),
	}
	for name, v := range set {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	d := &Datapath{opts: opts, sizes: sz, names: newNameTable()}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load programs: %w (verifier log tail: %s)", err, tail(ve.Log, 20))
		}
		if m, ok := refusedMap(err, &sz, spec); ok {
			return nil, fmt.Errorf("load programs: %w (%s)", err, m)
		}
		return nil, fmt.Errorf("load programs: %w (needs root: CAP_BPF and CAP_NET_ADMIN)", err)
	}
	d.epochMap = d.objs.Epoch
	d.tabs = newTables(d)
	return d, nil
}

// refusedMap explains a map the kernel would not create for want of memory (RLIMIT_MEMLOCK
// before Linux 5.11, the memory cgroup after) or because it is too large: which map, its
// max_entries and the Sizes field and flag that set them.
func refusedMap(err error, sz *Sizes, spec *ebpf.CollectionSpec) (string, bool) {
	// Without root, EPERM means no privilege, not too little memory.
	memlock := errors.Is(err, unix.EPERM) && os.Geteuid() == 0
	if !memlock && !errors.Is(err, unix.ENOMEM) && !errors.Is(err, unix.E2BIG) {
		return "", false
	}
	for _, m := range sz.maps() {
		if !strings.Contains(err.Error(), "map "+m.name+":") {
			continue
		}
		ms := spec.Maps[m.name]
		bytes := uint64(*m.entries) * uint64(ms.KeySize+ms.ValueSize)
		return fmt.Sprintf("map %s with max_entries %d (Options.Sizes.%s; %d B keys and values, at least %s) was refused: "+
			"lower it (%s), or raise the memory limit (ulimit -l before Linux 5.11, the memory cgroup's memory.max after)",
			m.name, *m.entries, m.field, ms.KeySize+ms.ValueSize, mib(bytes), HeadroomHint), true
	}
	return "", false
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Name is "ebpf".
func (d *Datapath) Name() string { return "ebpf" }

// Options returns the options the datapath was opened with (defaults filled in).
func (d *Datapath) Options() Options { return d.opts }

// Sizes returns the max_entries the maps were created with.
func (d *Datapath) Sizes() Sizes { return d.sizes }

// Close detaches nothing (links are closed by their own Closers) and releases every map and
// program file descriptor.
func (d *Datapath) Close() error {
	var errs []error
	if d.events != nil {
		errs = append(errs, d.events.Close())
		d.events = nil
	}
	errs = append(errs, d.objs.Close())
	return errors.Join(errs...)
}

// Programs returns the enforcement programs, for callers that run or attach them directly.
func (d *Datapath) Programs() (toContainer, fromContainer *ebpf.Program) {
	return d.objs.ToContainer, d.objs.FromContainer
}

// EmptyProgram returns a sched_cls program that returns TC_ACT_OK at once: the floor of a
// BPF_PROG_TEST_RUN measurement.
func (d *Datapath) EmptyProgram() *ebpf.Program { return d.objs.Empty }

type closers []io.Closer

func (c closers) Close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i].Close())
	}
	return errors.Join(errs...)
}

// AttachTCX attaches from_container to the TCX ingress (packets leaving the pods behind the
// node-side veth ifindex) and to_container to its TCX egress (packets entering them). The
// caller is in the interface's network namespace. Needs Linux 6.6. Close the result to detach.
func (d *Datapath) AttachTCX(ifindex int) (io.Closer, error) {
	return d.AttachTCXAt(ifindex, nil, nil)
}

// AttachTCXAt is AttachTCX at given places of the ingress and egress chains (nil: the end),
// e.g. just before a program that must run after the datapath.
func (d *Datapath) AttachTCXAt(ifindex int, ingress, egress link.Anchor) (io.Closer, error) {
	in, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: d.objs.FromContainer, Attach: ebpf.AttachTCXIngress, Anchor: ingress})
	if err != nil {
		return nil, fmt.Errorf("attach from_container to tcx ingress of ifindex %d: %w (is the kernel older than 6.6?)", ifindex, err)
	}
	out, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: d.objs.ToContainer, Attach: ebpf.AttachTCXEgress, Anchor: egress})
	if err != nil {
		in.Close()
		return nil, fmt.Errorf("attach to_container to tcx egress of ifindex %d: %w", ifindex, err)
	}
	return closers{detachingLink{in}, detachingLink{out}}, nil
}

// detachingLink detaches a link before closing it: closing alone releases a TCX link only when
// the kernel drops the last reference, a moment later, so a caller checking that the programs
// are gone could still see them.
type detachingLink struct{ l link.Link }

func (d detachingLink) Close() error {
	err := d.l.Detach()
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		err = nil // the kernel cannot detach this link type; Close still releases it
	}
	return errors.Join(err, d.l.Close())
}

// AttachTC attaches like AttachTCX but through a clsact qdisc and direct-action cls_bpf
// filters (Linux 4.5), for kernels without TCX. Close deletes the filters, and the qdisc when
// AttachTC created it. The caller is in the interface's network namespace.
func (d *Datapath) AttachTC(ifindex int) (io.Closer, error) {
	qdisc := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex,
		Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	var cl closers
	if err := netlink.QdiscAdd(qdisc); err == nil {
		cl = append(cl, closerFunc(func() error { return netlink.QdiscDel(qdisc) }))
	} else if !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add clsact qdisc to ifindex %d: %w", ifindex, err)
	}
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
		name   string
	}{{netlink.HANDLE_MIN_INGRESS, d.objs.FromContainer, "from_container"}, {netlink.HANDLE_MIN_EGRESS, d.objs.ToContainer, "to_container"}} {
		filter := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: f.parent, Handle: netlink.MakeHandle(0, 1),
				Protocol: unix.ETH_P_ALL, Priority: 1},
			Fd: f.prog.FD(), Name: f.name, DirectAction: true,
		}
		if err := netlink.FilterAdd(filter); err != nil {
			return nil, errors.Join(fmt.Errorf("add %s filter to ifindex %d: %w", f.name, ifindex, err), cl.Close())
		}
		cl = append(cl, closerFunc(func() error { return netlink.FilterDel(filter) }))
	}
	return cl, nil
}

// Attach uses TCX where the kernel has it (6.6) and clsact filters otherwise.
func (d *Datapath) Attach(ifindex int) (io.Closer, error) {
	c, err := d.AttachTCX(ifindex)
	if errors.Is(err, ebpf.ErrNotSupported) {
		return d.AttachTC(ifindex)
	}
	return c, err
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
