package iptables

import (
	"errors"
	"netpolbench/policy/policytest"
	"testing"
	"time"
)

// TestCappedSyncsReportTheCapAndApplyNothingOverTheRuleLimit checks both caps: a sync over
// MaxRules counts its rules exactly and applies nothing; the per-rule path stops at TimeLimit.
func TestCappedSyncsReportTheCapAndApplyNothingOverTheRuleLimit(t *testing.T) {
	_, comp := policytest.Generate(t, "small", 100)
	ref := NewFake()
	rb := mustBackend(t, Config{Variant: VariantIPTables, Runner: ref})
	full, err := rb.Sync(comp.State())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		cfg       Config
		wantRules int // exact count expected in Counts.Rules; -1: not checked
		wantEmpty bool
	}{
		{"RuleCapCountsExactlyAndAppliesNothing", Config{Variant: VariantIPTables, MaxRules: CountsOf(full).Rules / 2}, CountsOf(full).Rules, true},
		{"TimeCapStopsThePerRulePath", Config{Variant: VariantIPTables, Apply: ApplyPerRule, TimeLimit: time.Nanosecond}, -1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFake()
			tc.cfg.Runner = f
			b := mustBackend(t, tc.cfg)
			st, err := b.Sync(comp.State())
			if !errors.Is(err, ErrCapped) {
				t.Fatalf("error %v, want ErrCapped", err)
			}
			c := CountsOf(st)
			if !c.Capped {
				t.Errorf("stats do not record the cap: %+v", c)
			}
			if tc.wantRules >= 0 && c.Rules != tc.wantRules {
				t.Errorf("capped sync counted %d rules, the uncapped one wrote %d", c.Rules, tc.wantRules)
			}
			if _, rules, _, _ := f.Counts(); tc.wantEmpty && rules != 0 {
				t.Errorf("capped sync applied %d rules", rules)
			}
			// Whatever a capped sync left in force, Close removes it.
			if err := b.Close(); err != nil {
				t.Fatalf("close after a capped sync: %v", err)
			}
			if chains, rules, _, _ := f.Counts(); chains != 0 || rules != 0 {
				t.Errorf("close after a capped sync left %d chains and %d rules", chains, rules)
			}
		})
	}
}
