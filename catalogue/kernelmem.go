package catalogue

import (
	"errors"

	"netpolbench/internal/memcg"
	"netpolbench/internal/netns"
	"netpolbench/results"
)

// What each family's kernel_bytes counts: the allocations its kernel code charges to the
// cgroup of the task that makes them (package memcg), and what it leaves out.
const (
	kernelCountsNftables = "nf_tables objects the nft processes wrote (table, chains, rules, expressions, sets and their elements); " +
		"not the bucket arrays of hash sets and verdict maps (rhashtable, not charged)"
	kernelCountsIptablesNFT    = "nf_tables objects iptables-nft wrote (chains, rules, expressions)"
	kernelCountsIptablesLegacy = "the x_tables table blobs iptables-legacy wrote; not their per-CPU counters (not charged)"
	kernelCountsIpset          = "; and the ipsets' hash tables, but not their member buckets (allocated GFP_ATOMIC, not charged): " +
		"most of the members' memory is missing"
	kernelCountsEBPF = "the BPF maps at their capacity (conntrack included) and programs, charged to the thread that created them; " +
		"not the programs' JIT images (not charged)"
	kernelNoState = "no kernel state: the backend runs in process"
)

// kernelMeter runs a backend's kernel work on one thread of its own (netns.Pin), in the
// backend's network namespace where it has one, which has joined a memory cgroup created for
// the backend: the processes it starts and the BPF maps it creates charge their kernel memory
// there, and Size reads it back. Where the machine has no such cgroup the work runs all the
// same and the figure is null, with the reason.
type kernelMeter struct {
	*netns.Pinned
	group  *memcg.Group // nil without one
	counts string       // what the figure counts
	why    string       // why there is no figure
}

// newKernelMeter pins a thread in ns (nil: the process's own namespace) in a new memory
// cgroup named after label; counts says what the figure will count.
func newKernelMeter(label string, ns *netns.NS, counts string) (*kernelMeter, error) {
	m := &kernelMeter{counts: counts}
	var setup []func() error
	if g, err := memcg.New(label); err != nil {
		m.why = "not measured: " + err.Error()
	} else {
		m.group = g
		setup = append(setup, g.Join)
	}
	th, err := netns.Pin(ns, setup...)
	if err != nil {
		if m.group != nil {
			err = errors.Join(err, m.group.Remove())
		}
		return nil, err
	}
	m.Pinned = th
	return m, nil
}

// fill sets sz's kernel memory: what the cgroup holds now, or null and why.
func (m *kernelMeter) fill(sz *results.Size) {
	if m.group == nil {
		sz.KernelNote = m.why
		return
	}
	v, err := m.group.KernelBytes()
	if err != nil {
		sz.KernelNote = "not measured: " + err.Error()
		return
	}
	sz.KernelBytes, sz.KernelNote = &v, m.counts
}

// release retires the thread; the cgroup stays for what it holds.
func (m *kernelMeter) release() { m.Pinned.Close() }

// Close retires the thread and removes the cgroup; call it after the backend's state is gone.
func (m *kernelMeter) Close() error {
	m.Pinned.Close()
	if m.group == nil {
		return nil
	}
	return m.group.Remove()
}
