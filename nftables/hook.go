package nftables

import (
	"errors"
	"fmt"
	"time"

	"sigs.k8s.io/knftables"
)

// baseChain is the table's base chain on the forward hook at the filter priority.
func baseChain() *knftables.Chain {
	return &knftables.Chain{Name: chainForward, Type: knftables.PtrTo(knftables.FilterType),
		Hook: knftables.PtrTo(knftables.ForwardHook), Priority: knftables.PtrTo(knftables.FilterPriority),
		Policy: knftables.PtrTo(knftables.AcceptPolicy)}
}

// Unhook takes the synced table out of the packet path without forgetting it: one
// transaction deletes the base chain, the table's only hook, whose `ct state` rules are all
// that hold nf_conntrack, so the kernel unregisters conntrack's hooks once nothing else in the
// namespace needs them. Rule-set chains, verdict maps and sets stay, unreferenced. Hook puts the
// base chain back. Per-packet floors are measured this way, between rounds with the backend in
// force, without a full sync each time.
func (b *Backend) Unhook() error {
	if !b.synced || b.unhooked {
		return errors.New("unhook nftables table: not synced, or already unhooked")
	}
	t := newTxb(b.cfg, false)
	t.deleteChain(chainForward)
	if err := b.run(t, time.Now()); err != nil {
		b.needFull = true
		return fmt.Errorf("unhook nftables table (the next sync is full): %w", err)
	}
	b.unhooked = true
	return nil
}

// Hook puts the base chain Unhook deleted back, with its rules.
func (b *Backend) Hook() error {
	if !b.synced || !b.unhooked {
		return errors.New("hook nftables table: not synced, or already hooked")
	}
	t := newTxb(b.cfg, false)
	t.object(verbAdd, baseChain())
	for _, r := range baseRules {
		t.rule(chainForward, ruleSpec{rule: r})
	}
	if err := b.run(t, time.Now()); err != nil {
		b.needFull = true
		return fmt.Errorf("hook nftables table (the next sync is full): %w", err)
	}
	b.unhooked = false
	return nil
}
