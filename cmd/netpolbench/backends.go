package main

import (
	"fmt"
	"sort"
	"strings"

	"netpolbench/policy"
)

// backendEnv is what a backend constructor may use.
type backendEnv struct {
	State *policy.State
	// Layout is the eBPF map layout (--layout).
	Layout string
	// IptablesMode is the iptables binary flavour, nft or legacy (--iptables-mode).
	IptablesMode string
}

// backendSpec describes a verdict backend. open returns a synced backend that can decide
// flows without real packets.
type backendSpec struct {
	name string
	help string
	open func(env backendEnv) (decider, error)
}

// decider is an opened backend that decides flows; Close releases what it holds.
type decider interface {
	policy.Decider
	Close() error
}

var backendRegistry = map[string]backendSpec{}

// registerBackend is called from init functions, one file per backend.
func registerBackend(b backendSpec) {
	if _, dup := backendRegistry[b.name]; dup {
		panic("backend registered twice: " + b.name)
	}
	backendRegistry[b.name] = b
}

func backendNames() []string {
	names := make([]string, 0, len(backendRegistry))
	for n := range backendRegistry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupBackends(names []string) ([]backendSpec, error) {
	var out []backendSpec
	for _, n := range names {
		b, ok := backendRegistry[n]
		if !ok {
			return nil, fmt.Errorf("unknown backend %q (have %s)", n, strings.Join(backendNames(), ", "))
		}
		out = append(out, b)
	}
	return out, nil
}
