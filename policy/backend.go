package policy

import (
	"errors"
	"time"
)

// Backend is an enforcement backend: it translates the compiled State into kernel state (or a
// fake of it) and reports what that cost. Backends never change the State.
type Backend interface {
	// Name is the backend's name on the command line (ebpf, iptables, ipset, ...).
	Name() string
	// Sync replaces whatever the backend enforces with s.
	Sync(s *State) (SyncStats, error)
	// Update applies one event's delta; s is the state after the event. On error the backend
	// falls back to a full sync on the next call and says so in the error.
	Update(s *State, d *Delta) (SyncStats, error)
	Close() error
}

// ErrNextSyncFull is wrapped by the errors of a Backend's Sync and Update: the call failed,
// the backend no longer trusts its view of the kernel, and its next call is a full sync that
// reads or rewrites whatever the failed call may have left.
var ErrNextSyncFull = errors.New("the next call resyncs in full")

// Decider decides the verdict a flow gets. How is the implementation's business: a lookup in
// the compiled State, the real programs run with BPF_PROG_TEST_RUN (the eBPF datapath), a trace
// through the rules a backend would apply (the iptables fake), or a real packet sent through a
// testbed (the benchmark's convergence probe, where a deny shows only as a timeout). An error
// means the decision itself failed (a program that cannot run, a testbed fault), not a deny.
type Decider interface {
	Verdict(f Flow) (Verdict, error)
}

// SyncStats is what one Sync or Update cost.
type SyncStats struct {
	Duration time.Duration
	// Ops counts kernel operations: map updates and deletes, or restore lines.
	Ops int
	// Bytes is the payload sent to the kernel (restore input, map keys and values).
	Bytes int
	// Detail holds the backend family's own exact counts as a typed struct, e.g.
	// *iptables.Counts or *datapath.Counts (each family has a CountsOf to read it); nil when
	// the backend reports none.
	Detail any
}
