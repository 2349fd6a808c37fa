package catalogue

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf/link"

	"netpolbench/datapath"
	"netpolbench/internal/needs"
	"netpolbench/iptables"
	"netpolbench/nftables"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

// The backends, one entry each. Keep entries of a family together.
var list = []*Backend{
	{Name: "reference", Family: InProcess,
		Help:   "the reference evaluator, straight from the NetworkPolicy objects (the truth)",
		Decide: decideReference},
	{Name: "compiled", Family: InProcess, Path: "state-lookup",
		Help: "a plain lookup in the compiled identity state every kernel backend is built from",
		New:  newCompiled, Decide: decideCompiled},

	{Name: "ebpf", Family: EBPF, Path: "map-diff-batch", Needs: datapath.Needs, DecideNeeds: datapath.Needs,
		Help: "identity-hash eBPF programs run with BPF_PROG_TEST_RUN on real packets (root; --layout hash or cilium)",
		New:  newEBPF("", false), Decide: decideEBPF(""), Install: installEBPF(""), Plan: planEBPF("")},
	{Name: "ebpf-cilium", Family: EBPF, Path: "map-diff-batch", Needs: datapath.Needs, DecideNeeds: datapath.Needs,
		Help: "the eBPF programs with Cilium's layout: every peer, pod /32s included, in one LPM ipcache (root)",
		New:  newEBPF(datapath.LayoutCilium, false), Decide: decideEBPF(datapath.LayoutCilium), Install: installEBPF(datapath.LayoutCilium),
		Plan: planEBPF(datapath.LayoutCilium)},
	{Name: "ebpf-perkey", Family: EBPF, Path: "map-diff-per-key", Needs: datapath.Needs,
		Help: "the eBPF datapath applying map changes one syscall per key instead of in batches (benchmark only)",
		New:  newEBPF(datapath.LayoutHash, true), Plan: planEBPF(datapath.LayoutHash)},

	{Name: "iptables", Family: Iptables, Path: "partial-restore", Needs: iptables.Needs(iptables.ModeNFT),
		Help: "per-IP iptables rules (traced on a fake of iptables-restore, no kernel; --real-packets for the kernel)",
		New:  newIptables(iptables.VariantIPTables, "", iptables.ApplyRestore, false), Decide: decideIptables(iptables.VariantIPTables),
		Plan: planIptables(iptables.VariantIPTables)},
	{Name: "ipset", Family: Iptables, Path: "partial-restore", Needs: iptables.Needs(iptables.ModeNFT),
		Help: "iptables rules matching ipsets (traced on a fake of iptables-restore and ipset, no kernel; --real-packets for the kernel)",
		New:  newIptables(iptables.VariantIPSet, "", iptables.ApplyRestore, false), Decide: decideIptables(iptables.VariantIPSet),
		Plan: planIptables(iptables.VariantIPSet)},
	{Name: "iptables-legacy", Family: Iptables, Path: "partial-restore", Needs: iptables.Needs(iptables.ModeLegacy),
		Help: "per-IP iptables rules with the legacy (x_tables) binaries",
		New:  newIptables(iptables.VariantIPTables, iptables.ModeLegacy, iptables.ApplyRestore, false), Plan: planIptables(iptables.VariantIPTables)},
	{Name: "ipset-legacy", Family: Iptables, Path: "partial-restore", Needs: iptables.Needs(iptables.ModeLegacy),
		Help: "iptables rules matching ipsets with the legacy (x_tables) binaries",
		New:  newIptables(iptables.VariantIPSet, iptables.ModeLegacy, iptables.ApplyRestore, false), Plan: planIptables(iptables.VariantIPSet)},
	{Name: "iptables-fullsync", Family: Iptables, Path: "full-restore", Needs: iptables.Needs(iptables.ModeNFT),
		Help: "per-IP iptables rules, every update a full iptables-restore",
		New:  newIptables(iptables.VariantIPTables, "", iptables.ApplyRestore, true), Plan: planIptables(iptables.VariantIPTables)},
	{Name: "iptables-perrule", Family: Iptables, Path: "per-rule", Needs: iptables.Needs(iptables.ModeNFT),
		MaxPods: 1000, CapReason: "one iptables exec per rule copies the whole table each time (O(rules²)): hopeless beyond 1,000 pods",
		Help: "per-IP iptables rules applied one iptables command at a time (the naive baseline)",
		New:  newIptables(iptables.VariantIPTables, "", iptables.ApplyPerRule, false), Plan: planIptables(iptables.VariantIPTables)},

	{Name: "nftables", Family: Nftables, Path: "partial-transaction", Needs: nftables.Needs,
		Help: "an nftables table of verdict maps and shared peer sets (traced on knftables' Fake, no kernel; --real-packets for the kernel)",
		New:  newNftables, Decide: decideNftables, Plan: planNftables},
}

