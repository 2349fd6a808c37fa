package iptables

import (
	"strings"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// TestUnhookLeavesNoRuleInThePathAndHookRestoresIt unhooks a synced backend (fake and kernel):
// no packet meets a rule of the backend, nothing holds conntrack, and Hook brings back exactly
// the table that was there.
func TestUnhookLeavesNoRuleInThePathAndHookRestoresIt(t *testing.T) {
	var tc policytest.Case
	for _, c := range policytest.Cases {
		if c.Name == "PodSelectorPeerAllowsMatchingPodsOfPolicyNamespace" {
			tc = c
		}
	}
	for _, tg := range targets() {
		for _, v := range allVariants {
			t.Run(tg.name+"/"+string(v), func(t *testing.T) {
				r := tg.open(t)
				comp := policytest.CaseCompiler(t, tc)
				b := mustBackend(t, Config{Variant: v, Mode: tg.mode, Runner: r})
				if err := b.Unhook(); err == nil {
					t.Fatal("unhook before the first sync: no error")
				}
				if _, err := b.Sync(comp.State()); err != nil {
					t.Fatal(err)
				}
				hooked := snapshot(t, r, tg.mode)
				before := hooked.Save()
				rules := b.Rules()
				denied := 0
				for _, p := range policytest.Grid() {
					if got, _, err := hooked.Trace(p.Flow()); err == nil && got == policy.Deny {
						denied++
					}
				}
				if denied == 0 {
					t.Fatalf("case %s denies nothing: the test would prove nothing", tc.Name)
				}
				if err := b.Unhook(); err != nil {
					t.Fatal(err)
				}
				if err := b.Unhook(); err == nil {
					t.Error("second unhook: no error")
				}
				un := snapshot(t, r, tg.mode)
				for _, l := range strings.Split(un.Save(), "\n") {
					if strings.HasPrefix(l, "-A FORWARD") || strings.Contains(l, "conntrack") {
						t.Errorf("unhooked table still holds %q", l)
					}
				}
				if b.Rules() != rules-2 {
					t.Errorf("backend counts %d rules unhooked, want %d", b.Rules(), rules-2)
				}
				// With nothing in the path, every flow of the grid passes.
				for _, p := range policytest.Grid() {
					if got, _, err := un.Trace(p.Flow()); err != nil || got != policy.Allow {
						t.Fatalf("unhooked: %s traced %s (%v)", p.Flow(), got, err)
					}
				}
				if err := b.Hook(); err != nil {
					t.Fatal(err)
				}
				if after := snapshot(t, r, tg.mode).Save(); normalSave(after) != normalSave(before) {
					t.Fatalf("hook did not restore the table:\n%s", faults.Diff(before, after))
				}
				if b.Rules() != rules {
					t.Errorf("backend counts %d rules hooked again, want %d", b.Rules(), rules)
				}
			})
		}
	}
}
