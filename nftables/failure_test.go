package nftables

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// where is where a table of cases runs: the fake, or the kernel in a fresh namespace.
type where struct {
	name   string
	kernel bool
	opts   KernelOptions
}

var wheres = []where{{"fake", false, KernelOptions{}}, {"kernel", true, KernelOptions{}}, {"kernel-execlist", true, KernelOptions{ExecList: true}}}

// open returns a backend and a function reading back what its table holds.
func (tg where) open(t *testing.T) (*Backend, func() *ruleset) {
	t.Helper()
	if !tg.kernel {
		f := NewFake()
		b := mustBackend(t, Config{NFT: f})
		return b, func() *ruleset { f.mu.Lock(); defer f.mu.Unlock(); return f.rs }
	}
	ns, b := mustKernel(t, tg.opts)
	return b, func() *ruleset { return mustKernelRuleset(t, ns) }
}

// corruption appends one operation a transaction cannot survive; bad is how the failing line
// reads.
type corruption struct {
	name string
	add  func(tx *knftables.Transaction, b *Backend)
	bad  string
}

// inUse is a rule-set chain an endpoint's verdict map element points at.
func inUse(b *Backend) (string, policy.Direction, dispatchEntry) {
	for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
		for _, e := range b.m.dispatch[dir] {
			return ruleSetChain(e.rs), dir, e
		}
	}
	panic("no endpoint is isolated")
}

var corruptions = []corruption{
	{"jump to a missing chain", func(tx *knftables.Transaction, _ *Backend) {
		tx.Add(&knftables.Rule{Chain: chainForward, Rule: "jump nowhere"})
	}, "jump nowhere"},
	// The kernel refuses these at commit (EBUSY, EEXIST), after nft sent the whole batch.
	{"delete a chain in use", func(tx *knftables.Transaction, b *Backend) {
		c, _, _ := inUse(b)
		tx.Delete(&knftables.Chain{Name: c})
	}, "delete chain"},
	{"map element clash", func(tx *knftables.Transaction, b *Backend) {
		_, dir, e := inUse(b)
		tx.Add(&knftables.Element{Map: dispatchMap(dir), Key: []string{e.ip.String()}, Value: []string{"drop"}})
	}, ": drop }"},
}

// TestFailedTransactionKeepsThePreviousTableAndShowsTheLine makes the transaction of a full
// and of a partial sync fail in three ways (one nft refuses before it sends anything, two the
// kernel refuses at commit) and checks that the error shows the failing line with its
// neighbours, that the table still holds exactly what it held, and that the next update falls
// back to a full sync that succeeds.
func TestFailedTransactionKeepsThePreviousTableAndShowsTheLine(t *testing.T) {
	for _, tg := range wheres {
		for _, c := range corruptions {
			for _, kind := range []string{"full", "partial"} {
				t.Run(fmt.Sprintf("%s/%s/%s", tg.name, c.name, kind), func(t *testing.T) {
					g, comp := policytest.Generate(t, "small", 60)
					flows := policytest.ProbeFlows(g, comp.Cluster(), 100, 4)
					b, read := tg.open(t)
					if _, err := b.Sync(comp.State()); err != nil {
						t.Fatal(err)
					}
					// An event that adds an endpoint or an entry, so the partial sync writes
					// elements and rules; the events before it are synced.
					ch, err := workloads.NewChurn(workloads.DefaultChurn(), g, 2)
					if err != nil {
						t.Fatal(err)
					}
					d := policytest.NextDelta(t, comp, ch, "added an endpoint or an entry",
						func(d *policy.Delta) bool { return len(d.EndpointsAdded)+len(d.EntriesAdded) > 0 },
						func(d *policy.Delta) {
							if _, err := b.Update(comp.State(), d); err != nil {
								t.Fatal(err)
							}
						})
					before := read().canonical()
					b.mutate = func(tx *knftables.Transaction) { c.add(tx, b) }
					if kind == "full" {
						_, err = b.Sync(comp.State())
					} else {
						_, err = b.Update(comp.State(), d)
						if b.Last().Full {
							t.Fatal("expected a partial sync, got a full one")
						}
					}
					var te *TxError
					if !errors.As(err, &te) {
						t.Fatalf("error %v, want a TxError", err)
					}
					ctx := strings.Join(te.Context, "\n")
					marked := fmt.Sprintf("> %5d |", te.Line)
					if te.Line == 0 || !strings.Contains(ctx, marked) {
						t.Fatalf("error does not show the failing line:\n%v", err)
					}
					for _, l := range te.Context {
						if strings.HasPrefix(l, marked) && !strings.Contains(l, c.bad) {
							t.Fatalf("error blames another line than the one with %q:\n%v", c.bad, err)
						}
					}
					if len(te.Context) < 2 {
						t.Errorf("context has %d lines, want the failing line and its neighbours:\n%v", len(te.Context), err)
					}
					if after := read().canonical(); after != before {
						t.Fatalf("the failed transaction changed the table (- before, + after):\n%s", faults.Diff(before, after))
					}
					b.mutate = nil
					if _, err := b.Update(comp.State(), &policy.Delta{}); err != nil {
						t.Fatal(err)
					}
					if st := b.Last(); !st.Full || !st.Fallback {
						t.Errorf("after a failure the next update should be a full fallback sync, got %+v", st)
					}
					checkTraced(t, "after the fallback", read().trace, comp.Cluster(), flows)
					t.Logf("%v", firstLines(err.Error(), 1))
				})
			}
		}
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestFullSyncReplacesWhatAPreviousRunLeft leaves a table behind with one backend and syncs
// another cluster with a new one on the same table: the new backend finds the old chains and
// sets, and its first full sync leaves exactly what a sync into an empty table writes.
func TestFullSyncReplacesWhatAPreviousRunLeft(t *testing.T) {
	for _, tg := range wheres {
		t.Run(tg.name, func(t *testing.T) {
			_, old := policytest.Generate(t, "default", 200)
			_, comp := policytest.Generate(t, "small", 100)
			var nft knftables.Interface
			var read func() *ruleset
			if tg.kernel {
				ns, b := mustKernel(t, tg.opts)
				nft, read = b.cfg.NFT, func() *ruleset { return mustKernelRuleset(t, ns) }
			} else {
				f := NewFake()
				nft, read = f, func() *ruleset { f.mu.Lock(); defer f.mu.Unlock(); return f.rs }
			}
			first := mustBackend(t, Config{NFT: nft})
			if _, err := first.Sync(old.State()); err != nil {
				t.Fatal(err)
			}
			second := mustBackend(t, Config{NFT: nft})
			if _, err := second.Sync(comp.State()); err != nil {
				t.Fatal(err)
			}
			if st := second.Last(); st.ChainsDeleted == 0 || st.SetsDeleted == 0 {
				t.Errorf("the second sync deleted %d chains and %d sets; the first run's should go", st.ChainsDeleted, st.SetsDeleted)
			}
			want, _ := mustSynced(t, comp.State())
			if got := read().canonical(); got != want.canonical() {
				t.Fatalf("table differs from a sync into an empty table (- empty, + over the old one):\n%s", faults.Diff(want.canonical(), got))
			}
		})
	}
}
