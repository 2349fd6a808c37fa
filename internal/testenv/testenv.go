// Package testenv decides what a test does when the machine lacks a tool it needs.
package testenv

import (
	"os"
	"testing"
)

// Missing skips a test whose tool or capability is missing, with a message naming it; under
// CI (CI set in the environment), where `make test` installs every tool first, a missing one
// is a broken setup and fails the test instead of passing it as skipped.
func Missing(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("CI lacks what this test needs: %s", msg)
	}
	tb.Skip(msg)
}
