package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"netpolbench/reports"
	"netpolbench/results"
)

func init() {
	var out string
	cmd := &cobra.Command{
		Use:   "report results.json -o report.html",
		Short: "Render a results.json as one self-contained offline HTML report",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr(errors.New("report: -o report.html is required"))
			}
			run, err := results.Load(args[0])
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
