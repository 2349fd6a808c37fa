package main

import "netpolbench/policy"

// The two backends that need no kernel: the reference evaluator (the truth) and a plain lookup
// in the compiled state.
func init() {
	registerBackend(backendSpec{
		name: "reference",
		help: "the reference evaluator, straight from the NetworkPolicy objects (the truth)",
		open: func(env backendEnv) (prober, error) { return referenceProber{env.State.Cluster()}, nil },
	})
	registerBackend(backendSpec{
		name: "compiled",
		help: "a plain lookup in the compiled identity state every kernel backend is built from",
		open: func(env backendEnv) (prober, error) { return compiledProber{env.State}, nil },
	})
}

type referenceProber struct{ c *policy.Cluster }

func (r referenceProber) Verdict(f policy.Flow) (policy.Verdict, error) {
	v, _ := r.c.Evaluate(f)
	return v, nil
}
func (referenceProber) Close() error { return nil }

type compiledProber struct{ s *policy.State }

func (c compiledProber) Verdict(f policy.Flow) (policy.Verdict, error) { return c.s.Verdict(f), nil }
func (compiledProber) Close() error                                    { return nil }
