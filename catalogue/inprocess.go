package catalogue

import (
	"errors"
	"time"

	"netpolbench/policy"
	"netpolbench/results"
)

// referenceDecider is the reference evaluator over the cluster: the truth.
type referenceDecider struct{ c *policy.Cluster }

func decideReference(env Env) (Decider, error) { return referenceDecider{env.State.Cluster()}, nil }

func (r referenceDecider) Verdict(f policy.Flow) (policy.Verdict, error) {
	v, _ := r.c.Evaluate(f)
	return v, nil
}

func (referenceDecider) Close() error { return nil }

// compiledBackend enforces nothing in a kernel: it decides flows by a lookup in the compiled
// State. It is the sweep's control: its sync cost is walking the state, its verdicts are the
// reference's by construction.
type compiledBackend struct {
	s *policy.State
}

func newCompiled(Env) (policy.Backend, error) { return &compiledBackend{}, nil }

func decideCompiled(env Env) (Decider, error) {
	b := &compiledBackend{}
	if _, err := b.Sync(env.State); err != nil {
		return nil, err
	}
	return b, nil
}

// CompiledCounts are what the compiled backend walked in a full sync (SyncStats.Detail).
type CompiledCounts struct {
	Entries, Endpoints, RuleSets, Identities int
}

func (b *compiledBackend) Name() string { return "compiled" }

func (b *compiledBackend) Sync(s *policy.State) (policy.SyncStats, error) {
	start := time.Now()
	b.s = s
	entries := 0
	for _, rs := range s.RuleSets() {
		entries += len(rs.Entries)
	}
	eps := len(s.Endpoints())
	return policy.SyncStats{Duration: time.Since(start), Ops: entries + eps, Detail: &CompiledCounts{
		Entries: entries, Endpoints: eps, RuleSets: len(s.RuleSets()), Identities: len(s.Identities()),
	}}, nil
}

func (b *compiledBackend) Update(s *policy.State, d *policy.Delta) (policy.SyncStats, error) {
	start := time.Now()
	b.s = s
	ops := len(d.EntriesAdded) + len(d.EntriesRemoved) + len(d.EndpointsAdded) + len(d.EndpointsRemoved) +
		len(d.EndpointsChanged) + len(d.MembersAdded) + len(d.MembersRemoved) + len(d.CIDRsAdded) + len(d.CIDRsRemoved)
	return policy.SyncStats{Duration: time.Since(start), Ops: ops}, nil
}

func (b *compiledBackend) Verdict(f policy.Flow) (policy.Verdict, error) {
	if b.s == nil {
		return policy.Deny, errors.New("compiled backend: not synced")
	}
	return b.s.Verdict(f), nil
}

// Size reports the compiled state's own figures: rule-set entries stand in for policy map
// entries, so the compiled backend's growth is the lower bound every backend is held to.
func (b *compiledBackend) Size() (results.Size, error) {
	if b.s == nil {
		return results.Size{}, errors.New("compiled backend: not synced")
	}
	var entries uint64
	for _, rs := range b.s.RuleSets() {
		entries += uint64(len(rs.Entries))
	}
	return results.Size{
		Backend:    "compiled",
		Identities: len(b.s.Identities()),
		Maps: []results.MapSize{
			{Name: "rulesets", Type: "state", Entries: entries},
			{Name: "endpoints", Type: "state", Entries: uint64(len(b.s.Endpoints()))},
		},
		KernelNote: kernelNoState,
	}, nil
}

func (b *compiledBackend) Close() error { return nil }
