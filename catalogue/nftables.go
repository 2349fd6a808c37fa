package catalogue

import (
	"errors"
	"fmt"

	"netpolbench/internal/netns"
	"netpolbench/nftables"
	"netpolbench/policy"
	"netpolbench/results"
)

// newNftables opens the nftables backend on a table in the namespace env.Node: its sets and
// verdict maps are in force from the first Sync. Every nft process it starts runs in a memory
// cgroup of its own, which its Size reads back.
func newNftables(env Env) (policy.Backend, error) {
	ns, err := netns.OpenIsolated(env.Node)
	if err != nil {
		return nil, err
	}
	km, err := newKernelMeter(env.name, ns, kernelCountsNftables)
	if err != nil {
		ns.Close()
		return nil, err
	}
	nft, err := nftables.NewKernel(km, nftables.KernelOptions{})
	if err != nil {
		return nil, errors.Join(err, km.Close(), ns.Close())
	}
	b, err := nftables.New(nftables.Config{NFT: nft})
	if err != nil {
		return nil, errors.Join(err, km.Close(), ns.Close())
	}
	return &nftBackend{Backend: b, name: env.name, ns: ns, kmem: km, hookSwitch: hookSwitch{hook: b.Hook, unhook: b.Unhook}}, nil
}

// nftBackend is the nftables backend in a namespace of the suite's own.
type nftBackend struct {
	*nftables.Backend
	name string
	ns   *netns.NS
	kmem *kernelMeter
	full nftables.Counts // the last full sync's
	// hookSwitch takes the base chain out of the packet path and back (Switch).
	hookSwitch
}

func (b *nftBackend) Name() string { return b.name }

var _ Switch = (*nftBackend)(nil)

// Sync replaces the table; a full sync puts the base chain back too.
func (b *nftBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	st, err := b.Backend.Sync(s)
	if err == nil {
		b.full = nftables.CountsOf(st)
		b.synced()
	}
	return st, err
}

// Size reports what the table holds, what the last full sync sent and the kernel memory the
// table takes.
func (b *nftBackend) Size() (results.Size, error) {
	if !b.full.Full {
		return results.Size{}, errors.New("not synced")
	}
	sz := nftablesSize(b.Backend.Size())
	sz.Commands, sz.Bytes = uint64(b.full.Commands), uint64(b.full.Bytes)
	out := results.Size{Backend: b.name, Nftables: sz}
	b.kmem.fill(&out)
	return out, nil
}

// nftablesSizeFromCounts sizes the nftables backend from its last full sync's counts: the
// table after it and the transaction that wrote it.
func nftablesSizeFromCounts(st policy.SyncStats) (results.Size, bool) {
	c, ok := st.Detail.(*nftables.Counts)
	if !ok || c == nil || !c.Full {
		return results.Size{}, false
	}
	sz := nftablesSize(c.Table)
	sz.Commands, sz.Bytes = uint64(c.Commands), uint64(c.Bytes)
	return results.Size{Nftables: sz}, true
}

// planNftables counts the table a full sync writes (nftables.Plan): the benchmark caps the
// backend on its set elements before a sync that would not fit the run's budget.
func planNftables(env Env) (results.Size, error) {
	z, err := nftables.Plan(env.State)
	if err != nil {
		return results.Size{}, err
	}
	return results.Size{Nftables: nftablesSize(z)}, nil
}

// nftablesSize is the results form of a table's size.
func nftablesSize(z nftables.Size) *results.NftablesSize {
	return &results.NftablesSize{Rules: uint64(z.Rules), Chains: uint64(z.Chains), Sets: uint64(z.Sets), Elements: uint64(z.Elements),
		DispatchElements: uint64(z.DispatchElements), PodElements: uint64(z.PodElements), NetElements: uint64(z.NetElements),
		NamedElements: uint64(z.NamedElements), SelfElements: uint64(z.SelfElements), MaxChainRules: uint64(z.MaxRuleSetRules)}
}

func (b *nftBackend) Close() error {
	return errors.Join(b.Backend.Close(), b.kmem.Close(), b.ns.Close())
}

// tracedNftables decides flows by tracing them through the table the backend wrote into its
// Fake (knftables' Fake with the kernel's checks): no kernel. It is the backend too, so
// updates keep the traced table current.
type tracedNftables struct {
	*nftables.Backend
	fake *nftables.Fake
}

func decideNftables(env Env) (Decider, error) {
	fake := nftables.NewFake()
	b, err := nftables.New(nftables.Config{NFT: fake})
	if err != nil {
		return nil, err
	}
	if _, err := b.Sync(env.State); err != nil {
		return nil, fmt.Errorf("open nftables (traced): %w", err)
	}
	return &tracedNftables{Backend: b, fake: fake}, nil
}

func (t *tracedNftables) Verdict(f policy.Flow) (policy.Verdict, error) { return t.fake.Verdict(f) }
