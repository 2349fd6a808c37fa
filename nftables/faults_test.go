package nftables

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// The faults the knftables interface injects, each leaving the table as nft would.
var (
	// nft applies a transaction whole or not at all.
	faultTxRejected = faults.Kind{Name: "nft transaction: rejected"}
	// The transaction committed, but nft's exit status was lost (killed after the commit).
	faultTxLost = faults.Kind{Name: "nft transaction: committed, then failed", Partial: true}
)

// faultyNFT runs transactions through the interface it wraps, failing where its schedule says.
type faultyNFT struct {
	knftables.Interface
	s *faults.Schedule
}

// fail decides the fault of one transaction; apply runs it.
func (f *faultyNFT) fail(lines int, apply func() error) error {
	k, ok := f.s.Next(faultTxRejected, faultTxLost)
	if !ok {
		return apply()
	}
	if k == faultTxLost {
		if err := apply(); err != nil {
			return err
		}
		return errors.New("signal: killed (fault injected after the commit)")
	}
	return fmt.Errorf("/dev/stdin:%d:1-1: Error: Could not process rule: No buffer space available (fault injected)", max(1, lines))
}

func (f *faultyNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	return f.fail(tx.NumOperations(), func() error { return f.Interface.Run(ctx, tx) })
}

// faultyText is faultyNFT over an interface that takes transactions as nft input.
type faultyText struct{ *faultyNFT }

func (f faultyText) runText(ctx context.Context, payload string) error {
	return f.fail(strings.Count(payload, "\n"), func() error { return f.Interface.(textRunner).runText(ctx, payload) })
}

func injectFaults(nft knftables.Interface, s *faults.Schedule) knftables.Interface {
	f := &faultyNFT{Interface: nft, s: s}
	if _, ok := nft.(textRunner); ok {
		return faultyText{f}
	}
	return f
}

// heldBy is what a table holds as the mirror counts it: chains with their rule counts, named
// sets and maps with their element counts (a nets set counts its ranges as nft lists them, so
// only its name is compared).
func heldBy(rs *ruleset) (chains, sets map[string]int) {
	chains, sets = map[string]int{}, map[string]int{}
	for name, c := range rs.chains {
		chains[name] = len(c.rules)
	}
	for name, st := range rs.sets {
		sets[name] = len(st.elems)
	}
	for name, m := range rs.maps {
		sets[name] = len(m.elems)
	}
	return chains, sets
}

// mirrorHeld is heldBy of the backend's mirror.
func mirrorHeld(m *mirror) (chains, sets map[string]int) {
	chains, sets = map[string]int{}, map[string]int{}
	if !m.base {
		return chains, sets
	}
	chains[chainForward] = len(baseRules)
	for name, c := range m.chains {
		chains[name] = len(c.rules)
	}
	sets[mapEgress], sets[mapIngress], sets[setSelf] = len(m.dispatch[policy.Egress]), len(m.dispatch[policy.Ingress]), len(m.self)
	for name, st := range m.sets {
		sets[name] = st.n
	}
	return chains, sets
}

// faultSubject describes an nftables backend under faults for faults.Drive: a rejected
// transaction keeps the previous table exactly; any other fault leaves the backend
// distrusting its mirror until the next full sync lists the table; after a call that succeeds
// the mirror holds the table's chains, rules, sets and elements.
func faultSubject(b *Backend, read func(t testing.TB) *ruleset, s *faults.Schedule) faults.Subject {
	return faults.Subject{
		Backend:  b,
		Schedule: s,
		Dump:     func(t testing.TB) string { return read(t).canonical() },
		Fresh: func(t testing.TB, st *policy.State) string {
			f, _ := mustSynced(t, st)
			return f.canonical()
		},
		Fallback: func(st policy.SyncStats) bool { return CountsOf(st).Fallback },
		Mirror: func(t testing.TB, failed bool) bool {
			t.Helper()
			if failed {
				if b.discovered || b.m.base {
					t.Fatal("after a failed transaction the backend still trusts its mirror")
				}
				return true
			}
			kc, ks := heldBy(read(t))
			mc, ms := mirrorHeld(b.m)
			for name, st := range b.m.sets {
				if st.spec.kind == kindNets {
					ms[name] = ks[name]
				}
			}
			if !maps.Equal(kc, mc) || !maps.Equal(ks, ms) {
				t.Fatalf("the mirror differs from the table:\nmirror chains %v, sets %v\ntable chains %v, sets %v", mc, ms, kc, ks)
			}
			return true
		},
		Keeps: func(fs []faults.Fault) bool { return len(fs) == 1 && fs[0].Kind == faultTxRejected },
	}
}

