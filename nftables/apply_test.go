package nftables

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestBatchElementsMergesRunsOfOneSetAndMapsLines checks the batching of element commands:
// consecutive adds (or deletes) to one set or map merge, up to elementBatch a command; any
// other command, another set, another verb or an element with a comment ends a run; every
// input line maps to the output line that holds it.
func TestBatchElementsMergesRunsOfOneSetAndMapsLines(t *testing.T) {
	var in []string
	in = append(in, "add table inet netpolbench")
	for i := range elementBatch + 2 {
		in = append(in, fmt.Sprintf("add element inet netpolbench p-1 { 198.18.%d.%d }", i/256, i%256))
	}
	in = append(in,
		"add element inet netpolbench p-2 { 198.18.9.1 }",
		"delete element inet netpolbench p-2 { 198.18.9.2 }",
		"delete element inet netpolbench p-2 { 198.18.9.3 }",
		`add element inet netpolbench p-2 { 198.18.9.4 comment "kept apart" }`,
		"add element inet netpolbench ingress { 198.18.0.1 : goto rs-1 }",
		"add element inet netpolbench ingress { 198.18.0.2 : goto rs-2 }",
		"add rule inet netpolbench rs-1 drop",
		"add element inet netpolbench ingress { 198.18.0.3 : goto rs-1 }",
	)
	out, lineOf := batchElements(strings.Join(in, "\n") + "\n")
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	wantHeads := []string{
		"add table inet netpolbench",
		"add element inet netpolbench p-1 { 198.18.0.0, ",
		"add element inet netpolbench p-1 { 198.18.3.232, 198.18.3.233 }",
		"add element inet netpolbench p-2 { 198.18.9.1 }",
		"delete element inet netpolbench p-2 { 198.18.9.2, 198.18.9.3 }",
		`add element inet netpolbench p-2 { 198.18.9.4 comment "kept apart" }`,
		"add element inet netpolbench ingress { 198.18.0.1 : goto rs-1, 198.18.0.2 : goto rs-2 }",
		"add rule inet netpolbench rs-1 drop",
		"add element inet netpolbench ingress { 198.18.0.3 : goto rs-1 }",
	}
	if len(got) != len(wantHeads) {
		t.Fatalf("%d lines out, want %d:\n%s", len(got), len(wantHeads), out)
	}
	for i, w := range wantHeads {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("line %d reads %.120q, want it to start %q", i+1, got[i], w)
		}
	}
	if n := strings.Count(got[1], ", ") + 1; n != elementBatch {
		t.Errorf("the first batch holds %d elements, want %d", n, elementBatch)
	}
	for i, l := range in {
		o := lineOf(i + 1)
		if o < 1 || o > len(got) {
			t.Fatalf("input line %d maps to output line %d of %d", i+1, o, len(got))
		}
		_, elem, ok := elementCommand(l)
		if !ok {
			elem = l
		}
		if !strings.Contains(got[o-1], elem) {
			t.Errorf("input line %d (%s) maps to output line %d, which does not hold it", i+1, l, o)
		}
	}
}

// recordTx runs transactions on the Fake and records each as the nft input the backend would
// send for it: the transaction written out, its elements batched unless perElement.
type recordTx struct {
	*Fake
	perElement bool
	inputs     []string
}

func (r *recordTx) Run(ctx context.Context, tx *knftables.Transaction) error {
	in := tx.String()
	if !r.perElement {
		in, _ = batchElements(in)
	}
	r.inputs = append(r.inputs, in)
	return r.Fake.Run(ctx, tx)
}

// recordText takes the kernel's path: it records the nft input and applies nothing, which the
// backend cannot tell from a success.
type recordText struct {
	knftables.Interface
	inputs []string
}

func (r *recordText) runText(_ context.Context, payload string) error {
	r.inputs = append(r.inputs, payload)
	return nil
}

// TestKernelInputIsTheFakesTransactionWrittenOut: the nft input the kernel's path writes as it
// plans (elements straight into text) is, byte for byte, the transaction the Fake is handed
// written out and batched, for a full sync and every partial sync of a churn stream, with
// elements batched and one to a command; so what the Fake checks and traces is what the
// kernel gets.
func TestKernelInputIsTheFakesTransactionWrittenOut(t *testing.T) {
	for _, perElement := range []bool{false, true} {
		t.Run(fmt.Sprintf("perElement=%v", perElement), func(t *testing.T) {
			g, comp := policytest.Generate(t, "default", 300)
			fake := &recordTx{Fake: NewFake(), perElement: perElement}
			text := &recordText{Interface: NewFake()}
			a := mustBackend(t, Config{NFT: fake, PerElement: perElement})
			b := mustBackend(t, Config{NFT: text, PerElement: perElement})
			same := func(when string) {
				t.Helper()
				n := len(fake.inputs)
				if n == 0 || len(text.inputs) != n {
					t.Fatalf("%s: %d transactions for the fake, %d on the kernel's path", when, n, len(text.inputs))
				}
				if got, want := text.inputs[n-1], fake.inputs[n-1]; got != want {
					t.Fatalf("%s: the kernel's input differs from the fake's transaction (- fake, + kernel):\n%s", when, faults.Diff(want, got))
				}
				if ca, cb := a.Last(), b.Last(); ca.Commands != cb.Commands || ca.Bytes != cb.Bytes || ca.ElementsAdded != cb.ElementsAdded ||
					ca.ElementsDeleted != cb.ElementsDeleted || ca.Table != cb.Table {
					t.Fatalf("%s: counts differ: fake %+v, kernel's path %+v", when, ca, cb)
				}
			}
			for _, be := range []*Backend{a, b} {
				if _, err := be.Sync(comp.State()); err != nil {
					t.Fatal(err)
				}
			}
			same("full sync")
			events := 0
			applyChurn(t, g, comp, 60, 3, func(ev policy.Event, d *policy.Delta) {
				for _, be := range []*Backend{a, b} {
					if _, err := be.Update(comp.State(), d); err != nil {
						t.Fatalf("update after %s: %v", ev.Kind, err)
					}
				}
				if d.Empty() {
					return
				}
				events++
				same(fmt.Sprintf("event %d (%s)", events, ev.Kind))
			})
			// A full sync over the table both hold flushes and refills it.
			for _, be := range []*Backend{a, b} {
				if _, err := be.Sync(comp.State()); err != nil {
					t.Fatal(err)
				}
			}
			same("second full sync")
			if events < 30 {
				t.Errorf("only %d events changed anything", events)
			}
		})
	}
}
