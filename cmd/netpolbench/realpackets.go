package main

import (
	"context"
	"errors"

	"netpolbench/datapath"
	"netpolbench/iptables"
	"netpolbench/policy"
	"netpolbench/testbed"
)

// runRealPackets is the --real-packets mode of the verdict command: it decides every flow once
// per backend, ebpf, iptables and ipset by sending it as a real packet through a fresh
// namespace testbed with that backend in force (one backend at a time), reference and compiled
// without packets. Verdicts come back in flow order, keyed by backend name. A flow the testbed
// cannot send (SCTP, an address outside 198.18.0.0/15 and 203.0.113.0/24) and a bad --layout
// or --iptables-mode are usage errors (exit 2).
func runRealPackets(ctx context.Context, state *policy.State, backendNames []string, flows []policy.Flow, env backendEnv) (map[string][]policy.Verdict, error) {
	layout, err := datapath.ParseLayout(env.Layout)
	if err != nil {
		return nil, usageErr(err)
	}
	mode, err := iptables.ParseMode(env.IptablesMode)
	if err != nil {
		return nil, usageErr(err)
	}
	for _, f := range flows {
		if err := testbed.CanSend(f); err != nil {
			return nil, usageErr(err)
		}
	}
	out, err := testbed.RealPackets(ctx, state, backendNames, flows, testbed.RealOptions{
		Enforce: testbed.EnforceOptions{Layout: layout, IptablesMode: mode},
	})
	if errors.Is(err, testbed.ErrNeedRoot) {
		return nil, usageErr(err)
	}
	return out, err
}
