package iptables

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
	"netpolbench/workloads"
)

// TestKernelHoldsWhatTheFakeHoldsAndTracesLikeState applies every semantic case with each
// variant and flavour in a fresh namespace, reads the kernel's table and sets back, and checks
// that they equal the fake's after the same sync and that tracing them gives the reference's
// verdict on every cell. (Real packets through these rules are the testbed's job.)
func TestKernelHoldsWhatTheFakeHoldsAndTracesLikeState(t *testing.T) {
	for _, mode := range []Mode{ModeNFT, ModeLegacy} {
		for _, v := range allVariants {
			for _, tc := range policytest.Cases {
				t.Run(fmt.Sprintf("%s/%s/%s", mode, v, tc.Name), func(t *testing.T) {
					needKernel(t, mode)
					comp := policytest.CaseCompiler(t, tc)
					r := mustNetns(t)
					b := mustBackend(t, Config{Variant: v, Mode: mode, Runner: r})
					if _, err := b.Sync(comp.State()); err != nil {
						t.Fatal(err)
					}
					fake := NewFake()
					fb := mustBackend(t, Config{Variant: v, Mode: mode, Runner: fake})
					if _, err := fb.Sync(comp.State()); err != nil {
						t.Fatal(err)
					}
					k := snapshot(t, r, mode)
					if got, want := normalSave(k.Save()), normalSave(fake.Save()); got != want {
						t.Fatalf("kernel table differs from the fake's:\n%s", faults.Diff(want, got))
					}
					tab, err := policytest.NewTable(string(v)+"-"+string(mode), comp.Cluster(), policytest.Grid(), func(f policy.Flow) (policy.Verdict, error) {
						got, _, err := k.Trace(f)
						return got, err
					})
					if err != nil {
						t.Fatal(err)
					}
					if len(tab.Mismatches) > 0 {
						t.Fatal(tab.Report())
					}
				})
			}
		}
	}
}

// TestKernelPartialSyncsUnderChurnMatchTheFake drives the kernel and the fake through the same
// churn, each applied as partial syncs, and compares both after every few batches.
func TestKernelPartialSyncsUnderChurnMatchTheFake(t *testing.T) {
	for _, mode := range []Mode{ModeNFT, ModeLegacy} {
		for _, v := range allVariants {
			for _, ap := range allApplies {
				t.Run(fmt.Sprintf("%s/%s/%s", mode, v, ap), func(t *testing.T) {
					needKernel(t, mode)
					pods, events := 100, 40
					if ap == ApplyPerRule {
						pods, events = 30, 10 // one process per rule: keep it short
					}
					g, comp := policytest.Generate(t, "small", pods)
					flows := policytest.ProbeFlows(g, comp.Cluster(), 200, 3)
					r := mustNetns(t)
					b := mustBackend(t, Config{Variant: v, Mode: mode, Apply: ap, Runner: r})
					fake := NewFake()
					fb := mustBackend(t, Config{Variant: v, Mode: mode, Runner: fake})
					for _, bk := range []*Backend{b, fb} {
						if _, err := bk.Sync(comp.State()); err != nil {
							t.Fatal(err)
						}
					}
					spec := workloads.DefaultChurn()
					spec.Count = events
					ch, err := workloads.NewChurn(spec, g, 9)
					if err != nil {
						t.Fatal(err)
					}
					compare := func(when string) {
						k := snapshot(t, r, mode)
						if got, want := normalSave(k.Save()), normalSave(fake.Save()); got != want {
							t.Fatalf("%s: kernel table differs from the fake's:\n%s", when, faults.Diff(want, got))
						}
						ks, _, _ := k.Run("ipset", []string{"save"}, nil)
						fs, _, _ := fake.Run("ipset", []string{"save"}, nil)
						if !bytes.Equal(ks, fs) {
							t.Fatalf("%s: kernel sets differ from the fake's:\n%s", when, faults.Diff(string(fs), string(ks)))
						}
						checkFlows(t, k, comp.State(), flows)
					}
					compare("after the full sync")
					n := 0
					for {
						batch, ok := ch.Next()
						if !ok {
							break
						}
						for _, ev := range batch {
							d, err := comp.Apply(ev)
							if err != nil {
								t.Fatal(err)
							}
							for _, bk := range []*Backend{b, fb} {
								if _, err := bk.Update(comp.State(), d); err != nil {
									t.Fatalf("%s: %v", ev.Kind, err)
								}
							}
						}
						if n++; n%10 == 0 {
							compare(fmt.Sprintf("after batch %d", n))
						}
					}
					compare("at the end")
				})
			}
		}
	}
}

