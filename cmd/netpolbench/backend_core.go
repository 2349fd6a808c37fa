package main

import "netpolbench/policy"

// The two backends that need no kernel: the reference evaluator (the truth) and a plain lookup
// in the compiled state.
func init() {
	registerBackend(backendSpec{
		name: "reference",
		help: "the reference evaluator, straight from the NetworkPolicy objects (the truth)",
		open: func(env backendEnv) (decider, error) { return referenceDecider{env.State.Cluster()}, nil },
	})
	registerBackend(backendSpec{
		name: "compiled",
		help: "a plain lookup in the compiled identity state every kernel backend is built from",
		open: func(env backendEnv) (decider, error) { return compiledDecider{env.State}, nil },
	})
}

type referenceDecider struct{ c *policy.Cluster }

func (r referenceDecider) Verdict(f policy.Flow) (policy.Verdict, error) {
	v, _ := r.c.Evaluate(f)
	return v, nil
}
func (referenceDecider) Close() error { return nil }

type compiledDecider struct{ s *policy.State }

func (c compiledDecider) Verdict(f policy.Flow) (policy.Verdict, error) { return c.s.Verdict(f), nil }
func (compiledDecider) Close() error                                    { return nil }
