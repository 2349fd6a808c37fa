package catalogue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"netpolbench/policy"
	"netpolbench/testbed"
)

// RealOptions configure RealPackets.
type RealOptions struct {
	Testbed testbed.Options
	// Env sets the layout and binary flavour of backends that do not fix their own (State is
	// RealPackets' argument).
	Env   Env
	Probe testbed.ProbeOptions
}

// RealPackets decides every flow once per backend. In-process backends (reference, compiled)
// decide without packets; every other backend is put in force in a fresh testbed, one at a
// time, every flow becomes a real packet, and the observed delivery is the backend's verdict.
// The testbed is removed before it returns. An unknown backend, one that can carry no real
// packets, and a flow the testbed cannot send are errors before anything is built.
func RealPackets(ctx context.Context, s *policy.State, names []string, flows []policy.Flow, opts RealOptions) (map[string][]policy.Verdict, error) {
	for _, f := range flows {
		if err := testbed.CanSend(f); err != nil {
			return nil, fmt.Errorf("real packets: %w", err)
		}
	}
	env := opts.Env
	env.State = s
	out := map[string][]policy.Verdict{}
	var real []*Backend
	for _, n := range names {
		b, err := Get(n)
		if err != nil {
			return nil, fmt.Errorf("real packets: %w", err)
		}
		switch {
		case b.Family == InProcess && b.CanDecide():
			d, err := b.Decider(env)
			if err != nil {
				return nil, fmt.Errorf("real packets: %w", err)
			}
			vs, err := DecideAll(d, flows)
			if err != nil {
				return nil, fmt.Errorf("real packets: %s: %w", n, err)
			}
			out[n] = vs
		case b.CanEnforce():
			real = append(real, b)
		default:
			return nil, fmt.Errorf("real packets: %w: %s cannot carry real packets (have %s)", ErrUnavailable, n,
				strings.Join(Names((*Backend).InRealPackets), ", "))
		}
	}
	if len(real) == 0 {
		return out, nil
	}
	tb, err := testbed.New(opts.Testbed)
	if err != nil {
		return nil, fmt.Errorf("real packets: %w", err)
	}
	defer tb.Close()
	for _, b := range real {
		vs, err := verdictsWith(ctx, tb, b, env, flows, opts.Probe)
		if err != nil {
			return nil, fmt.Errorf("real packets: %w", err)
		}
		out[b.Name] = vs
	}
	return out, tb.Close()
}

// DecideAll decides every flow with d, in order, and closes d.
func DecideAll(d Decider, flows []policy.Flow) ([]policy.Verdict, error) {
	vs := make([]policy.Verdict, len(flows))
	for i, f := range flows {
		v, err := d.Verdict(f)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("probe %d (%s): %w", i, f, err)
		}
		vs[i] = v
	}
	return vs, d.Close()
}

func verdictsWith(ctx context.Context, tb *testbed.Testbed, b *Backend, env Env, flows []policy.Flow, po testbed.ProbeOptions) ([]policy.Verdict, error) {
	e, _, err := b.Enforce(tb, env)
	if err != nil {
		return nil, err
	}
	vs, err := tb.ProbeVerdicts(ctx, env.State, flows, po)
	if cerr := e.Close(); cerr != nil {
		return nil, errors.Join(err, cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name, err)
	}
	return vs, nil
}
