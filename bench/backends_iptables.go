package bench

import (
	"time"

	"errors"
	"fmt"
	"os"

	"netpolbench/iptables"
	"netpolbench/policy"
	"netpolbench/results"
	"netpolbench/testbed"
)

func init() {
	for _, c := range []struct {
		name    string
		variant iptables.Variant
		mode    iptables.Mode
		apply   iptables.ApplyPath
		full    bool // every Update is a full restore
		maxPods int
		reason  string
	}{
		{"iptables", iptables.Variant("iptables"), iptables.ModeNFT, iptables.ApplyRestore, false, 0, ""},
		{"ipset", iptables.Variant("ipset"), iptables.ModeNFT, iptables.ApplyRestore, false, 0, ""},
		{"iptables-legacy", iptables.Variant("iptables"), iptables.ModeLegacy, iptables.ApplyRestore, false, 0, ""},
		{"ipset-legacy", iptables.Variant("ipset"), iptables.ModeLegacy, iptables.ApplyRestore, false, 0, ""},
		{"iptables-fullsync", iptables.Variant("iptables"), iptables.ModeNFT, iptables.ApplyRestore, true, 0, ""},
		{"iptables-perrule", iptables.Variant("iptables"), iptables.ModeNFT, iptables.ApplyPerRule, false, 1000,
			"one iptables exec per rule copies the whole table each time (O(rules²)): hopeless beyond 1,000 pods"},
	} {
		path := "partial-restore"
		switch {
		case c.apply == iptables.ApplyPerRule:
			path = "per-rule"
		case c.full:
			path = "full-restore"
		}
		Register(Factory{Name: c.name, Path: path, NeedsNetns: true, Kernel: true, MaxPods: c.maxPods, CapReason: c.reason,
			Open: func(env Env) (policy.Backend, error) {
				// The runner skips scales over its rule budget before opening; these caps
				// stop a sync the estimate let through (nothing over MaxRules is applied).
				return openIptables(env, c.name, iptables.Config{Variant: c.variant, Mode: c.mode, Apply: c.apply,
					NoPartial: c.full, MaxRules: iptablesMaxRules, TimeLimit: iptablesPerRuleLimit})
			}})
	}
}

// Hard caps on one iptables sync: 2M rules (a 5,000-pod per-IP ruleset, 1.5M rules, took 128 s
// to restore with nft and was refused by legacy), and a minute for the per-rule path.
const (
	iptablesMaxRules     = 2_000_000
	iptablesPerRuleLimit = time.Minute
)

// iptBackend is an iptables-family backend in the testbed's node namespace: its rules are in
// force from the first Sync, so Enforce only says where to stamp.
type iptBackend struct {
	*iptables.Backend
	name   string
	netns  string
	runner *iptables.NetnsRunner
	full   policy.SyncStats // the last full sync's counts
}

func openIptables(env Env, name string, cfg iptables.Config) (policy.Backend, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: %s needs root to run iptables in a network namespace", ErrUnavailable, name)
	}
	if env.Netns == "" {
		return nil, fmt.Errorf("%w: %s needs the testbed's node namespace", ErrUnavailable, name)
	}
	r, err := iptables.NewNetnsRunner(env.Netns)
	if err != nil {
		return nil, err
	}
	cfg.Runner = r
	b, err := iptables.New(cfg)
	if err != nil {
		r.Close()
		return nil, err
	}
	return &iptBackend{Backend: b, name: name, netns: env.Netns, runner: r}, nil
}

func (b *iptBackend) Name() string { return b.name }

func (b *iptBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	st, err := b.Backend.Sync(s)
	if err == nil {
		b.full = st
	}
	return st, err
}

// Size reports the rules the kernel holds and what the last full sync sent.
func (b *iptBackend) Size() (results.Size, error) {
	if b.full.Detail == nil {
		return results.Size{}, errors.New("not synced")
	}
	d := iptables.CountsOf(b.full)
	return results.Size{Backend: b.name, Iptables: &results.IptablesSize{
		Rules:        uint64(b.Rules()),
		Chains:       uint64(d.Chains),
		RestoreBytes: uint64(d.Bytes),
		RestoreLines: uint64(d.Lines),
		IpsetMembers: uint64(d.SetMembers),
	}}, nil
}

func (b *iptBackend) Enforce(tb *testbed.Testbed, s *policy.State) (Enforcement, error) {
	if tb.NodeNamespace() != b.netns {
		return Enforcement{}, fmt.Errorf("%s holds its rules in %s, not in the testbed's node namespace %s", b.name, b.netns, tb.NodeNamespace())
	}
	return Enforcement{Attach: attachNetfilter, Backend: b, Closer: nopCloser{}}, nil
}

func (b *iptBackend) Close() error {
	return errors.Join(b.Backend.Close(), b.runner.Close())
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
