package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"netpolbench/datapath"
	"netpolbench/internal/needs"
	"netpolbench/policy"
)

type monitorFlags struct {
	files  []string
	probes string
	layout string
	wait   time.Duration
}

func init() {
	var mf monitorFlags
	cmd := &cobra.Command{
		Use:   "monitor -f cluster.yaml --probes probes.yaml",
		Short: "Print the eBPF datapath's drop events, as cilium monitor -t drop does",
		Long: `monitor loads the eBPF datapath, syncs it from the cluster, runs every probe's first
packet through from_container and to_container with BPF_PROG_TEST_RUN, and prints each drop
event the programs put on their ring buffer, decoded:

  drop (Policy denied) to endpoint 412, identity 1208->1207: 198.18.0.44:40000 -> 198.18.0.42:8080 tcp SYN

"to endpoint" is the destination's ingress policy, "from endpoint" the source's egress policy;
identities read source->destination. Then it prints the per-reason packet counters. It stops
after the probes (bounded; needs root).`,
		Example: `  netpolbench gen --preset small -o small.yaml --probes probes.yaml
  netpolbench monitor -f small.yaml --probes probes.yaml --layout cilium`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMonitor(cmd, mf) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&mf.files, "file", "f", nil, "cluster file (YAML or JSON; repeatable)")
	f.StringVar(&mf.probes, "probes", "", "probes file (required; see verdict --help)")
	f.StringVar(&mf.layout, "layout", "hash", "eBPF ipcache layout: hash or cilium")
	f.DurationVar(&mf.wait, "wait", 200*time.Millisecond, "how long to wait for the last events after the probes")
	rootCmd.AddCommand(cmd)
}

func runMonitor(cmd *cobra.Command, mf monitorFlags) error {
	if len(mf.files) == 0 {
		return usageErr(errors.New("monitor: give the cluster with -f FILE"))
	}
	if mf.probes == "" {
		return usageErr(errors.New("monitor: give the probes with --probes FILE"))
	}
	layout, err := datapath.ParseLayout(mf.layout)
	if err != nil {
		return usageErr(fmt.Errorf("monitor: %w", err))
	}
	if mf.wait < 0 || mf.wait > time.Minute {
		return usageErr(fmt.Errorf("monitor: --wait %s out of range (0 to 1m)", mf.wait))
	}
	cluster, warnings, err := policy.Load(mf.files...)
	if err != nil {
		return usageErr(err)
	}
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	probes, err := readProbes(mf.probes)
	if err != nil {
		return usageErr(err)
	}
	flows := make([]policy.Flow, len(probes))
	for i, p := range probes {
		if flows[i], err = p.Flow(cluster); err != nil {
			return usageErr(fmt.Errorf("%s: probes[%d]: %w", mf.probes, i, err))
		}
	}
	comp, err := policy.Compile(cluster, policy.Options{})
	if err != nil {
		return usageErr(err)
	}
	if err := needs.Check(datapath.Needs...); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	s := comp.State()
	d, err := datapath.Open(datapath.Options{Layout: layout, CT: datapath.CTLookup, Sizes: datapath.SizesFor(s, layout)})
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	defer d.Close()
	if _, err := d.Sync(s); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	out := cmd.OutOrStdout()
	drops := 0
	// Drain after every batch so the ring buffer (256 KiB, 32-byte records) never fills.
	const batch = 1024
	for i, f := range flows {
		if _, err := d.Verdict(f); err != nil {
			return fmt.Errorf("monitor: probe %d (%s): %w", i, f, err)
		}
		if (i+1)%batch != 0 && i != len(flows)-1 {
			continue
		}
		wait := time.Duration(0)
		if i == len(flows)-1 {
			wait = mf.wait
		}
		evs, err := d.DrainDrops(wait)
		if err != nil {
			return fmt.Errorf("monitor: %w", err)
		}
		for _, e := range evs {
			fmt.Fprintln(out, e)
		}
		drops += len(evs)
	}
	m, err := d.Metrics()
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	fmt.Fprintf(out, "\n%d probes, %d drop events\n", len(flows), drops)
	for _, r := range datapath.Reasons() {
		for _, dir := range []policy.Direction{policy.Egress, policy.Ingress} {
			if c, ok := m[datapath.MetricKey{Reason: r, Dir: dir}]; ok {
				fmt.Fprintf(out, "%-20s %-8s %8d packets %10d bytes\n", r, dir, c.Packets, c.Bytes)
			}
		}
	}
	return nil
}