// Where the benchmark's stamps bracket a family's enforcement point in the testbed.
const (
	// StampTCX: TCX programs at the head and the tail of the TCX chains of every pod veth.
	StampTCX = "tcx"
	// StampNetfilter: netfilter BPF programs around the filter table on NF_INET_FORWARD.
	StampNetfilter = "netfilter"
)

// Family is a kind of backend: how its state is held, counted and measured.
type Family struct {
	// Name names the family in messages.
	Name string
	// OpsUnit names what SyncStats.Ops counts (results.Update.OpsUnit).
	OpsUnit string
	// Stamp is where the benchmark's stamps bracket the family's enforcement (StampTCX or
	// StampNetfilter); "" for families that enforce nothing in a kernel.
	Stamp string
	// InNode is set for families whose kernel state lives in the testbed's node namespace from
	// their first sync: New needs Env.Node (open them with OpenInNode), and in force they are.
	InNode bool
	// PerIP is set for families whose state expands to per-pod-IP rules or set members: the
	// benchmark's per-IP budget (IptablesMaxPods, IptablesMaxRules) applies to them.
	PerIP bool
	// PlanBudget is set for families the benchmark caps on their own plan (Backend.Plan)
	// before it opens them: the iptables family on rules and set members, nftables on set
	// elements, each against the run's budget.
	PlanBudget bool
	// SizeFromCounts sizes a backend from its last full sync's SyncStats when the backend
	// cannot report its own size (nil: the family cannot).
	SizeFromCounts func(st policy.SyncStats) (results.Size, bool)
}

// The families.
var (
	// InProcess backends enforce nothing in a kernel: the reference and the compiled lookup.
	InProcess = &Family{Name: "in-process", OpsUnit: "map ops"}
	// EBPF is the identity datapath: BPF maps diffed and written per sync, programs on TCX.
	EBPF = &Family{Name: "ebpf", OpsUnit: "map ops", Stamp: StampTCX}
	// Iptables is per-IP iptables rules and their ipset variant, in the node's FORWARD path.
	Iptables = &Family{Name: "iptables", OpsUnit: "restore lines", Stamp: StampNetfilter, InNode: true, PerIP: true, PlanBudget: true,
		SizeFromCounts: iptablesSizeFromCounts}
	// Nftables is one inet table of verdict maps and peer sets in the node's forward hook,
	// each sync one nft transaction. Its sets hold pod addresses, but its rules do not grow per
	// IP: the per-IP budget does not apply; its plan's set elements are budgeted instead.
	Nftables = &Family{Name: "nftables", OpsUnit: "nft commands", Stamp: StampNetfilter, InNode: true, PlanBudget: true,
		SizeFromCounts: nftablesSizeFromCounts}
)

// Backend is one backend of the catalogue.
type Backend struct {
	// Name is its name on the command line and in results. Required, unique.
	Name string
	// Help is one line for the command line's help texts. Required.
	Help string
	// Family is required.
	Family *Family
	// Path names the apply path its Update takes, recorded with every update figure
	// (results.Update.Path), e.g. "map-diff-batch" or "partial-restore".
	Path string
	// MaxPods caps the scales the benchmark runs it at (0: no cap); CapReason says why.
	MaxPods   int
	CapReason string
	// Needs is what the machine must have before New or Install is tried, DecideNeeds before
	// Decide (nil: nothing; a decider may need less than the kernel, as the iptables tracer on
	// a Fake does). Tests of the backend skip, or fail under CI, on the same lists.
	Needs, DecideNeeds []needs.Need

	// New opens it for the benchmark's sync and churn phases, not yet synced; for a family
	// InNode its state goes in the namespace env.Node. nil: the benchmark cannot run it.
	New func(env Env) (policy.Backend, error)
	// Decide opens it synced to env.State as a decider that sends no packet. nil: it cannot.
	Decide func(env Env) (Decider, error)
	// Install puts it in force in tb's node namespace, synced to env.State, and returns it with
	// the function that takes it out. nil: it cannot, unless its family is InNode (then New in
	// the node namespace and a Sync put it in force).
	Install func(tb *testbed.Testbed, env Env) (Installed, error)
	// Plan is the state a full sync of env.State would write (rules, set members, map entries),
	// from the backend's own translation, computed without opening or applying anything: the
	// benchmark caps on it before a sync that would not fit the run's budget starts. Exact
	// counts; fields the kernel decides (memlock, restore bytes) are left 0. nil: no plan.
	Plan func(env Env) (results.Size, error)
}

