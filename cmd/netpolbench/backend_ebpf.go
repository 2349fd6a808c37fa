package main

import (
	"fmt"
	"os"

	"netpolbench/datapath"
)

// The identity datapath decided with BPF_PROG_TEST_RUN: each probe's first packet runs
// through from_container and to_container of the real loaded programs, with maps synced from
// the compiled state. Conntrack lookups happen but create nothing, so probes stay independent.
func init() {
	registerBackend(backendSpec{
		name: "ebpf",
		help: "identity-hash eBPF programs run with BPF_PROG_TEST_RUN on real packets (root; --layout hash or cilium)",
		open: openEBPFDecider,
	})
}

func openEBPFDecider(env backendEnv) (decider, error) {
	layout, err := datapath.ParseLayout(env.Layout)
	if err != nil {
		return nil, usageErr(err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("open ebpf: needs root (CAP_BPF and CAP_NET_ADMIN) to load BPF programs")
	}
	d, err := datapath.Open(datapath.Options{Layout: layout, CT: datapath.CTLookup, Sizes: datapath.SizesFor(env.State, layout)})
	if err != nil {
		return nil, fmt.Errorf("open ebpf: %w", err)
	}
	if _, err := d.Sync(env.State); err != nil {
		d.Close()
		return nil, fmt.Errorf("open ebpf: %w", err)
	}
	return d, nil
}
