package bench

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"netpolbench/policy"
	"netpolbench/results"
)

// ErrUnavailable marks a backend that cannot run here (missing package, kernel feature or
// privilege). The runner records it as a skipped cap with the error as its reason instead of
// failing the run.
var ErrUnavailable = errors.New("backend unavailable")

// Env is what a backend factory may use when it opens a backend.
type Env struct {
	// State is the compiled state the backend will be synced to (Open must not sync it: the
	// runner times the first Sync).
	State *policy.State
	// Netns is the name of the testbed's node namespace (under /run/netns), for backends that
	// install kernel state there (Factory.NeedsNetns); "" otherwise.
	Netns string
	// Seed is the run's seed.
	Seed uint64
}

// Factory opens one kind of backend.
type Factory struct {
	// Name is the backend's name on the command line.
	Name string
	// Path names the apply path the backend's Update uses, e.g. "map-diff" or "partial-restore".
	Path string
	// MaxPods caps the scales the backend runs at (0: no cap); CapReason says why.
	MaxPods   int
	CapReason string
	// NeedsNetns is set for backends that install kernel state in the testbed's node
	// namespace even to be synced (iptables).
	NeedsNetns bool
	// Kernel is set for backends that can enforce in the testbed (implement Enforcer): the
	// real-packet phases run for them.
	Kernel bool
	// Open returns a backend that has not been synced yet.
	Open func(env Env) (policy.Backend, error)
}

// Optional interfaces a backend opened by a Factory may implement.
type (
	// Sizer reports the state a backend holds now. Exact figures only.
	Sizer interface {
		Size() (results.Size, error)
	}
	// TCXAttacher puts a backend's enforcement programs on a device's TCX hooks, returning
	// TCX_NEXT on allow so stamps behind it run; the caller is in the device's namespace.
	TCXAttacher interface {
		AttachTCX(ifindex int) (io.Closer, error)
	}
	// TestRunner runs a flow through the backend's programs with BPF_PROG_TEST_RUN repeat
	// times and returns the kernel's mean duration per run (a batch mean).
	TestRunner interface {
		TestRun(f policy.Flow, repeat int) (time.Duration, error)
	}
)

var factories = map[string]Factory{}

// Register adds a backend factory; it panics on a duplicate name (a programming error).
func Register(f Factory) {
	if _, dup := factories[f.Name]; dup {
		panic("bench: backend registered twice: " + f.Name)
	}
	factories[f.Name] = f
}

// Backends returns the registered backend names, sorted.
func Backends() []string {
	var names []string
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupFactory(name string) (Factory, error) {
	f, ok := factories[name]
	if !ok {
		return Factory{}, fmt.Errorf("unknown backend %q (have %s)", name, strings.Join(Backends(), ", "))
	}
	return f, nil
}

func init() {
	Register(Factory{Name: "compiled", Path: "state-lookup", Open: func(env Env) (policy.Backend, error) {
		return &compiledBackend{}, nil
	}})
}

// compiledBackend enforces nothing in a kernel: it decides flows by a lookup in the compiled
// State. It is the sweep's control: its sync cost is walking the state, its verdicts are the
// reference's by construction.
type compiledBackend struct {
	s *policy.State
}

func (b *compiledBackend) Name() string { return "compiled" }

func (b *compiledBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	start := time.Now()
	b.s = s
	var entries, ops int64
	for _, rs := range s.RuleSets() {
		entries += int64(len(rs.Entries))
	}
	eps := int64(len(s.Endpoints()))
	ops = entries + eps
	return policy.SyncStats{Duration: time.Since(start), Ops: int(ops), Detail: &compiledCounts{
		Entries: int(entries), Endpoints: int(eps), RuleSets: len(s.RuleSets()), Identities: len(s.Identities()),
	}}, nil
}

// compiledCounts are what the compiled backend walked in a full sync (SyncStats.Detail).
type compiledCounts struct {
	Entries, Endpoints, RuleSets, Identities int
}

func (b *compiledBackend) Update(s *policy.State, d *policy.Delta) (policy.SyncStats, error) {
	start := time.Now()
	b.s = s
	ops := len(d.EntriesAdded) + len(d.EntriesRemoved) + len(d.EndpointsAdded) + len(d.EndpointsRemoved) +
		len(d.EndpointsChanged) + len(d.MembersAdded) + len(d.MembersRemoved) + len(d.CIDRsAdded) + len(d.CIDRsRemoved)
	return policy.SyncStats{Duration: time.Since(start), Ops: ops}, nil
}

func (b *compiledBackend) Verdict(f policy.Flow) (policy.Verdict, error) {
	if b.s == nil {
		return policy.Deny, errors.New("compiled backend: not synced")
	}
	return b.s.Verdict(f), nil
}

// Size reports the compiled state's own figures: rule-set entries stand in for policy map
// entries, so the compiled backend's growth is the lower bound every backend is held to.
func (b *compiledBackend) Size() (results.Size, error) {
	if b.s == nil {
		return results.Size{}, errors.New("compiled backend: not synced")
	}
	var entries uint64
	for _, rs := range b.s.RuleSets() {
		entries += uint64(len(rs.Entries))
	}
	return results.Size{
		Backend:    "compiled",
		Identities: len(b.s.Identities()),
		Maps: []results.MapSize{
			{Name: "rulesets", Type: "state", Entries: entries},
			{Name: "endpoints", Type: "state", Entries: uint64(len(b.s.Endpoints()))},
		},
	}, nil
}

func (b *compiledBackend) Close() error { return nil }
