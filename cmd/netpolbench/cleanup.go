package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"netpolbench/testbed"
)

func init() {
	var all bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove the network namespaces a killed run left behind",
		Long: `cleanup removes the network namespaces under /run/netns whose names start with
` + testbed.Prefix + ` and whose run's process no longer exists; their veths, routes, rules, ipsets and
firewall state go with them. Nothing else is touched, the root namespace least of all.
With --all it also removes the namespaces of runs that are still alive.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			left, err := testbed.Leftovers()
			if err != nil {
				return err
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
			if len(left) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to clean up")
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove the namespaces of live runs")
	rootCmd.AddCommand(cmd)
}
