package iptables

import (
	"strings"
	"testing"

	"netpolbench/policy"
)

// variants and apply paths every truth table runs with.
var (
	allVariants = []Variant{VariantIPTables, VariantIPSet}
	allApplies  = []ApplyPath{ApplyRestore, ApplyPerRule}
)

// mustBackend opens a backend over r and registers its Close.
func mustBackend(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	return b
}

// checkFlows compares the traced verdict of every flow with the compiled state's and reports
// the first disagreements with the rules that decided.
func checkFlows(t *testing.T, f *Fake, s *policy.State, flows []policy.Flow) {
	t.Helper()
	bad := 0
	for _, fl := range flows {
		got, path, err := f.Trace(fl)
		if err != nil {
			t.Fatal(err)
		}
		if want := s.Verdict(fl); got != want {
			bad++
			if bad <= 10 {
				t.Errorf("%s: traced %s, state says %s (rules %s)", fl, got, want, strings.Join(path, " "))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d flows disagree", bad, len(flows))
	}
}

// normalSave is NormalSave, short for the tests.
func normalSave(save string) string { return NormalSave(save) }
