package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"netpolbench/controlplane"
	"netpolbench/internal/memcg"
	"netpolbench/testbed"
)

func init() {
	var all bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove the network namespaces and control planes a killed run left behind",
		Long: `cleanup removes the network namespaces under /run/netns whose names start with
` + testbed.Prefix + ` and whose run's process no longer exists; their veths, routes, rules, ipsets and
firewall state go with them. Likewise the control planes of dead runs: their etcd and
kube-apiserver processes, if any survived, and their run directories (` + controlplane.Prefix + `* in the temporary
directory), and the memory cgroups (` + memcg.Prefix + `<pid>-*) dead runs measured kernel memory in.
Nothing else is touched, the root namespace least of all.
With --all it also removes the namespaces and control planes of runs that are still alive.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cpLeft, err := controlplane.Leftovers()
			if err != nil {
				return err
			}
			cpRemoved, cpErr := controlplane.Cleanup(all)
			for _, d := range cpRemoved {
				fmt.Fprintln(cmd.OutOrStdout(), "removed control plane", d)
			}
			if kept := len(cpLeft) - len(cpRemoved); kept > 0 && cpErr == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "kept %d control plane(s) of live runs (--all removes them)\n", kept)
			}
			cgRemoved, cgErr := memcg.Cleanup(all)
			for _, d := range cgRemoved {
				fmt.Fprintln(cmd.OutOrStdout(), "removed memory cgroup", d)
			}
			cpErr = errors.Join(cpErr, cgErr)
			left, err := testbed.Leftovers()
			if err != nil {
				return errors.Join(cpErr, err)
			}
			removed, err := testbed.Cleanup(all)
			gone := map[string]bool{}
			for _, n := range removed {
				gone[n] = true
				fmt.Fprintln(cmd.OutOrStdout(), "removed", n)
			}
			kept := map[int]int{}
			var pids []int
			for _, l := range left {
				if gone[l.Name] || (!l.Live && l.PID != 0) {
					continue // removed, or its removal failed and err says why
				}
				if kept[l.PID] == 0 {
					pids = append(pids, l.PID)
				}
				kept[l.PID]++
			}
			for _, pid := range pids {
				why := fmt.Sprintf("run %d is alive", pid)
				if pid == 0 {
					why = "no run pid in the name"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "kept %d namespace(s) (%s; --all removes them)\n", kept[pid], why)
			}
			if len(left) == 0 && len(cpLeft) == 0 && len(cgRemoved) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to clean up")
			}
			return errors.Join(cpErr, err)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove the namespaces of live runs")
	rootCmd.AddCommand(cmd)
}
