package catalogue

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/link"

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
	return &nftBackend{Backend: b, name: env.name, ns: ns}, nil
}

// nftBackend is the nftables backend in a namespace of the suite's own.
type nftBackend struct {
	*nftables.Backend
	name string
	ns   *netns.NS
	// out is set while Out has the base chain out of the packet path.
	out bool
}

func (b *nftBackend) Name() string { return b.name }

var _ Switch = (*nftBackend)(nil)

// Out deletes the table's base chain (nftables.Backend.Unhook): no packet meets the table,
// and no rule holds nf_conntrack.
func (b *nftBackend) Out() error {
	if b.out {
		return nil
	}
	if err := b.Unhook(); err != nil {
		return err
	}
	b.out = true
	return nil
}

// In puts the base chain back; the anchors are for TCX programs and do not apply.
func (b *nftBackend) In(link.Anchor, link.Anchor) error {
	if !b.out {
		return nil
	}
	if err := b.Hook(); err != nil {
		return err
	}
	b.out = false
	return nil
}

// Sync replaces the table; a full sync puts the base chain back too.
func (b *nftBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	st, err := b.Backend.Sync(s)
	if err == nil {
		b.out = false
	}
	return st, err
}

func (b *nftBackend) Close() error {
	return errors.Join(b.Backend.Close(), b.ns.Close())
}

// tracedNftables decides flows by tracing them through the table the backend wrote into its
// Fake (knftables' Fake with the kernel's checks): no kernel.
type tracedNftables struct {
	fake *nftables.Fake
	b    *nftables.Backend
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
	return &tracedNftables{fake: fake, b: b}, nil
}

func (t *tracedNftables) Verdict(f policy.Flow) (policy.Verdict, error) { return t.fake.Verdict(f) }

func (t *tracedNftables) Close() error { return t.b.Close() }
