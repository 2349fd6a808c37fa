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
			for _, l := range left {
				if !gone[l.Name] && l.Live {
					fmt.Fprintf(cmd.OutOrStdout(), "kept %s (run %d is alive; --all removes it)\n", l.Name, l.PID)
				}
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
