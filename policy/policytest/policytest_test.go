package policytest

import (
	"strings"
	"testing"

	"netpolbench/policy"
)

// TestReferenceMeetsHandWrittenExpectations checks the reference evaluator against the
// expectations written from the spec, case by case.
func TestReferenceMeetsHandWrittenExpectations(t *testing.T) {
	if len(Cases) < 30 {
		t.Fatalf("only %d cases; the model needs at least 30", len(Cases))
	}
	for _, tc := range Cases {
		t.Run(tc.Name, func(t *testing.T) {
			cl, err := tc.Cluster()
			if err != nil {
				t.Fatal(err)
			}
			exps, err := tc.Expectations()
			if err != nil {
				t.Fatal(err)
			}
			if len(exps) == 0 {
				t.Fatal("case has no expectations")
			}
			for _, e := range exps {
				got, ex := cl.Evaluate(e.Probe.Flow())
				if got != e.Want {
					t.Errorf("%s: reference says %s, spec says %s (%s)", e.Probe, got, e.Want, ex)
				}
			}
		})
	}
}

// TestCompiledBackendAgreesOnEveryCell runs every case's full grid through the compiled
// state's lookup.
func TestCompiledBackendAgreesOnEveryCell(t *testing.T) {
	for _, tc := range Cases {
		t.Run(tc.Name, func(t *testing.T) {
			cl, err := tc.Cluster()
			if err != nil {
				t.Fatal(err)
			}
			comp, err := policy.Compile(cl, policy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			tab, err := NewTable("compiled", cl, Grid(), func(f policy.Flow) (policy.Verdict, error) {
				return comp.State().Verdict(f), nil
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

// TestReportMarksDisagreeingCells checks the comparer itself: a backend that allows
// everything disagrees exactly where the reference denies, and the matrix shows it.
func TestReportMarksDisagreeingCells(t *testing.T) {
	tc := Cases[1] // default deny ingress in x
	cl, err := tc.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := NewTable("allow-all", cl, Grid(), func(policy.Flow) (policy.Verdict, error) { return policy.Allow, nil })
	if err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, w := range tab.Want {
		if w == policy.Deny {
			denied++
		}
	}
	if denied == 0 || len(tab.Mismatches) != denied {
		t.Fatalf("mismatches %d, want the %d denied cells", len(tab.Mismatches), denied)
	}
	r := tab.Report()
	if !strings.Contains(r, "[.]") || !strings.Contains(r, "disagree") {
		t.Fatalf("report does not mark cells:\n%s", r)
	}
}
