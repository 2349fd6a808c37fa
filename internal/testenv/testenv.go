// Package testenv decides what a test does when the machine lacks something it needs: outside
// CI it skips, naming what is missing; under CI (CI set in the environment), where `make test`
// runs as root after installing every tool, a missing need is a broken setup and fails the
// test instead of passing it as skipped. A -short run is a quick local pass, never the CI
// gate: there a missing need always skips, and Long skips the tests that are long as a whole.
//
// Tests declare what they need with the values of internal/needs, the same ones the backend
// catalogue declares for each backend:
//
//	testenv.NeedRoot(t)                                   // network namespaces
//	testenv.NeedKernel(t, needs.BPF)                      // loads BPF programs
//	testenv.NeedKernel(t, catalogue.MustGet("ipset").Needs...) // what a backend needs
package testenv

import (
	"os"
	"testing"

	"netpolbench/internal/needs"
)

// Missing skips a test whose tool or capability is missing, with a message naming it; under
// CI (unless -short) it fails the test instead.
func Missing(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") != "" && !testing.Short() {
		tb.Fatalf("CI lacks what this test needs: %s", msg)
	}
	tb.Skip(msg)
}

// NeedRoot is for tests that change kernel state (network namespaces, BPF, netfilter): they
// need root.
func NeedRoot(tb testing.TB) {
	tb.Helper()
	NeedKernel(tb)
}

// NeedKernel is NeedRoot for tests that also need the listed kernel features or tools. Every
// missing need is named at once.
func NeedKernel(tb testing.TB, ns ...needs.Need) {
	tb.Helper()
	if err := needs.Check(append([]needs.Need{needs.Root}, ns...)...); err != nil {
		Missing(tb, err.Error())
	}
}

// Long skips a test that is long as a whole (no shorter variant makes sense) in -short mode.
func Long(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("%s: skipped in -short mode", what)
	}
}
