package iptables

import (
	"fmt"

	"netpolbench/internal/netns"
)

// Runner runs a command (iptables-restore, iptables-save, ipset, ...) where the rules live.
type Runner interface {
	// Run runs binary name with args and stdin and returns its output. A non-zero exit is an
	// error; stderr is returned with it.
	Run(name string, args []string, stdin []byte) (stdout, stderr []byte, err error)
}

// NamespaceDoer is a Runner that can also run Go code inside its network namespace. The
// per-rule path needs it: go-iptables execs the binary itself, so the calling thread must be in
// the namespace when it does.
type NamespaceDoer interface {
	Runner
	Do(fn func() error) error
}

// ErrRootNamespace is returned when a Runner would act on the root network namespace.
var ErrRootNamespace = netns.ErrRootNamespace

// NetnsRunner runs commands, and Go code (Do), inside a named network namespace (see
// internal/netns: a throwaway thread enters it, so children inherit it). It never runs anything
// in the namespace of the calling process.
type NetnsRunner struct {
	ns *netns.NS
}

// NewNetnsRunner opens the network namespace name (a name under /run/netns, or an absolute path
// such as /proc/PID/ns/net). It refuses the namespace the process itself is in and the one of
// PID 1 (ErrRootNamespace).
func NewNetnsRunner(name string) (*NetnsRunner, error) {
	ns, err := netns.OpenIsolated(name)
	if err != nil {
		return nil, fmt.Errorf("%w (iptables runs only in a namespace of the suite's own)", err)
	}
	return &NetnsRunner{ns: ns}, nil
}

// Path is the namespace file the runner enters.
func (r *NetnsRunner) Path() string { return r.ns.Path() }

// Close releases the namespace handle.
func (r *NetnsRunner) Close() error { return r.ns.Close() }

// Do runs fn inside the namespace (netns.NS.Do).
func (r *NetnsRunner) Do(fn func() error) error { return r.ns.Do(fn) }

// Run runs the command inside the namespace.
func (r *NetnsRunner) Run(name string, args []string, stdin []byte) ([]byte, []byte, error) {
	return r.ns.Run(name, args, stdin)
}
