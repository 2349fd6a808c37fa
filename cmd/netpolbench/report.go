package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"netpolbench/reports"
	"netpolbench/results"
)

func init() {
	var out string
	cmd := &cobra.Command{
		Use: "report results.json -o report.html",
		Long: `report renders one run as a self-contained HTML file: headline figures, percentile tables,
distribution and box plots, scaling fits, update costs, churn timelines, sizes and the machine.
The argument is a results.json or the run directory that holds one.`,
		Short: "Render a results.json as one self-contained offline HTML report",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr(errors.New("report: -o report.html is required"))
			}
			run, err := results.Load(resultsPath(args[0]))
			if err != nil {
				return usageErr(err)
			}
			var buf bytes.Buffer
			if err := reports.Render(&buf, run); err != nil {
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d KiB)\n", out, buf.Len()/1024)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "HTML file to write (required)")
	rootCmd.AddCommand(cmd)
}

// resultsPath accepts a run directory (results/<timestamp>/) for its results.json.
func resultsPath(p string) string {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return filepath.Join(p, "results.json")
	}
	return p
}
