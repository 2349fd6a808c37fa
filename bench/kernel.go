package bench

import (
	"context"

	"netpolbench/policy"
)

// Kernelbed is the network a kernel backend enforces in and the stamps measure on.
type Kernelbed interface {
	// Netns is the node namespace's name under /run/netns, where backends install state.
	Netns() string
	Close() error
}

// KernelbedFactory opens a testbed for a compiled state.
type KernelbedFactory func(ctx context.Context, st *policy.State) (Kernelbed, error)

// kernelPhases sends real packets through the backend in the testbed: stamped per-packet
// cost, round trips and churn under load.
func (r *Runner) kernelPhases(ctx context.Context, name string, pods int, st *policy.State, sc *Scenario, comp *policy.Compiler, be policy.Backend, bed Kernelbed) {
	r.capf(name, pods, false, "", "kernel traffic phases: not wired to the testbed yet")
}
