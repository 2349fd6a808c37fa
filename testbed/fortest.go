package testbed

import (
	"testing"

	"netpolbench/internal/testenv"
)

// ForTest builds a testbed for a test or benchmark (of this package or another) and removes it
// when the test ends, also after a failure. Without root it skips the test, or fails it under
// CI (internal/testenv).
func ForTest(t testing.TB, opts Options) *Testbed {
	t.Helper()
	testenv.NeedRoot(t)
	tb, err := New(opts)
	if err != nil {
		t.Fatalf("new testbed: %v", err)
	}
	t.Cleanup(func() {
		if err := tb.Close(); err != nil {
			t.Errorf("close testbed: %v", err)
		}
	})
	return tb
}
