package catalogue

import (
	"errors"
	"fmt"
	"time"

	"netpolbench/internal/netns"
	"netpolbench/iptables"
	"netpolbench/policy"
	"netpolbench/results"
)

// Hard caps on one iptables sync: 2M rules (a 5,000-pod per-IP ruleset, 1.5M rules, took 128 s
// to restore with nft and was refused by legacy), and a minute for the per-rule path. The
// benchmark skips scales over its own budget before opening, from the backend's plan (Plan);
// these stop a sync that got past it all the same (nothing over MaxRules is applied).
const (
	iptablesMaxRules     = 2_000_000
	iptablesPerRuleLimit = time.Minute
)

// modeOf is a backend's binary flavour: its own when it fixes one, else the environment's.
func modeOf(fixed iptables.Mode, env Env) iptables.Mode {
	if fixed != "" {
		return fixed
	}
	return env.IptablesMode // "" is nft
}

// newIptables opens an iptables-family backend in the namespace env.Node. full makes every
// Update a full restore. Every binary it runs runs in a memory cgroup of its own, which its
// Size reads back.
func newIptables(v iptables.Variant, mode iptables.Mode, apply iptables.ApplyPath, full bool) func(Env) (policy.Backend, error) {
	return func(env Env) (policy.Backend, error) {
		m := modeOf(mode, env)
		ns, err := netns.OpenIsolated(env.Node)
		if err != nil {
			return nil, fmt.Errorf("%w (iptables runs only in a namespace of the suite's own)", err)
		}
		counts := kernelCountsIptablesNFT
		if m == iptables.ModeLegacy {
			counts = kernelCountsIptablesLegacy
		}
		if v == iptables.VariantIPSet {
			counts += kernelCountsIpset
		}
		km, err := newKernelMeter(env.name, ns, counts)
		if err != nil {
			ns.Close()
			return nil, err
		}
		b, err := iptables.New(iptables.Config{Variant: v, Mode: m, Apply: apply, Runner: km,
			NoPartial: full, MaxRules: iptablesMaxRules, TimeLimit: iptablesPerRuleLimit})
		if err != nil {
			return nil, errors.Join(err, km.Close(), ns.Close())
		}
		return &iptBackend{Backend: b, name: env.name, ns: ns, kmem: km, hookSwitch: hookSwitch{hook: b.Hook, unhook: b.Unhook}}, nil
	}
}

// iptBackend is an iptables-family backend in a namespace of the suite's own: its rules are in
// force from the first Sync.
type iptBackend struct {
	*iptables.Backend
	name string
	ns   *netns.NS
	kmem *kernelMeter     // runs the binaries
	full policy.SyncStats // the last full sync's counts
	// hookSwitch takes the rules out of the packet path and back (Switch).
	hookSwitch
}

func (b *iptBackend) Name() string { return b.name }

func (b *iptBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	st, err := b.Backend.Sync(s)
	if err == nil {
		// A full sync puts the jump and the conntrack rule back.
		b.full = st
		b.synced()
	}
	return st, err
}

// Size reports the rules the kernel holds, what the last full sync sent and the kernel memory
// they take.
func (b *iptBackend) Size() (results.Size, error) {
	if b.full.Detail == nil {
		return results.Size{}, errors.New("not synced")
	}
	d := iptables.CountsOf(b.full)
	sz := results.Size{Backend: b.name, Iptables: &results.IptablesSize{
		Rules:        uint64(b.Rules()),
		Chains:       uint64(d.Chains),
		RestoreBytes: uint64(d.Bytes),
		RestoreLines: uint64(d.Lines),
		IpsetMembers: uint64(d.SetMembers),
	}}
	b.kmem.fill(&sz)
	return sz, nil
}

var _ Switch = (*iptBackend)(nil)

func (b *iptBackend) Close() error {
	return errors.Join(b.Backend.Close(), b.kmem.Close(), b.ns.Close())
}

// planIptables counts what a full sync of the variant writes (iptables.Plan).
func planIptables(v iptables.Variant) func(Env) (results.Size, error) {
	return func(env Env) (results.Size, error) {
		p, err := iptables.Plan(env.State, v)
		if err != nil {
			return results.Size{}, err
		}
		return results.Size{Iptables: &results.IptablesSize{Rules: uint64(p.Rules), Chains: uint64(p.Chains),
			IpsetSets: uint64(p.Sets), IpsetMembers: uint64(p.SetMembers)}}, nil
	}
}

// iptablesSizeFromCounts sizes an iptables-family backend from its last full sync's counts:
// what it wrote, and the sets and members the kernel holds after it.
func iptablesSizeFromCounts(st policy.SyncStats) (results.Size, bool) {
	c, ok := st.Detail.(*iptables.Counts)
	if !ok {
		return results.Size{}, false
	}
	sz := &results.IptablesSize{Rules: uint64(c.Rules), Chains: uint64(c.Chains), RestoreBytes: uint64(c.Bytes),
		RestoreLines: uint64(c.Lines), IpsetSets: uint64(c.TotalSets), IpsetMembers: uint64(c.TotalSetMembers)}
	if sz.RestoreBytes == 0 {
		sz.RestoreBytes = uint64(st.Bytes)
	}
	return results.Size{Iptables: sz}, true
}

// tracedIptables decides flows by tracing them through the rules the backend restored into
// iptables.Fake: no kernel. It is the backend too, so updates keep the traced rules current.
type tracedIptables struct {
	*iptables.Backend
	fake *iptables.Fake
}

func decideIptables(v iptables.Variant) func(Env) (Decider, error) {
	return func(env Env) (Decider, error) {
		fake := iptables.NewFake()
		b, err := iptables.New(iptables.Config{Variant: v, Mode: env.IptablesMode, Runner: fake})
		if err != nil {
			return nil, err
		}
		if _, err := b.Sync(env.State); err != nil {
			return nil, fmt.Errorf("open %s (traced): %w", v, err)
		}
		return &tracedIptables{Backend: b, fake: fake}, nil
	}
}

func (t *tracedIptables) Verdict(f policy.Flow) (policy.Verdict, error) {
	v, _, err := t.fake.Trace(f)
	return v, err
}
