package main

import (
	"fmt"

	"netpolbench/iptables"
	"netpolbench/policy"
)

// The iptables and ipset backends without a kernel: the rules the backend would apply are
// restored into iptables.Fake and every flow is traced through them. Real packets through the
// kernel's rules come from --real-packets (the testbed).
func init() {
	for _, v := range []struct {
		variant iptables.Variant
		help    string
	}{
		{iptables.VariantIPTables, "per-IP iptables rules (traced on a fake of iptables-restore, no kernel; --real-packets for the kernel)"},
		{iptables.VariantIPSet, "iptables rules matching ipsets (traced on a fake of iptables-restore and ipset, no kernel; --real-packets for the kernel)"},
	} {
		variant := v.variant
		registerBackend(backendSpec{
			name: string(variant),
			help: v.help,
			open: func(env backendEnv) (decider, error) { return openTracedIptables(env, variant) },
		})
	}
}

// tracedIptables decides flows by tracing them through the fake's rules.
type tracedIptables struct {
	fake *iptables.Fake
	b    *iptables.Backend
}

func openTracedIptables(env backendEnv, v iptables.Variant) (decider, error) {
	mode, err := iptables.ParseMode(env.IptablesMode)
	if err != nil {
		return nil, usageErr(err)
	}
	fake := iptables.NewFake()
	b, err := iptables.New(iptables.Config{Variant: v, Mode: mode, Runner: fake})
	if err != nil {
		return nil, err
	}
	if _, err := b.Sync(env.State); err != nil {
		return nil, fmt.Errorf("open %s (traced): %w", v, err)
	}
	return &tracedIptables{fake: fake, b: b}, nil
}

func (t *tracedIptables) Verdict(f policy.Flow) (policy.Verdict, error) {
	v, _, err := t.fake.Trace(f)
	return v, err
}

func (t *tracedIptables) Close() error { return t.b.Close() }
