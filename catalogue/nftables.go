package catalogue

import (
	"errors"
	"fmt"

	"netpolbench/internal/netns"
	"netpolbench/nftables"
	"netpolbench/policy"
)

// newNftables opens the nftables backend on a table in the namespace env.Node: its sets and
// verdict maps are in force from the first Sync.
func newNftables(env Env) (policy.Backend, error) {
	ns, err := netns.OpenIsolated(env.Node)
	if err != nil {
		return nil, err
	}
	nft, err := nftables.NewKernel(ns, nftables.KernelOptions{})
	if err != nil {
		ns.Close()
		return nil, err
	}
	b, err := nftables.New(nftables.Config{NFT: nft})
	if err != nil {
		ns.Close()
		return nil, err
	}
	return &nftBackend{Backend: b, name: env.name, ns: ns, hookSwitch: hookSwitch{hook: b.Hook, unhook: b.Unhook}}, nil
}

// nftBackend is the nftables backend in a namespace of the suite's own.
type nftBackend struct {
	*nftables.Backend
	name string
	ns   *netns.NS
	// hookSwitch takes the base chain out of the packet path and back (Switch).
	hookSwitch
}

func (b *nftBackend) Name() string { return b.name }

var _ Switch = (*nftBackend)(nil)

// Sync replaces the table; a full sync puts the base chain back too.
func (b *nftBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	st, err := b.Backend.Sync(s)
	if err == nil {
		b.synced()
	}
	return st, err
}

func (b *nftBackend) Close() error {
	return errors.Join(b.Backend.Close(), b.ns.Close())
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
