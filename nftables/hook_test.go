package nftables

import (
	"strings"
	"testing"

	"netpolbench/internal/faults"
	"netpolbench/policy"
	"netpolbench/policy/policytest"
)

// hookCase is a case of the model that denies some of its grid, so "every flow passes" after
// Unhook proves something.
func hookCase(t *testing.T) *policy.Compiler {
	t.Helper()
	for _, c := range policytest.Cases {
		if c.Name == "PodSelectorPeerAllowsMatchingPodsOfPolicyNamespace" {
			return policytest.CaseCompiler(t, c)
		}
	}
	t.Fatal("no such case")
	return nil
}

func TestUnhookTakesTheBaseChainOutAndHookPutsItBack(t *testing.T) {
	comp := hookCase(t)
	s := comp.State()
	f, b := mustSynced(t, s)
	before := f.canonical()
	denied := 0
	for _, p := range policytest.Grid() {
		if v, err := f.Verdict(p.Flow()); err == nil && v == policy.Deny {
			denied++
		}
	}
	if denied == 0 {
		t.Fatal("the case denies nothing: the test would prove nothing")
	}
	if err := b.Unhook(); err != nil {
		t.Fatal(err)
	}
	if err := b.Unhook(); err == nil {
		t.Error("second unhook: no error")
	}
	un := f.canonical()
	if strings.Contains(un, "hook forward") || strings.Contains(un, "ct state") {
		t.Errorf("unhooked table still has a hook or a conntrack rule:\n%s", un)
	}
	for _, p := range policytest.Grid() {
		if v, err := f.Verdict(p.Flow()); err != nil || v != policy.Allow {
			t.Fatalf("unhooked: %s decided %s (%v)", p.Flow(), v, err)
		}
	}
	if err := b.Hook(); err != nil {
		t.Fatal(err)
	}
	if after := f.canonical(); after != before {
		t.Fatalf("hook did not restore the table:\n%s", faults.Diff(before, after))
	}
	// A full sync while unhooked puts the base chain back by itself.
	if err := b.Unhook(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Sync(s); err != nil {
		t.Fatal(err)
	}
	if err := b.Hook(); err == nil {
		t.Error("hook after a full sync: no error, the base chain would be there twice")
	}
}

func TestKernelUnhookAndHookMatchTheFake(t *testing.T) {
	comp := hookCase(t)
	ns, b := mustKernel(t, KernelOptions{})
	if _, err := b.Sync(comp.State()); err != nil {
		t.Fatal(err)
	}
	f, fb := mustSynced(t, comp.State())
	for _, step := range []struct {
		name string
		do   func(*Backend) error
	}{{"unhook", (*Backend).Unhook}, {"hook", (*Backend).Hook}} {
		if err := step.do(b); err != nil {
			t.Fatalf("%s in the kernel: %v", step.name, err)
		}
		if err := step.do(fb); err != nil {
			t.Fatalf("%s in the fake: %v", step.name, err)
		}
		sameAsFake(t, "after "+step.name, ns, f)
	}
}