// Switch is implemented by a backend in force (testbed.Enforcement.Backend) that can step out
// of the packet path and back in without losing its state: the benchmark measures a
// per-packet floor in the backend's own testbed this way, in rounds between rounds with the
// backend in force, at the cost of a few attachments instead of a sync.
type Switch interface {
	// Out takes every part of the enforcement a packet could meet out of the path (for a
	// netfilter backend, the rules that hold nf_conntrack too).
	Out() error
	// In puts it back. TCX programs go at the given places of each pod veth's ingress and
	// egress chains (nil: the end), so programs that must run around them stay where they are.
	In(ingress, egress link.Anchor) error
}

// Installed is a backend Install put in force.
type Installed struct {
	// Backend is what enforces; churn goes through its Update.
	Backend policy.Backend
	// Remove takes it out of the testbed and releases it.
	Remove func() error
	// Stats is the cost of the sync that put it in force.
	Stats policy.SyncStats
}

// Env is what opening a backend may use.
type Env struct {
	// State is the compiled state to sync to. Required.
	State *policy.State
	// Layout is the eBPF map layout of backends that do not fix their own; "" means hash.
	Layout datapath.Layout
	// MapHeadroom sizes eBPF maps at this many times State's entries (0: the datapath's
	// default; see datapath.SizesWithHeadroom).
	MapHeadroom float64
	// IptablesMode is the iptables binary flavour of backends that do not fix their own; ""
	// means nft.
	IptablesMode iptables.Mode
	// Node is the testbed's node namespace, where backends of a family InNode keep their state
	// (set by OpenInNode and Enforce).
	Node string
	// Stamped makes Install leave room for the benchmark's stamps around the enforcement: eBPF
	// allows with TCX_NEXT so the stamps behind it run, attaches with TCX only, sends no drop
	// events and sizes conntrack at Cilium's default at every scale.
	Stamped bool

	// name is the backend's catalogue name, set by the methods before a way in is called.
	name string
}

// Decider is an opened backend that decides flows; Close releases what it holds.
type Decider interface {
	policy.Decider
	Close() error
}

// Optional interfaces of a backend New returns, which the benchmark uses where they exist.
type (
	// Sizer reports the state a backend holds now. Exact figures only.
	Sizer interface {
		Size() (results.Size, error)
	}
	// TestRunner runs a flow through the backend's programs with BPF_PROG_TEST_RUN repeat times
	// and returns the kernel's mean duration per run (a batch mean); TestRunFloor measures an
	// empty program the same way.
	TestRunner interface {
		TestRun(f policy.Flow, repeat int) (time.Duration, error)
		TestRunFloor(repeat int) (time.Duration, error)
	}
)

// ErrUnavailable marks a backend that cannot run here: a missing privilege, kernel feature or
// tool (the error names it), or a way in the backend does not have.
var ErrUnavailable = errors.New("backend unavailable")

var (
	mu     sync.RWMutex
	byName = map[string]*Backend{}
)

func init() {
	for _, b := range list {
		mustAdd(b)
	}
}

func mustAdd(b *Backend) {
	if b.Name == "" || b.Help == "" || b.Family == nil {
		panic("catalogue: backend without name, help or family: " + b.Name)
	}
	if _, dup := byName[b.Name]; dup {
		panic("catalogue: backend declared twice: " + b.Name)
	}
	byName[b.Name] = b
}

// Register adds a backend that is not in the list, for tests that need one of their own, and
// returns the function that removes it again. It panics on a duplicate name.
func Register(b *Backend) (remove func()) {
	mu.Lock()
	defer mu.Unlock()
	mustAdd(b)
	return func() {
		mu.Lock()
		delete(byName, b.Name)
		mu.Unlock()
	}
}

// Get returns the backend called name.
func Get(name string) (*Backend, error) {
	mu.RLock()
	b, ok := byName[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown backend %q (have %s)", name, strings.Join(Names(nil), ", "))
	}
	return b, nil
}

// MustGet is Get for names known to exist; it panics otherwise.
func MustGet(name string) *Backend {
	b, err := Get(name)
	if err != nil {
		panic(err)
	}
	return b
}

