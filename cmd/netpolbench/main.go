// Command netpolbench measures what Kubernetes NetworkPolicy enforcement costs with
// identity-based eBPF maps and with per-IP iptables rules, on the same packets.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries an exit code through cobra: 1 for a disagreement or regression, 2 for bad
// input or no usable baseline.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr marks an error as bad input (exit 2).
func usageErr(err error) error { return &exitError{code: 2, err: err} }

// runtimeErr marks a failure of the machinery, not of the input: a backend that could not
// load, sync or run (exit 3).
func runtimeErr(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: 3, err: err}
}

var rootCmd = &cobra.Command{
	Use:   "netpolbench",
	Short: "Measure NetworkPolicy enforcement: identity-hash eBPF versus per-IP iptables",
	Long: `netpolbench reads Kubernetes Namespaces, Pods and NetworkPolicies (or generates a
synthetic cluster), compiles them into Cilium-style identities and rule sets, enforces them with
eBPF or iptables inside network namespaces it owns, proves every backend gives the reference
evaluator's verdict, and measures what enforcement costs.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// beforeExecute runs once every init has registered its commands and backends, e.g. to list
// the registered backends in a command's help.
var beforeExecute []func()

func main() {
	for _, f := range beforeExecute {
		f()
	}
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "netpolbench:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(2)
	}
}