// driveFaults runs the default churn stream over the small workload with a fault every every
// transactions on average and checks the contract after every event (faults.Drive), then that
// Close removes the table.
func driveFaults(t *testing.T, nft knftables.Interface, read func(testing.TB) *ruleset, cfg Config, pods, ops, every int, seed uint64) faults.Tally {
	g, comp := policytest.Generate(t, "small", pods)
	spec := workloads.DefaultChurn()
	spec.Count, spec.Rate = ops, 0
	ch, err := workloads.NewChurn(spec, g, seed)
	if err != nil {
		t.Fatal(err)
	}
	sched := faults.NewSchedule(every, seed)
	cfg.NFT = injectFaults(nft, sched)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tally := faults.Drive(t, faultSubject(b, read, sched), comp, ch)
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if rs := read(t); len(rs.chains)+len(rs.sets)+len(rs.maps) > 0 {
		t.Fatalf("close left the table:\n%s", rs.canonical())
	}
	return tally
}

// faultCases are the nftables backend of the catalogue, and its full-sync-only configuration.
var faultCases = []struct {
	name string
	cfg  Config
}{
	{"nftables", Config{}},
	{"nftables-fullsync", Config{NoPartial: true}},
}

// TestFaultsAtTheNftInterfaceKeepOrResyncAndConvergeOnTheFake runs the nftables backend on the
// Fake under the default churn stream with a fault every N transactions on average (three N,
// seeded): transactions rejected whole, and committed but reported failed. See faults.Drive
// for what is checked after every event.
func TestFaultsAtTheNftInterfaceKeepOrResyncAndConvergeOnTheFake(t *testing.T) {
	var all faults.Tally
	for c, fc := range faultCases {
		for i, every := range []int{2, 3, 7} {
			t.Run(fmt.Sprintf("%s/every=%d", fc.name, every), func(t *testing.T) {
				f := NewFake()
				read := func(testing.TB) *ruleset { f.mu.Lock(); defer f.mu.Unlock(); return f.rs }
				all.Add(driveFaults(t, f, read, fc.cfg, 100, 40, every, uint64(60+10*c+i)))
			})
		}
	}
	if !t.Failed() {
		faults.RequireKinds(t, all, faultTxRejected, faultTxLost)
	}
	t.Logf("nftables on the Fake: %s", all)
}

// TestFaultsAtTheNftInterfaceKeepOrResyncAndConvergeInTheKernel is the same in a namespace of
// its own, with nft: one N, a shorter stream, 40 pods.
func TestFaultsAtTheNftInterfaceKeepOrResyncAndConvergeInTheKernel(t *testing.T) {
	var all faults.Tally
	for c, fc := range faultCases {
		t.Run(fc.name, func(t *testing.T) {
			needKernel(t)
			ns, del := newNetns(t)
			t.Cleanup(del)
			nft, err := NewKernel(ns, KernelOptions{})
			if err != nil {
				t.Fatal(err)
			}
			read := func(t testing.TB) *ruleset {
				rs, err := kernelRuleset(ns)
				if err != nil && strings.Contains(err.Error(), "No such file or directory") {
					return newRuleset() // no table
				}
				if err != nil {
					t.Fatalf("read the kernel's table: %v", err)
				}
				return rs
			}
			all.Add(driveFaults(t, nft, read, fc.cfg, 40, 25, 3, uint64(80+c)))
		})
	}
	t.Logf("nftables in the kernel: %s", all)
}