// Names returns the names of the backends keep accepts (every backend for nil), sorted.
func Names(keep func(*Backend) bool) []string {
	mu.RLock()
	defer mu.RUnlock()
	var out []string
	for n, b := range byName {
		if keep == nil || keep(b) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// NeedsOf lists what the named backends need: their Needs (to be benchmarked or carry real
// packets), or with decide their DecideNeeds (to decide without packets). A test that uses
// them declares it with testenv.NeedKernel. It panics on an unknown name.
func NeedsOf(decide bool, names ...string) []needs.Need {
	var out []needs.Need
	for _, n := range names {
		b := MustGet(n)
		if decide {
			out = append(out, b.DecideNeeds...)
		} else {
			out = append(out, b.Needs...)
		}
	}
	return out
}

// PlannedSize is what the backend's plan says a full sync of env.State would write (see
// Plan); ok is false when the backend has no plan.
func (b *Backend) PlannedSize(env Env) (size results.Size, ok bool, err error) {
	if b.Plan == nil {
		return results.Size{}, false, nil
	}
	env.name = b.Name
	size, err = b.Plan(env)
	if err != nil {
		return results.Size{}, false, fmt.Errorf("plan %s: %w", b.Name, err)
	}
	size.Backend = b.Name
	size.Pods = env.State.NumEndpoints()
	return size, true, nil
}

// CanBench reports whether the benchmark can run it (it has New).
func (b *Backend) CanBench() bool { return b.New != nil }

// CanDecide reports whether it decides flows without packets (it has Decide).
func (b *Backend) CanDecide() bool { return b.Decide != nil }

// CanEnforce reports whether it can carry real packets in a testbed.
func (b *Backend) CanEnforce() bool { return b.Install != nil || b.Family.InNode && b.New != nil }

// InRealPackets reports whether RealPackets takes it: in-process backends decide there
// without packets, the others must carry real packets.
func (b *Backend) InRealPackets() bool {
	return b.CanEnforce() || b.Family == InProcess && b.CanDecide()
}

func (b *Backend) unavailable(way string) error {
	return fmt.Errorf("%w: %s cannot %s", ErrUnavailable, b.Name, way)
}

// check returns an error wrapping ErrUnavailable when the machine lacks one of ns.
func (b *Backend) check(ns []needs.Need) error {
	if err := needs.Check(ns...); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, b.Name, err)
	}
	return nil
}

// Open opens the backend for sync and churn, not yet synced. A family InNode needs env.Node
// (use OpenInNode).
func (b *Backend) Open(env Env) (policy.Backend, error) {
	if b.New == nil {
		return nil, b.unavailable("be benchmarked (it has no sync)")
	}
	if b.Family.InNode && env.Node == "" {
		return nil, fmt.Errorf("%w: %s keeps its state in the testbed's node namespace (open it with OpenInNode)", ErrUnavailable, b.Name)
	}
	if err := b.check(b.Needs); err != nil {
		return nil, err
	}
	env.name = b.Name
	return b.New(env)
}

// Decider opens the backend synced to env.State as a decider that sends no packet.
func (b *Backend) Decider(env Env) (Decider, error) {
	if b.Decide == nil {
		return nil, b.unavailable("decide flows without real packets")
	}
	if err := b.check(b.DecideNeeds); err != nil {
		return nil, err
	}
	env.name = b.Name
	return b.Decide(env)
}

// OpenInNode opens a backend of a family InNode in tb's node namespace, not yet synced, as the
// testbed's enforcement: testbed.Enforce first checks that nothing else is in force, and
// closing the enforcement closes the backend and checks nothing of it is left.
func (b *Backend) OpenInNode(tb *testbed.Testbed, env Env) (*testbed.Enforcement, error) {
	if !b.Family.InNode {
		return nil, fmt.Errorf("open %s in the node namespace: its family (%s) keeps no state there", b.Name, b.Family.Name)
	}
	env.Node = tb.NodeNamespace()
	return tb.Enforce(b.Name, func() (policy.Backend, func() error, error) {
		be, err := b.Open(env)
		if err != nil {
			return nil, nil, err
		}
		return be, be.Close, nil
	})
}

// Enforce puts the backend in force in tb, synced to env.State, through testbed.Enforce, and
// returns the enforcement (Close takes it out and checks nothing is left) and the cost of the
// sync.
func (b *Backend) Enforce(tb *testbed.Testbed, env Env) (*testbed.Enforcement, policy.SyncStats, error) {
	if !b.CanEnforce() {
		return nil, policy.SyncStats{}, b.unavailable("carry real packets")
	}
	if err := b.check(b.Needs); err != nil {
		return nil, policy.SyncStats{}, err
	}
	if b.Install == nil {
		e, err := b.OpenInNode(tb, env)
		if err != nil {
			return nil, policy.SyncStats{}, err
		}
		st, err := e.Backend().Sync(env.State)
		if err != nil {
			return nil, st, errors.Join(fmt.Errorf("enforce %s: sync: %w", b.Name, err), e.Close())
		}
		return e, st, nil
	}
	env.Node, env.name = tb.NodeNamespace(), b.Name
	var st policy.SyncStats
	e, err := tb.Enforce(b.Name, func() (policy.Backend, func() error, error) {
		in, err := b.Install(tb, env)
		st = in.Stats
		if err != nil {
			return nil, nil, err
		}
		return in.Backend, in.Remove, nil
	})
	return e, st, err
}
