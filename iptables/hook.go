package iptables

import (
	"errors"
	"fmt"
)

// conntrackRule is the first rule of chainForward (see topChains): the only rule that makes
// the kernel run nf_conntrack for the backend.
var conntrackRule = []string{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}

// Unhook takes the synced rules out of the packet path without forgetting them: one restore
// deletes the jump from FORWARD and the conntrack rule at the head of NPB-FORWARD. With them
// gone no packet meets a rule of the backend, and no rule holds nf_conntrack, so the kernel
// unregisters its conntrack hooks (defragmentation included) once no other rule of the
// namespace needs them. Chains and sets stay, unreferenced; the filter table's built-in chains
// stay too (iptables cannot remove them). Hook puts both rules back. Per-packet floors are
// measured this way, between rounds with the backend in force, without a full sync each time.
func (b *Backend) Unhook() error {
	if !b.synced || !b.jump {
		return errors.New("unhook iptables rules: not synced, or already unhooked")
	}
	return b.hookOps("unhook", &plan{ops: []op{
		{kind: opDelete, chain: "FORWARD", args: []string{"-j", chainForward}},
		{kind: opDelete, chain: chainForward, args: conntrackRule},
	}})
}

// Hook puts the rules Unhook took out back at the head of their chains.
func (b *Backend) Hook() error {
	if !b.synced || b.jump {
		return errors.New("hook iptables rules: not synced, or already hooked")
	}
	return b.hookOps("hook", &plan{ops: []op{
		{kind: opInsert, chain: chainForward, args: conntrackRule},
		{kind: opInsert, chain: "FORWARD", args: []string{"-j", chainForward}},
	}})
}

func (b *Backend) hookOps(what string, p *plan) error {
	saved := b.exec
	b.exec = nil // one restore, atomic, whatever the apply path
	_, err := b.apply(p)
	b.exec = saved
	if err != nil {
		b.needFull = true
		return fmt.Errorf("%s iptables rules (the next sync is full): %w", what, err)
	}
	return nil
}