const badLine = "-A NPB-FORWARD -j NPB-MISSING"

// corrupt adds a jump to a missing chain in the middle of the rules of a payload.
func corrupt(payload []byte) []byte {
	lines := bytes.SplitAfter(payload, []byte("\n"))
	first := 0
	for first < len(lines) && !bytes.HasPrefix(lines[first], []byte("-A ")) {
		first++
	}
	at := first + (len(lines)-first)/2
	out := append([]byte(nil), bytes.Join(lines[:at], nil)...)
	out = append(out, badLine+"\n"...)
	return append(out, bytes.Join(lines[at:], nil)...)
}

// TestFailedRestoreKeepsPreviousRulesetAndShowsTheLine makes the restore of a full and of a
// partial sync fail and checks that the error shows the failing line with its neighbours,
// that the kernel (or fake) still holds the previous rules and sets exactly, and that the next
// call falls back to a full sync that succeeds.
func TestFailedRestoreKeepsPreviousRulesetAndShowsTheLine(t *testing.T) {
	for _, tg := range targets() {
		for _, v := range allVariants {
			for _, kind := range []string{"full", "partial"} {
				t.Run(fmt.Sprintf("%s/%s/%s", tg.name, v, kind), func(t *testing.T) {
					r := tg.open(t)
					g, comp := policytest.Generate(t, "small", 60)
					flows := policytest.ProbeFlows(g, comp.Cluster(), 100, 4)
					b := mustBackend(t, Config{Variant: v, Mode: tg.mode, Runner: r})
					t.Cleanup(func() { b.mutate = nil })
					if _, err := b.Sync(comp.State()); err != nil {
						t.Fatal(err)
					}
					before := snapshot(t, r, tg.mode)
					beforeSets, _, _ := before.Run("ipset", []string{"save"}, nil)
					ch, err := workloads.NewChurn(workloads.DefaultChurn(), g, 2)
					if err != nil {
						t.Fatal(err)
					}
					// Find an event that changes rules, so the partial sync has a payload.
					d := policytest.NextDelta(t, comp, ch, "changed a rule set", func(d *policy.Delta) bool {
						return len(d.EndpointsAdded)+len(d.EndpointsChanged)+len(d.EntriesAdded) > 0 && len(d.CIDRsAdded)+len(d.CIDRsRemoved) == 0
					}, nil)
					b.mutate = corrupt
					if kind == "full" {
						_, err = b.Sync(comp.State())
					} else {
						var st policy.SyncStats
						st, err = b.Update(comp.State(), d)
						if CountsOf(st).Full {
							t.Fatalf("expected a partial sync, got a full one")
						}
					}
					var re *RestoreError
					if !errors.As(err, &re) {
						t.Fatalf("error %v, want a RestoreError", err)
					}
					ctx := strings.Join(re.Context, "\n")
					if re.Line == 0 || !strings.Contains(ctx, badLine) || !strings.Contains(ctx, fmt.Sprintf("> %5d |", re.Line)) {
						t.Fatalf("error does not show the failing line in context:\n%v", err)
					}
					if len(re.Context) < 3 {
						t.Errorf("context has %d lines, want the failing line and its neighbours:\n%v", len(re.Context), err)
					}
					after := snapshot(t, r, tg.mode)
					afterSets, _, _ := after.Run("ipset", []string{"save"}, nil)
					if after.Save() != before.Save() {
						t.Fatalf("the failed sync changed the rules:\n%s", faults.Diff(before.Save(), after.Save()))
					}
					if !bytes.Equal(afterSets, beforeSets) {
						t.Fatalf("the failed sync changed the sets:\n%s", faults.Diff(string(beforeSets), string(afterSets)))
					}
					b.mutate = nil
					st, err := b.Update(comp.State(), &policy.Delta{})
					if err != nil {
						t.Fatal(err)
					}
					if c := CountsOf(st); !c.Full || !c.Fallback {
						t.Errorf("after a failure the next update should be a full fallback sync, got %+v", c)
					}
					checkFlows(t, snapshot(t, r, tg.mode), comp.State(), flows)
				})
			}
		}
	}
}
